"""RACE for DeepResearch Bench: hand-built files in the benchmark's format, a scripted comparative judge
on the fake OpenAI server (real HTTP), and the official numbers computed by hand in the test."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from deepresearch.errors import ConfigError
from deepresearch.judge.drb import (
    DrbCriterion,
    DrbTask,
    LoadedDrb,
    clean_article,
    detect_language,
    load_drb,
)
from deepresearch.judge.race import (
    RaceScore,
    parse_race_reply,
    race_benchmark,
    race_prompt_tokens,
    race_task,
    render_race_prompt,
    score_race,
)
from deepresearch.judge.verdicts import InvalidJudgeOutput
from deepresearch.llm.client import ChatClient, LLMConfig
from deepresearch.llm.tokens import count_tokens
from tests.fakes.openai_server import FakeOpenAI, Reply

EN_PROMPT = "Assess the outlook for grid-scale sodium-ion storage in Europe to 2030."
ZH_PROMPT = "分析中国新能源汽车出口增长的主要驱动因素及其可持续性"
# weights chosen so that none of them can appear in a prompt by accident
WEIGHTS = {
    "1": {
        "dims": {"comprehensiveness": 0.619, "insight": 0.381},
        "comprehensiveness": [0.517, 0.318, 0.165],
        "insight": [0.643, 0.357],
    },
    "2": {
        "dims": {"comprehensiveness": 0.456, "insight": 0.544},
        "comprehensiveness": [0.583, 0.417],
        "insight": [0.712, 0.288],
    },
}
CRITERIA = {
    "1": {
        "comprehensiveness": ["Cost trajectory", "Supply chain", "Policy landscape"],
        "insight": ["Scenario reasoning", "Risks weighed"],
    },
    "2": {
        "comprehensiveness": ["出口数据覆盖", "政策因素"],
        "insight": ["驱动因素的因果分析", "可持续性判断"],
    },
}
ARTICLES = {
    "1": (
        "TARGET-EN: sodium-ion packs undercut lithium iron phosphate by 2028 [1].\n\n"
        "## References\n[1] https://example.org/sodium-ion-outlook",
        "REFERENCE-EN body",
    ),
    "2": ("目标文章：出口增长来自成本优势与海外建厂。", "参考文章：补贴、供应链与品牌共同推动出口。"),
}


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records) + "\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def drb_files(tmp_path: Path) -> dict[str, Path]:
    return write_drb_files(tmp_path)


def write_drb_files(tmp_path: Path) -> dict[str, Path]:
    """Two DeepResearch Bench tasks (en, zh) with their references and queries, and a malformed line."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    criteria = []
    for task_id, prompt in (("1", EN_PROMPT), ("2", ZH_PROMPT)):
        weights = WEIGHTS[task_id]
        criteria.append(
            {
                "id": int(task_id),
                "prompt": prompt,
                "dimension_weight": weights["dims"],
                "criterions": {
                    dim: [
                        {"criterion": text, "explanation": f"Explains {text}", "weight": weight}
                        for text, weight in zip(CRITERIA[task_id][dim], weights[dim], strict=True)
                    ]
                    for dim in ("comprehensiveness", "insight")
                },
            }
        )
    criteria.append('{"id": 3, "prompt": "broken"')  # a malformed line: reported, the rest loads
    return {
        "criteria": write_jsonl(tmp_path / "criteria.jsonl", criteria),
        "references": write_jsonl(
            tmp_path / "reference.jsonl",
            [
                {"id": 1, "prompt": EN_PROMPT, "article": ARTICLES["1"][1]},
                # an id that matches nothing: joined on the prompt, as the official scripts join
                {"id": "zh-2", "prompt": f"  {ZH_PROMPT} ", "article": ARTICLES["2"][1]},
            ],
        ),
        "queries": write_jsonl(
            tmp_path / "query.jsonl",
            [
                {"id": 1, "topic": "Energy & Utilities", "language": "en", "prompt": EN_PROMPT},
                {"id": 2, "topic": "Transportation", "language": "zh", "prompt": ZH_PROMPT},
            ],
        ),
    }


