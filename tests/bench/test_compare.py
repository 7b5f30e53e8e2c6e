"""The comparison files: verdicts as JSONL, reports read back from a benchmark's store, and which
verdicts count (people's, models', or both)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deepresearch.bench.compare import (
    append_verdict,
    latest,
    read_verdicts,
    reports_from_rows,
    resolve_bench,
    select,
    verdict_file,
    write_verdicts,
)
from deepresearch.bench.pairwise import PairVerdict, Reading, verdict_from_readings
from deepresearch.bench.stats import DIMENSIONS, PairOutcome
from deepresearch.bench.store import BenchStore, TaskRow
from deepresearch.errors import ConfigError


def verdict(task_id: str, judge: str, outcome: PairOutcome = "left_better") -> PairVerdict:
    reading = Reading(a_position=1, outcome=outcome, dimensions=dict.fromkeys(DIMENSIONS, "tie"))
    return verdict_from_readings([reading], task_id=task_id, system_a="x", system_b="y", judge=judge)


def test_verdicts_round_trip_through_jsonl(tmp_path: Path) -> None:
    one = verdict("t", "llm:judge", "both_good")
    path = tmp_path / "pairs.jsonl"
    write_verdicts(path, [one, one])
    assert read_verdicts(path) == [one, one]
    path.write_text(path.read_text() + '{"task_id": 1}\n')
    with pytest.raises(ConfigError, match=r"pairs.jsonl:3"):
        read_verdicts(path)


def test_reports_come_from_finished_rows_only(tmp_path: Path) -> None:
    bench = tmp_path / "alpha"
    (bench / "runs").mkdir(parents=True)
    (bench / "runs" / "t1.md").write_text("ALPHA")
    rows = [
        TaskRow("t1", "P1", status="done", report_path="runs/t1.md"),
        TaskRow("t2", "P2", status="failed", error="boom"),
        TaskRow("t3", "P3", status="done", report_path=str(bench / "missing.md")),
    ]
    reports, prompts = reports_from_rows(rows, bench)
    assert reports == {"t1": "ALPHA"}
    assert prompts == {"t1": "P1", "t2": "P2", "t3": "P3"}


def test_benchmarks_resolve_by_name_or_folder(tmp_path: Path) -> None:
    BenchStore.open(tmp_path / "root" / "alpha").close()
    assert resolve_bench("alpha", tmp_path / "root") == tmp_path / "root" / "alpha"
    assert (
        resolve_bench(str(tmp_path / "root" / "alpha"), tmp_path / "elsewhere") == tmp_path / "root" / "alpha"
    )
    with pytest.raises(ConfigError, match="no benchmark 'beta'"):
        resolve_bench("beta", tmp_path / "root")
    assert verdict_file(tmp_path, "a/b", "c d").name == "a_b-vs-c_d.jsonl"


def test_select_picks_people_models_or_both() -> None:
    human, llm = verdict("t", "human:ann"), verdict("t", "llm:judge")
    assert select([human, llm], "human") == [human]
    assert select([human, llm], "llm") == [llm]
    assert select([human, llm], "both") == [human, llm]


def test_a_verdict_cut_short_at_the_end_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    one, two = verdict("t1", "llm:judge"), verdict("t2", "llm:judge")
    append_verdict(path, one)
    append_verdict(path, two)
    path.write_text(path.read_text() + two.model_dump_json()[:40])  # killed mid-line
    assert read_verdicts(path) == [one, two]
    path.write_text(two.model_dump_json()[:40] + "\n" + one.model_dump_json() + "\n")
    with pytest.raises(ConfigError, match=r"pairs.jsonl:1"):
        read_verdicts(path)  # a broken line in the middle is not a torn write


def test_latest_keeps_the_last_verdict_per_task_judge_and_pair() -> None:
    failed = verdict("t1", "llm:judge").model_copy(update={"failed": True, "overall": None})
    retried = verdict("t1", "llm:judge", "right_better")
    other_judge = verdict("t1", "llm:other")
    person = verdict("t2", "human:ann")
    assert latest([failed, other_judge, person, retried]) == [retried, other_judge, person]
