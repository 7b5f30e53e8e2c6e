"""The benchmark store: rows, meta and grades survive a round trip through the SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from deepresearch.bench.store import STORE_FILE, BenchStore, TaskRow
from deepresearch.errors import ConfigError
from deepresearch.judge.records import JudgeRecord, Trial


def record(task_id: str, criterion: str, verdict: str | None = "satisfied", **extra: object) -> JudgeRecord:
    return JudgeRecord.model_validate(
        {
            "task_id": task_id,
            "criterion": criterion,
            "axis": "Explicit Criteria",
            "weight": 3.0,
            "verdict": verdict,
            "score": {"satisfied": 1.0, "partially": 0.5, None: None}.get(verdict, 0.0),
            **extra,
        }
    )


def test_rows_meta_and_grades_round_trip(tmp_path: Path) -> None:
    with BenchStore.open(tmp_path / "bench" / "demo") as store:
        assert store.path == tmp_path / "bench" / "demo" / STORE_FILE
        store.upsert_task(TaskRow(task_id="b", prompt="second?"))
        store.upsert_task(TaskRow(task_id="a", prompt="first?", domain="Science"))
        done = TaskRow(
            task_id="b",
            prompt="second?",
            status="done",
            run_dir="/r/b",
            report_path="/r/b/report.md",
            steps=6,
            prompt_tokens=1200,
            completion_tokens=340,
            cost_usd=0.0123,
            wall_s=4.5,
            attempts=2,
            started="2026-01-01T00:00:00+00:00",
            ended="2026-01-01T00:00:05+00:00",
        )
        store.upsert_task(done)
        store.set_meta("name", "demo")
        store.set_meta("settings", {"model": "gpt-4o", "max_steps": 8, "index": Path("/i.sqlite")})
        store.set_meta("name", "demo-2")
        trial = Trial(verdict="partially", score=0.5, reasoning="half", evidence=["quote"])
        graded = [
            record("b", "names BM25", trials=[trial], reasoning="ok", evidence=["q"], judge_model="j"),
            record("b", "cites sources", verdict=None, failed=True, error="judge down"),
        ]
        store.replace_grades("b", graded)
        store.replace_grades("a", [record("a", "answers", verdict="not_satisfied")])
        store.set_judge_meta({"model": "judge-1", "trials": 3})
        store.set_judge_meta({"model": "judge-2", "mode": "ternary"})

    with BenchStore(tmp_path / "bench" / "demo" / STORE_FILE) as store:
        rows = store.tasks()
        assert [r.task_id for r in rows] == ["b", "a"]  # first-stored order survives an update
        assert rows[0] == done
        assert store.task("a") == TaskRow(task_id="a", prompt="first?", domain="Science")
        assert store.task("missing") is None
        assert store.meta() == {
            "name": "demo-2",
            "settings": {"model": "gpt-4o", "max_steps": 8, "index": "/i.sqlite"},
        }
        assert store.grades("b") == graded
        assert [g.task_id for g in store.grades()] == ["b", "b", "a"]  # task order, then rubric order
        assert store.judge_meta() == {"model": "judge-2", "mode": "ternary"}  # replaced, not merged
        store.replace_grades("b", [])
        assert [g.task_id for g in store.grades()] == ["a"]


def test_schema_is_migrated_and_a_foreign_database_is_refused(tmp_path: Path) -> None:
    BenchStore(tmp_path / "results.sqlite").close()
    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        names = {row[0] for row in db.execute("SELECT name FROM migrations")}
    assert names == {"m001_benchmark", "m002_outcome"}

    foreign = tmp_path / "other.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE notes (x TEXT)")
    with pytest.raises(ConfigError, match="not a deepresearch benchmark store"):
        BenchStore(foreign)