def load(files: dict[str, Path]) -> LoadedDrb:
    return load_drb(files["criteria"], references=files["references"], queries=files["queries"])


# --- the scripted comparative judge

EN_FIRST = {
    "comprehensiveness": [
        {"criterion": 1, "article_1": 7, "article_2": 8},
        {"criterion": 2, "article_1": 11, "article_2": 6},  # out of range: invalid
        {"criterion": 3, "article_1": 4, "article_2": 4.5},
    ],
    "insight": [
        {"criterion": 1, "article_1": 9, "article_2": 6},
        {"criterion": 2, "article_1": 5, "article_2": 7},
    ],
}
EN_RETRY = {"comprehensiveness": [{"criterion": 2, "article_1": "n/a", "article_2": 6}]}  # fails again
ZH_RETRY = {
    "comprehensiveness": [
        {"criterion": 1, "article_1": 6, "article_2": 8},
        {"criterion": 2, "article_1": "7.5", "article_2": 7},
    ],
    "insight": [
        {"criterion": 1, "article_1": 8, "article_2": 6},
        {"criterion": 2, "article_1": 3, "article_2": 5},
    ],
}


def scripted_judge(request: dict[str, Any]) -> Reply:
    """The English task's first reply is fenced JSON after prose with one criterion out of range, and
    the retry is invalid again; the Chinese task's first reply is no JSON at all, the retry is complete."""
    first = str(request["messages"][0]["content"])
    retry = len(request["messages"]) > 1
    if "TARGET-EN" in first:
        answer = EN_RETRY if retry else EN_FIRST
        return Reply(content="Here are my scores.\n```json\n" + json.dumps(answer) + "\n```")
    if retry:
        return Reply(content=json.dumps(ZH_RETRY, ensure_ascii=False))
    return Reply(content="两篇文章都很好。")


def run_race(config: LLMConfig, loaded: LoadedDrb) -> list[RaceScore]:
    async def go() -> list[RaceScore]:
        async with ChatClient(config) as client:
            return list(
                await asyncio.gather(
                    *(
                        race_task(client, task, ARTICLES[task.task_id][0], loaded.references[task.task_id])
                        for task in loaded.tasks
                    )
                )
            )

    return asyncio.run(go())


def side(scores: list[tuple[float, float]], weights: list[float]) -> float:
    """Σ s·cw / Σ cw, written out for the hand computation."""
    return sum(s * w for s, w in zip(scores, weights, strict=True)) / sum(weights)


def official_numbers() -> dict[str, dict[str, Any]]:
    """DeepResearch Bench's RACE of the scripted replies, computed by hand from the official formula:
    per side Σ_d dw · (Σ s·cw / Σ cw), the task's score target / (target + reference)."""
    # English task: comprehensiveness criterion 2 failed twice, so it leaves that dimension's Σ cw
    w = WEIGHTS["1"]
    kept = [w["comprehensiveness"][0], w["comprehensiveness"][2]]
    en_comp_t, en_comp_r = side([7, 4], kept), side([8, 4.5], kept)
    en_ins_t, en_ins_r = side([9, 5], w["insight"]), side([6, 7], w["insight"])
    en_t = 0.619 * en_comp_t + 0.381 * en_ins_t
    en_r = 0.619 * en_comp_r + 0.381 * en_ins_r
    # Chinese task: an unreadable first reply, a complete retry
    w = WEIGHTS["2"]
    zh_comp_t, zh_comp_r = side([6, 7.5], w["comprehensiveness"]), side([8, 7], w["comprehensiveness"])
    zh_ins_t, zh_ins_r = side([8, 3], w["insight"]), side([6, 5], w["insight"])
    zh_t = 0.456 * zh_comp_t + 0.544 * zh_ins_t
    zh_r = 0.456 * zh_comp_r + 0.544 * zh_ins_r
    return {
        "1": {
            "overall": en_t / (en_t + en_r),
            "target": en_t,
            "reference": en_r,
            "dimensions": {
                "comprehensiveness": en_comp_t / (en_comp_t + en_comp_r),
                "insight": en_ins_t / (en_ins_t + en_ins_r),
            },
        },
        "2": {
            "overall": zh_t / (zh_t + zh_r),
            "target": zh_t,
            "reference": zh_r,
            "dimensions": {
                "comprehensiveness": zh_comp_t / (zh_comp_t + zh_comp_r),
                "insight": zh_ins_t / (zh_ins_t + zh_ins_r),
            },
        },
    }


