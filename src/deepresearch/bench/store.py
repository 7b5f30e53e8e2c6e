"""The results of one benchmark, in one SQLite file (``bench/NAME/results.sqlite``).

Why SQLite: the runner updates a task's row the moment it starts or ends, so a benchmark that is
killed keeps everything it finished, and the statistics, pairwise and report modules read the same
file while a run is still going (WAL mode). Only the driver process writes it: Ray workers return
their outcome and the driver stores it.

Tables: ``meta`` (JSON values: name, tasks file, public settings, started…), ``tasks`` (one
``TaskRow`` per task, in the order first seen), ``grades`` (one ``JudgeRecord`` per task and rubric,
replaced as a whole per task) and ``judge_meta`` (the judge model, mode, trials… of the grades). The
schema grows only through the numbered migrations below.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from deepresearch.judge.records import JudgeRecord
from deepresearch.migrations import Migrations, connect, transaction

STORE_FILE = "results.sqlite"

TaskStatus = Literal["pending", "running", "done", "failed"]

MIGRATIONS = Migrations()
_migration = MIGRATIONS.register


@_migration
def m001_benchmark(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")  # values are JSON
    db.execute(
        """
        CREATE TABLE tasks (
            task_id TEXT PRIMARY KEY,
            prompt TEXT NOT NULL,
            domain TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL DEFAULT 'pending',   -- pending | running | done | failed
            run_dir TEXT NOT NULL DEFAULT '',
            report_path TEXT NOT NULL DEFAULT '',
            steps INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            wall_s REAL NOT NULL DEFAULT 0,           -- summed over attempts
            error TEXT NOT NULL DEFAULT '',           -- one line; the last failure
            attempts INTEGER NOT NULL DEFAULT 0,
            started TEXT NOT NULL DEFAULT '',         -- UTC ISO 8601, the last attempt
            ended TEXT NOT NULL DEFAULT ''
        )
        """
    )
    db.execute(
        """
        CREATE TABLE grades (
            task_id TEXT NOT NULL,
            ordinal INTEGER NOT NULL,                 -- the rubric's position in the task
            criterion TEXT NOT NULL,                  -- the columns up to `failed` are for people and SQL;
            axis TEXT NOT NULL,                       -- `record` is the source of truth
            weight REAL NOT NULL,
            verdict TEXT,
            score REAL,
            failed INTEGER NOT NULL,
            record TEXT NOT NULL,                     -- the JudgeRecord as JSON
            PRIMARY KEY (task_id, ordinal)
        )
        """
    )
    db.execute("CREATE TABLE judge_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


@_migration
def m002_outcome(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE tasks ADD COLUMN outcome TEXT NOT NULL DEFAULT ''")


@dataclass
class TaskRow:
    """One task of the benchmark and what became of it."""

    task_id: str
    prompt: str
    domain: str = ""
    status: TaskStatus = "pending"
    run_dir: str = ""
    report_path: str = ""
    steps: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    wall_s: float = 0.0
    error: str = ""
    attempts: int = 0
    started: str = ""
    ended: str = ""
    outcome: str = ""
    """The run's ``outcome`` once done: ``report``, ``extractive``, ``uncited`` or ``empty``."""


_COLUMNS = [f.name for f in fields(TaskRow)]


class BenchStore:
    """One benchmark's results file; safe to share between threads of one process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        db = connect(path, MIGRATIONS, what="benchmark store")
        # no fsync per commit (WAL stays consistent; a power cut may lose the last rows): every row
        # can be rebuilt from the run directories, which the runner reconciles on the next start
        db.execute("PRAGMA synchronous = NORMAL")
        self._db = db

    @classmethod
    def open(cls, bench_dir: Path) -> BenchStore:
        """The store of the benchmark in ``bench_dir`` (created when new)."""
        return cls(bench_dir / STORE_FILE)

    def __enter__(self) -> BenchStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- meta

    def set_meta(self, key: str, value: Any) -> None:
        """Set one value (anything JSON can hold; paths are written as strings)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, _dumps(value)),
            )

    def meta(self) -> dict[str, Any]:
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM meta ORDER BY key").fetchall()
        return {key: json.loads(value) for key, value in rows}

    # --- tasks

    def upsert_task(self, row: TaskRow) -> None:
        """Insert the row, or replace the stored one of the same ``task_id`` (keeping its position)."""
        updates = ", ".join(f"{name} = excluded.{name}" for name in _COLUMNS[1:])
        with self._lock:
            self._db.execute(
                f"INSERT INTO tasks ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
                f"ON CONFLICT(task_id) DO UPDATE SET {updates}",
                astuple(row),
            )

    def task(self, task_id: str) -> TaskRow | None:
        with self._lock:
            found = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM tasks WHERE task_id = ?", (task_id,)
            ).fetchone()
        return TaskRow(*found) if found is not None else None

    def tasks(self) -> list[TaskRow]:
        """Every task, in the order it was first stored (the task file's order)."""
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(_COLUMNS)} FROM tasks ORDER BY rowid").fetchall()
        return [TaskRow(*row) for row in rows]

    # --- grades

    def replace_grades(self, task_id: str, records: list[JudgeRecord]) -> None:
        """Make ``records`` the task's grades (an empty list removes them), in one transaction."""
        with self._lock, transaction(self._db):
            self._db.execute("DELETE FROM grades WHERE task_id = ?", (task_id,))
            self._db.executemany(
                "INSERT INTO grades (task_id, ordinal, criterion, axis, weight, verdict, score, failed, "
                "record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        task_id,
                        ordinal,
                        r.criterion,
                        r.axis,
                        r.weight,
                        r.verdict,
                        r.score,
                        int(r.failed),
                        r.model_dump_json(),
                    )
                    for ordinal, r in enumerate(records)
                ],
            )

    def grades(self, task_id: str | None = None) -> list[JudgeRecord]:
        """The grades of one task, or of every task (in task order, then rubric order)."""
        query = (
            "SELECT g.record FROM grades g LEFT JOIN tasks t ON t.task_id = g.task_id "
            "{where} ORDER BY t.rowid IS NULL, t.rowid, g.task_id, g.ordinal"
        )
        with self._lock:
            if task_id is None:
                rows = self._db.execute(query.format(where="")).fetchall()
            else:
                rows = self._db.execute(query.format(where="WHERE g.task_id = ?"), (task_id,)).fetchall()
        return [JudgeRecord.model_validate_json(row[0]) for row in rows]

    def set_judge_meta(self, info: dict[str, Any]) -> None:
        """Describe how the stored grades were made (judge model, mode, trials…); replaces the old info."""
        with self._lock, transaction(self._db):
            self._db.execute("DELETE FROM judge_meta")
            self._db.executemany(
                "INSERT INTO judge_meta (key, value) VALUES (?, ?)",
                [(key, _dumps(value)) for key, value in info.items()],
            )

    def judge_meta(self) -> dict[str, Any]:
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM judge_meta ORDER BY key").fetchall()
        return {key: json.loads(value) for key, value in rows}


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
