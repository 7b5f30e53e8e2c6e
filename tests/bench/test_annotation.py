"""Human annotation round trip: export blinded pairs, fill the sheet as reviewers would, import it and check
the verdicts and statistics against results worked out by hand from the key."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from deepresearch.bench.annotation import (
    CSV_COLUMNS,
    combine_judges,
    export_pairs,
    import_pairs,
    judge_agreement,
    plan_pairs,
    read_key,
)
from deepresearch.bench.pairwise import PairVerdict, failed_verdict, summarize_pairs
from deepresearch.bench.stats import DIMENSIONS, WTL, Result
from deepresearch.errors import ConfigError

A, B = "alpha-system", "beta-system"
SEED = 5
"""With seed 5, ``alpha-system`` is Report 1 on t1 and t3 and Report 2 on t2, t4 and t5 (pinned below)."""
TASKS = ("t1", "t2", "t3", "t4", "t5")
PROMPTS = {t: f"Request {t}: compare the rivers of Europe." for t in TASKS}
REPORTS_A = {
    t: f"# Report on {t}\n\nThe Rhine is 1,230 km long.\n\n- detail one\n- detail two" for t in TASKS
}
REPORTS_B = {t: f'# Notes for {t}\n\nThe Rhine is long, "quoted", with, commas.' for t in TASKS}
REPORTS_B["t2"] = (
    "Intro\n<script>alert('x')</script>\n<img src=http://tracker.example/p.png>\n![pic](http://x.example/i.png)"
)
REPORTS_A["t5"] = '=HYPERLINK("http://evil.example")'
REPORTS_A["only-a"] = "a report nobody can compare"


class _Pairs(HTMLParser):
    """Collects each ``section.pair`` id and the tags a self-contained, safe page must not have."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.report_headings = 0
        self.forbidden: list[str] = []
        self._in_h3 = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "section" and attributes.get("class") == "pair":
            self.sections.append(attributes["id"] or "")
        if tag in ("script", "img", "link", "iframe"):
            self.forbidden.append(tag)
        self._in_h3 = tag == "h3"

    def handle_data(self, data: str) -> None:
        if self._in_h3 and data.startswith("Report "):
            self.report_headings += 1


def export(tmp_path: Path, seed: int = SEED, name: str = "out") -> Path:
    result = export_pairs(
        REPORTS_A, REPORTS_B, PROMPTS, name_a=A, name_b=B, out_dir=tmp_path / name, seed=seed
    )
    assert result.skipped == {"only-a": f"no report from {B}"}
    return result.out_dir