# --- the official numbers, end to end


def test_race_matches_the_official_formula_with_a_failed_criterion_and_a_zh_prompt(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig, drb_files: dict[str, Path]
) -> None:
    loaded = load(drb_files)
    assert [t.task_id for t in loaded.tasks] == ["1", "2"]
    fake_llm.script = scripted_judge
    en, zh = run_race(fake_llm_config, loaded)

    hand = official_numbers()
    assert en.overall == pytest.approx(hand["1"]["overall"], abs=1e-9)
    assert en.dimensions == pytest.approx(hand["1"]["dimensions"], abs=1e-9)
    assert en.target == pytest.approx(hand["1"]["target"], abs=1e-9)
    assert en.reference == pytest.approx(hand["1"]["reference"], abs=1e-9)
    assert en.failed_criteria == 1 and en.failed_dimensions == []
    (failed,) = [c for c in en.criteria if c.failed]
    assert (failed.dimension, failed.number, failed.criterion) == ("comprehensiveness", 2, "Supply chain")
    assert en.calls == 2 and en.language == "en" and en.topic == "Energy & Utilities"
    assert zh.overall == pytest.approx(hand["2"]["overall"], abs=1e-9)
    assert zh.dimensions == pytest.approx(hand["2"]["dimensions"], abs=1e-9)
    assert zh.failed_criteria == 0 and zh.calls == 2 and zh.language == "zh"

    # the benchmark: the mean over tasks, overall and per dimension
    summary = race_benchmark([en, zh])
    assert summary.overall == pytest.approx((hand["1"]["overall"] + hand["2"]["overall"]) / 2, abs=1e-9)
    for dimension in ("comprehensiveness", "insight"):
        assert summary.dimensions[dimension] == pytest.approx(
            (hand["1"]["dimensions"][dimension] + hand["2"]["dimensions"][dimension]) / 2, abs=1e-9
        )
    assert (summary.tasks, summary.scored, summary.failed_criteria, summary.failed_tasks) == (2, 2, 1, [])
    assert summary.calls == 4
    assert summary.usage.total_tokens == en.usage.total_tokens + zh.usage.total_tokens > 0
    written = summary.to_dict()
    assert written["tokens"]["per_task"] == summary.usage.total_tokens / 2
    assert json.loads(json.dumps(en.to_dict()))["criteria"][1]["target"] is None


def test_the_judge_sees_both_articles_and_the_criteria_but_no_weights_and_zh_tasks_get_the_zh_prompt(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig, drb_files: dict[str, Path]
) -> None:
    loaded = load(drb_files)
    fake_llm.script = scripted_judge
    run_race(fake_llm_config, loaded)
    assert len(fake_llm.requests) == 4
    first_calls = {}
    for request in fake_llm.requests:
        if len(request["messages"]) == 1:
            text = request["messages"][0]["content"]
            first_calls["1" if "TARGET-EN" in text else "2"] = text
    en_task, zh_task = loaded.tasks
    # the target is cleaned of its citation markers and reference list, as the official pipeline does
    en_target = clean_article(ARTICLES["1"][0])
    assert en_target == "TARGET-EN: sodium-ion packs undercut lithium iron phosphate by 2028."
    assert first_calls["1"] == render_race_prompt(en_task, en_target, ARTICLES["1"][1], language="en")
    assert "example.org" not in first_calls["1"] and "[1]" not in first_calls["1"]
    assert first_calls["2"] == render_race_prompt(zh_task, ARTICLES["2"][0], ARTICLES["2"][1], language="zh")
    assert "评分方法" in first_calls["2"] and "How to score" not in first_calls["2"]
    assert "How to score" in first_calls["1"] and "评分方法" not in first_calls["1"]
    for task_id, text in first_calls.items():
        target, reference = clean_article(ARTICLES[task_id][0]), ARTICLES[task_id][1]
        assert text.index(target) < text.index(reference)  # the target is article 1, as officially
        assert text.count(target) == 1 and text.count(reference) == 1
        for dim, names in CRITERIA[task_id].items():
            assert dim in text
            for name in names:
                assert f"{name} — Explains {name}" in text or f"{name}——Explains {name}" in text
        numbers = [*WEIGHTS[task_id]["dims"].values()]
        numbers += [w for dim in ("comprehensiveness", "insight") for w in WEIGHTS[task_id][dim]]
        for weight in numbers:
            assert str(weight) not in text and str(weight).removeprefix("0") not in text
        assert "weight" not in text.lower() and "权重" not in text

    retries = [r["messages"] for r in fake_llm.requests if len(r["messages"]) == 3]
    en_retry = next(m for m in retries if "TARGET-EN" in m[0]["content"])
    zh_retry = next(m for m in retries if "TARGET-EN" not in m[0]["content"])
    assert en_retry[1] == {"role": "assistant", "content": en_retry[1]["content"]}
    assert "comprehensiveness 2" in en_retry[2]["content"] and "insight" not in en_retry[2]["content"]
    assert "no JSON object" in zh_retry[2]["content"] and "上一条回复" in zh_retry[2]["content"]


def test_a_failed_call_fails_the_task_and_the_benchmark_counts_it(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig, drb_files: dict[str, Path]
) -> None:
    loaded = load(drb_files)
    fake_llm.script = lambda request: Reply(status=400, body='{"error": {"message": "bad request"}}')
    scores = run_race(fake_llm_config, loaded)
    assert all(s.overall is None and s.error and s.calls == 0 for s in scores)
    assert all(s.failed_criteria == 5 if s.task_id == "1" else s.failed_criteria == 4 for s in scores)
    summary = race_benchmark(scores)
    assert summary.overall is None and summary.scored == 0 and summary.failed_tasks == ["1", "2"]
    assert summary.dimensions == {}


# --- pure parts


def make_task(**criteria: list[float]) -> DrbTask:
    return DrbTask(
        task_id="t",
        prompt="q",
        dimension_weight={"comprehensiveness": 0.3, "insight": 0.5, "readability": 0.2},
        criteria={
            dim: [DrbCriterion(f"{dim} {i}", "", w) for i, w in enumerate(weights, 1)]
            for dim, weights in criteria.items()
        },
    )


def test_a_whole_failed_dimension_is_dropped_and_the_dimension_weights_renormalised() -> None:
    task = make_task(comprehensiveness=[0.6, 0.4], insight=[1.0], readability=[0.5, 0.5])
    scores = {
        ("comprehensiveness", 1): (6.0, 8.0),
        ("comprehensiveness", 2): (9.0, 3.0),
        ("readability", 1): (5.0, 5.0),
        ("readability", 2): (7.0, 9.0),
    }
    result = score_race(task, scores, language="en")
    comp_t, comp_r = (6 * 0.6 + 9 * 0.4) / 1.0, (8 * 0.6 + 3 * 0.4) / 1.0
    read_t, read_r = (5 * 0.5 + 7 * 0.5) / 1.0, (5 * 0.5 + 9 * 0.5) / 1.0
    t = (0.3 * comp_t + 0.2 * read_t) / 0.5
    r = (0.3 * comp_r + 0.2 * read_r) / 0.5
    assert result.failed_dimensions == ["insight"] and result.failed_criteria == 1
    assert result.target == pytest.approx(t, abs=1e-9) and result.reference == pytest.approx(r, abs=1e-9)
    assert result.overall == pytest.approx(t / (t + r), abs=1e-9)
    assert set(result.dimensions) == {"comprehensiveness", "readability"}
    # the official code does not renormalise, and its ratio is the same
    official_t, official_r = 0.3 * comp_t + 0.2 * read_t, 0.3 * comp_r + 0.2 * read_r
    assert result.overall == pytest.approx(official_t / (official_t + official_r), abs=1e-12)
    summary = race_benchmark([result])
    assert summary.failed_dimensions == 1 and "insight" not in summary.dimensions


def test_zero_scores_on_both_sides_give_zero_as_officially() -> None:
    task = make_task(insight=[1.0])
    result = score_race(task, {("insight", 1): (0.0, 0.0)}, language="en")
    assert result.overall == 0.0 and result.dimensions == {"insight": 0.0}