def test_export_writes_a_blinded_sheet_page_and_key(tmp_path: Path) -> None:
    out = export(tmp_path)
    sheet = (out / "pairs.csv").read_text(encoding="utf-8")
    page = (out / "pairs.html").read_text(encoding="utf-8")
    for text in (sheet, page, (out / "README.txt").read_text(encoding="utf-8")):
        assert A not in text and B not in text and "alpha" not in text.lower()
    assert sheet.startswith("\ufeff")  # spreadsheet programs need the BOM to see UTF-8
    rows = list(csv.DictReader(sheet.removeprefix("\ufeff").splitlines(keepends=True)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [r["pair_id"] for r in rows] == ["p001", "p002", "p003", "p004", "p005"]
    assert [r["task_id"] for r in rows] == list(TASKS)
    assert rows[0]["report_1"] == REPORTS_A["t1"]  # multi-line report survives quoting
    assert rows[1]["report_1"] == REPORTS_B["t2"] and rows[1]["report_2"] == REPORTS_A["t2"]
    assert rows[4]["report_2"] == "'" + REPORTS_A["t5"]  # a spreadsheet must not run it as a formula
    assert all(r[c] == "" for r in rows for c in ("reviewer", "overall", *DIMENSIONS, "reason"))
    key = json.loads((out / "key.json").read_text(encoding="utf-8"))
    assert (key["name_a"], key["name_b"], key["seed"]) == (A, B, SEED)
    assert key["pairs"]["p001"] == {"task_id": "t1", "report_1": A, "report_2": B}
    assert [key["pairs"][p]["report_1"] for p in sorted(key["pairs"])] == [A, B, A, B, B]
    assert "report_1_better, report_2_better" in page


def test_html_has_one_escaped_section_per_pair(tmp_path: Path) -> None:
    page = (export(tmp_path) / "pairs.html").read_text(encoding="utf-8")
    parser = _Pairs()
    parser.feed(page)
    assert parser.sections == ["p001", "p002", "p003", "p004", "p005"]
    assert parser.report_headings == 10
    assert parser.forbidden == []  # no script, no image pulled from the net
    assert "&lt;script&gt;alert(" in page and "<script>" not in page
    assert "tracker.example" in page and "<img" not in page
    assert "<p>=HYPERLINK(" in page
    assert "<h1>Report on t1</h1>" in page and "<li>detail one</li>" in page


def test_order_is_reproducible_per_task_and_both_orders_occur(tmp_path: Path) -> None:
    many = {f"q{i:02d}": f"report {i}" for i in range(10)}
    prompts = {t: "p" for t in many}
    key, _ = plan_pairs(many, many, prompts, name_a=A, name_b=B, seed=0)
    again, _ = plan_pairs(many, many, prompts, name_a=A, name_b=B, seed=0)
    assert key == again
    firsts = [entry.report_1 for entry in key.pairs.values()]
    assert firsts.count(A) == 4 and firsts.count(B) == 6
    other, _ = plan_pairs(many, many, prompts, name_a=A, name_b=B, seed=1)
    assert [e.report_1 for e in other.pairs.values()] != firsts
    # Adding a task leaves the order of the others alone.
    grown, _ = plan_pairs(
        {**many, "a00": "x"}, {**many, "a00": "y"}, {"a00": "p", **prompts}, name_a=A, name_b=B
    )
    assert grown.pairs["p001"].task_id == "a00"
    assert [e.report_1 for e in list(grown.pairs.values())[1:]] == firsts
    assert (
        export(tmp_path, name="one").joinpath("key.json").read_bytes()
        == export(tmp_path, name="two").joinpath("key.json").read_bytes()
    )


def test_export_refuses_to_replace_a_key_and_equal_names(tmp_path: Path) -> None:
    out = export(tmp_path)
    with pytest.raises(ConfigError, match=r"key\.json exists"):
        export(tmp_path)
    replaced = export_pairs(
        REPORTS_A, REPORTS_B, PROMPTS, name_a=A, name_b=B, out_dir=out, seed=0, overwrite=True
    )
    assert replaced.key.seed == 0 and read_key(out / "key.json") == replaced.key
    with pytest.raises(ConfigError, match="different names"):
        export_pairs({}, {}, {}, name_a=A, name_b=A, out_dir=tmp_path / "x")
    missing_prompt, skipped = plan_pairs({"t": "a"}, {"t": "b"}, {}, name_a=A, name_b=B)
    assert missing_prompt.pairs == {} and skipped == {"t": "no task prompt"}


def fill(out: Path, answers: list[dict[str, str]]) -> Path:
    """Write the sheet back as a reviewer would: report columns deleted, headers in title case."""
    columns = ["pair_id", "task_id", "reviewer", "overall", *DIMENSIONS, "reason"]
    path = out / "filled.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([c.replace("_", " ").title() for c in columns])
        for answer in answers:
            writer.writerow([answer.get(c, "") for c in columns])
    return path


def row(pair_id: str, reviewer: str, overall: str, *dims: str, reason: str = "") -> dict[str, str]:
    return {
        "pair_id": pair_id,
        "reviewer": reviewer,
        "overall": overall,
        **dict(zip(DIMENSIONS, dims, strict=True)),
        "reason": reason,
    }


def results(verdict: PairVerdict) -> list[Result | None]:
    return list(verdict.results().values())


def test_import_turns_positions_into_results_of_system_a(tmp_path: Path) -> None:
    out = export(tmp_path)
    sheet = fill(
        out,
        [
            row("p002", "ann", "Report 1", "1", "2", "tie", "Left"),  # line 2; t2: Report 1 is beta
            row("p001", "ann", "report_1_better", "1", "1", "1", "1", reason="clear\nfigures"),  # lines 3-4
            row("p003", "ann", "Both good", "tie", "Tie", "equal", "TIE"),  # line 5
            {"pair_id": "p005", "task_id": "t5"},  # line 6: blank
            row("p001", "bob", "2", "2", "report 2", "right", "2"),  # line 7
            row("p003", "bob", "maybe", "1", "3", "1", "1"),  # line 8: two invalid values
            row("p999", "ann", "1", "1", "1", "1", "1"),  # line 9
            row("p004", "", "report_2_better", "2", "2", "2", "2"),  # line 10; t4: Report 2 is alpha
        ],
    )
    imported = import_pairs(sheet, out / "key.json", reviewer_default="carol")
    assert imported.errors == [
        f"{sheet}:8: column overall: 'maybe' is not one of report_1_better, report_2_better, both_good, "
        "both_fair, both_poor",
        f'{sheet}:8: column content_depth: \'3\' is not "1", "2" or "tie"',
        f"{sheet}:9: column pair_id: 'p999' is not in the key",
    ]
    assert (imported.annotated, imported.unannotated, imported.pending) == (5, 1, ["p005"])
    got = {(v.task_id, v.judge): v for v in imported.verdicts}
    assert list(got) == [
        ("t1", "human:ann"),
        ("t1", "human:bob"),
        ("t2", "human:ann"),
        ("t3", "human:ann"),
        ("t4", "human:carol"),
    ]
    assert all((v.system_a, v.system_b, len(v.readings)) == (A, B, 1) for v in imported.verdicts)
    assert results(got["t1", "human:ann"]) == ["win"] * 5
    assert results(got["t1", "human:bob"]) == ["loss"] * 5
    # "Report 1" on t2 is beta's report: beta better overall, alpha better on depth only.
    assert results(got["t2", "human:ann"]) == ["loss", "loss", "win", "tie", "loss"]
    assert got["t2", "human:ann"].readings[0].a_position == 2
    assert results(got["t3", "human:ann"]) == ["tie"] * 5
    assert results(got["t4", "human:carol"]) == ["win"] * 5
    assert got["t1", "human:ann"].readings[0].reason == "clear\nfigures"

    summary = summarize_pairs(imported.verdicts, system_a=A, resamples=50)
    assert summary.wtl["overall"] == WTL(2, 1, 2)
    assert summary.wtl["information_completeness"] == WTL(2, 1, 2)
    assert summary.wtl["content_depth"] == WTL(3, 1, 1)
    assert summary.wtl["requirement_fitness"] == WTL(2, 2, 1)
    assert summary.wtl["readability"] == WTL(2, 1, 2)
    assert summary.judges == ("human:ann", "human:bob", "human:carol")
    assert summary.order_agreement is None  # one reading each: no order to agree with
    assert summarize_pairs(imported.verdicts, system_a=B, resamples=50).wtl["content_depth"] == WTL(1, 1, 3)


def test_import_combines_repeated_rows_and_checks_task_and_columns(tmp_path: Path) -> None:
    out = export(tmp_path)
    sheet = fill(
        out,
        [
            row("p001", "ann", "1", "1", "1", "1", "tie"),
            row("p001", "ann", "both_poor", "1", "2", "1", "tie"),
            {**row("p002", "ann", "1", "1", "1", "1", "1"), "task_id": "t3"},
            row("p003", "ann", "1", "1", "1", "1", ""),
        ],
    )
    imported = import_pairs(sheet, out / "key.json")
    (verdict,) = imported.verdicts
    assert len(verdict.readings) == 2
    assert results(verdict) == ["tie", "win", "tie", "win", "tie"]  # disagreement between rows is a tie
    assert imported.errors == [
        f"{sheet}:4: column task_id: 't3', but the key has 't2'",
        f'{sheet}:5: column readability: \'\' is not "1", "2" or "tie"',  # half-filled is not blank
    ]
    bare = out / "bare.csv"
    bare.write_text("pair_id,overall\np001,1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no column information_completeness, content_depth"):
        import_pairs(bare, out / "key.json")
    (out / "bad.json").write_text('{"name_a": "x"}', encoding="utf-8")
    with pytest.raises(ConfigError, match="not an annotation key"):
        import_pairs(sheet, out / "bad.json")
    key = json.loads((out / "key.json").read_text(encoding="utf-8"))
    key["pairs"]["p002"]["report_1"] = A
    (out / "bad.json").write_text(json.dumps(key), encoding="utf-8")
    with pytest.raises(ConfigError, match="pair p002 does not show alpha-system against beta-system"):
        import_pairs(sheet, out / "bad.json")


def verdict(task_id: str, judge: str, result: Result, *, a: str = A, b: str = B) -> PairVerdict:
    return PairVerdict(
        task_id=task_id,
        system_a=a,
        system_b=b,
        judge=judge,
        overall=result,
        dimensions=dict.fromkeys(DIMENSIONS, result),
    )


def test_combine_judges_selects_human_llm_or_both() -> None:
    humans = [verdict("t1", "human:ann", "win"), verdict("t1", "human:bob", "loss")]
    llms = [verdict("t1", "llm:m", "loss", a=B, b=A), verdict("t2", "llm:m", "tie")]
    everything = [humans[0], llms[0], humans[1], llms[1], verdict("t3", "other:x", "win")]
    assert combine_judges(everything, "human") == humans
    assert combine_judges(everything, "llm") == llms
    both = combine_judges(everything, "both")
    assert both == [humans[0], llms[0], humans[1], llms[1]]
    # Each verdict is its own observation: t1 counts three times (win, win for A from the LLM, loss).
    assert summarize_pairs(both, system_a=A, resamples=20).wtl["overall"] == WTL(2, 1, 1)


def test_judge_agreement_on_overlapping_tasks() -> None:
    humans = [
        verdict("t1", "human:ann", "win"),
        verdict("t2", "human:ann", "loss"),
        verdict("t3", "human:ann", "tie"),
        verdict("t4", "human:ann", "win"),
    ]
    llms = [  # seen from beta's side: a loss here is a win for alpha
        verdict("t1", "llm:m", "loss", a=B, b=A),
        verdict("t2", "llm:m", "loss", a=B, b=A),
        verdict("t3", "llm:m", "tie", a=B, b=A),
        failed_verdict(task_id="t4", system_a=B, system_b=A, judge="llm:m", error="boom"),
        verdict("t5", "llm:m", "win"),
    ]
    found = judge_agreement(humans, llms)
    assert (found.n, found.tasks) == (3, 3) and found.rate == pytest.approx(2 / 3)
    assert found.confusion == [[1, 0, 0], [0, 1, 0], [1, 0, 0]]
    # observed 2/3; expected (1·2 + 1·1 + 1·0) / 9 = 1/3; kappa = (2/3 − 1/3) / (1 − 1/3)
    assert found.kappa == pytest.approx(0.5)
    second = judge_agreement([*humans, verdict("t1", "human:bob", "loss")], llms)
    assert (second.n, second.tasks, second.rate) == (4, 3, 0.5)
    empty = judge_agreement([], llms)
    assert (empty.n, empty.rate, empty.kappa) == (0, None, None)
    with pytest.raises(ValueError, match="unknown key"):
        judge_agreement(humans, llms, key="speed")