def test_replies_are_read_tolerantly_and_invalid_items_are_named() -> None:
    task = make_task(comprehensiveness=[0.5, 0.5], insight=[1.0])
    text = (
        'Sure! {"scores": {"Comprehensiveness": ['
        '{"criterion": "comprehensiveness 2", "article_1_score": 6, "article_2_score": "7/10"},'
        '{"criterion": "#1", "target": -1, "reference": 5}]}'  # truncated: no insight, no closing
    )
    found, problems = parse_race_reply(text, task)
    assert found == {("comprehensiveness", 2): (6.0, 7.0)}
    assert problems[("comprehensiveness", 1)].startswith("no score 0–10 for article 1")
    assert problems[("insight", 1)] == "missing"
    # items without numbers are taken in order when the list is complete
    found, problems = parse_race_reply('{"insight": [{"article_1": 10, "article_2": 0}]}', task)
    assert found == {("insight", 1): (10.0, 0.0)} and len(problems) == 2
    for bad, reason in (("", "empty"), ("I cannot evaluate these.", "declined"), ('{"x": []}', "none of")):
        with pytest.raises(InvalidJudgeOutput, match=reason):
            parse_race_reply(bad, task)


def test_prompt_tokens_count_the_whole_single_call_input() -> None:
    task = make_task(comprehensiveness=[1.0])
    target, reference = "alpha " * 300, "beta " * 200
    tokens = race_prompt_tokens(task, target, reference, language="en")
    assert tokens == count_tokens(render_race_prompt(task, target, reference, language="en"))
    assert tokens > count_tokens(target) + count_tokens(reference)


# --- loading


def test_loader_joins_queries_and_references_and_reports_problems(drb_files: dict[str, Path]) -> None:
    loaded = load(drb_files)
    en, zh = loaded.tasks
    assert (en.language, en.topic, zh.language, zh.topic) == (
        "en",
        "Energy & Utilities",
        "zh",
        "Transportation",
    )
    assert en.dimension_weight == {"comprehensiveness": 0.619, "insight": 0.381}
    assert [c.weight for c in en.criteria["comprehensiveness"]] == [0.517, 0.318, 0.165]
    assert loaded.references == {"1": ARTICLES["1"][1], "2": ARTICLES["2"][1]}
    assert len(loaded.errors) == 1 and "criteria.jsonl:3: invalid JSON" in loaded.errors[0]


def test_loader_without_queries_guesses_the_language_and_names_missing_references(
    tmp_path: Path, drb_files: dict[str, Path]
) -> None:
    references = write_jsonl(
        tmp_path / "refs.jsonl",
        [{"id": 1, "article": "r"}, {"id": 9, "prompt": "unknown", "article": "x"}, {"id": 1, "article": ""}],
    )
    loaded = load_drb(drb_files["criteria"], references=references)
    assert [t.language for t in loaded.tasks] == ["en", "zh"] and loaded.tasks[0].topic == ""
    assert loaded.references == {"1": "r"}
    assert any("refs.jsonl:2: matches no task" in e for e in loaded.errors)
    assert any("refs.jsonl:3: expected {id, prompt, article}" in e for e in loaded.errors)
    assert any("no reference article for task '2'" in e for e in loaded.errors)
    assert detect_language("中文 text") == "zh" and detect_language("plain") == "en"
    with pytest.raises(ConfigError, match="does not exist"):
        load_drb(tmp_path / "missing.jsonl")


# --- the command (registered on a Typer app of its own here; the lead wires it into `judge`)


def test_race_command_writes_per_task_results_and_a_summary(
    fake_llm: FakeOpenAI, tmp_path: Path, drb_files: dict[str, Path]
) -> None:
    import typer
    from typer.testing import CliRunner

    from deepresearch.cli.race import judge_race

    app = typer.Typer()
    app.command("race")(judge_race)
    app.command("noop")(lambda: None)  # two commands, so "race" is addressed by name as under `judge`
    reports = write_jsonl(
        tmp_path / "reports.jsonl", [{"id": 1, "prompt": EN_PROMPT, "article": ARTICLES["1"][0]}]
    )
    fake_llm.script = scripted_judge
    out = tmp_path / "out" / "race.jsonl"
    result = CliRunner().invoke(
        app,
        [
            "race",
            "--tasks",
            str(drb_files["criteria"]),
            "--references",
            str(drb_files["references"]),
            "--queries",
            str(drb_files["queries"]),
            "--reports",
            str(reports),
            "--out",
            str(out),
            "--judge-model",
            "judge-x",
            "--judge-base-url",
            fake_llm.base_url,
        ],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    by_id = {line["task_id"]: line for line in lines}
    assert set(by_id) == {"1"}  # task 2 has no report: listed as missing, not scored
    assert by_id["1"]["failed_criteria"] == 1 and 0 < by_id["1"]["overall"] < 1
    summary = json.loads((out.parent / "summary.json").read_text(encoding="utf-8"))
    overall = 100 * by_id["1"]["overall"]
    assert summary["protocol"]["name"] == "deepresearchbench"
    assert summary["overall"] == pytest.approx(overall, abs=1e-9)
    assert summary["per_task"]["1"]["score"] == pytest.approx(overall, abs=1e-9)
    assert summary["per_task"]["1"]["domain"] == "Energy & Utilities"
    assert summary["per_domain"] == {"Energy & Utilities": {"score": pytest.approx(overall), "tasks": 1}}
    assert set(summary["per_dimension"]) == {"comprehensiveness", "insight"}
    assert summary["failed"]["gradings"] == 1 and summary["failed"]["missing_reports"] == ["2"]
    assert summary["tokens"]["total_tokens"] > 0 and len(fake_llm.requests) == 2
    assert summary["cost"]["usd"] >= 0
    headline = f"benchmark score (RACE): {overall:.2f} over 1 tasks; 1 failed criteria renormalised"
    assert headline in result.stdout


def test_clean_article_drops_citations_links_and_reference_lists_but_keeps_the_text() -> None:
    article = (
        "# Report\n\nCosts fell [1][2, 3] sharply[^4]. See [IEA](https://iea.org/x) and https://ex.com/a.\n"
        "中国出口增长【5】很快。Prices [1](https://a.b/c) dropped (https://foo.org/bar).\n\n"
        "## References\n[1] IEA, https://iea.org/x\n[2] Other\n\n## Appendix\nKept.\n\n"
        "[^4]: a footnote\n\n**参考文献：**\n- 某文献\n"
    )
    assert clean_article(article) == (
        "# Report\n\nCosts fell sharply. See IEA and.\n"
        "中国出口增长很快。Prices dropped.\n\n## Appendix\nKept."
    )
    assert clean_article("No citations here.\n\nTwo paragraphs.") == "No citations here.\n\nTwo paragraphs."


def test_race_command_exits_1_when_no_task_could_be_scored(
    fake_llm: FakeOpenAI, tmp_path: Path, drb_files: dict[str, Path]
) -> None:
    import typer
    from typer.testing import CliRunner

    from deepresearch.cli.race import judge_race

    app = typer.Typer()
    app.command("race")(judge_race)
    app.command("noop")(lambda: None)
    reports = write_jsonl(
        tmp_path / "reports.jsonl", [{"id": 1, "prompt": EN_PROMPT, "article": ARTICLES["1"][0]}]
    )
    fake_llm.script = lambda request: Reply(status=400, body='{"error": {"message": "bad request"}}')
    out = tmp_path / "out" / "race.jsonl"
    args = ["race", "--tasks", str(drb_files["criteria"]), "--references", str(drb_files["references"])]
    args += ["--reports", str(reports), "--out", str(out)]
    args += ["--judge-model", "judge-x", "--judge-base-url", fake_llm.base_url]
    result = CliRunner().invoke(app, args, env={"DEEPRESEARCH_MAX_RETRIES": "0"})
    assert result.exit_code == 1
    assert "benchmark score (RACE): n/a over 0 tasks" in result.stdout
    assert "no task could be scored" in result.stderr
    assert json.loads((out.parent / "summary.json").read_text(encoding="utf-8"))["overall"] is None
