"""An on-disk cache of judge verdicts, so that re-scoring a set of reports costs nothing.

Grading a benchmark means thousands of judge calls; re-running the scorer (another mode, a fixed
loader, a new report among old ones) must not pay for them again. One entry is one trial of one
rubric, stored as the parsed ``Trial``. Its key is a SHA-256 over everything the verdict depends on:

- the judge model and its sampling temperature,
- the prompt family (``paper``, ``official-researchrubrics``, …: the same rubric asked another way is
  another question) and the version of its templates (a hash of the files in ``judge/prompts/`` it
  renders),
- the grading method (``single``, ``batch``, ``chunked:<tokens per chunk>``): a batch verdict was given
  beside other rubrics and a chunked one from collected evidence, so they are not interchangeable,
- the rubric's criterion and polarity, the task prompt, the report's SHA-256,
- the trial index (trial 2 of 3 is a separate sample from trial 1).

Only successful trials are stored; failures are tried again next time. The schema grows through the
numbered migrations below. A cache that cannot be used (a corrupt file, someone else's database) is
reported once and then bypassed: a cache must never be the reason grading fails. SQLite calls block,
so the async methods run them in a worker thread; one connection, guarded by a lock, serves all
(``migrations.CacheFile``, shared with the fetch cache).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
import time
from pathlib import Path

from pydantic import ValidationError

from deepresearch.judge.records import Trial
from deepresearch.migrations import CacheFile, Migrations, transaction

logger = logging.getLogger(__name__)

KEY_FORMAT = 1
"""Bumped when the meaning of a key changes, so old entries stop matching instead of lying."""

MIGRATIONS = Migrations()
_migration = MIGRATIONS.register


@_migration
def m001_verdicts(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE verdicts (
            key TEXT PRIMARY KEY,          -- cache_key(...)
            judge_model TEXT NOT NULL,     -- the rest is for people reading the file
            prompt_version TEXT NOT NULL,
            method TEXT NOT NULL,
            criterion TEXT NOT NULL,
            report_sha256 TEXT NOT NULL,
            trial_index INTEGER NOT NULL,
            trial TEXT NOT NULL,           -- the Trial as JSON
            created_at REAL NOT NULL       -- Unix time
        )
        """
    )


def report_digest(report: str) -> str:
    """SHA-256 of a report's text (UTF-8)."""
    return hashlib.sha256(report.encode()).hexdigest()


def cache_key(
    *,
    judge_model: str,
    temperature: float | None,
    prompt_version: str,
    method: str,
    criterion: str,
    negative: bool,
    prompt_family: str = "paper",
    task_prompt: str,
    report_sha256: str,
    trial_index: int,
) -> str:
    """The key of one trial of one rubric on one report; see the module docstring for why each part."""
    parts = [
        KEY_FORMAT,
        judge_model,
        temperature,
        prompt_version,
        method,
        criterion,
        negative,
        task_prompt,
        report_sha256,
        trial_index,
    ]
    if prompt_family != "paper":  # appended, so the paper family's existing entries keep their keys
        parts.append(prompt_family)
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


class JudgeCache:
    """Judge trials by key, in one SQLite file at ``path`` (created on the first write)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file = CacheFile(path, MIGRATIONS, what="judge cache", without="grading without it", log=logger)

    def close(self) -> None:
        """Close the connection; a later call opens it again."""
        self._file.close()

    async def get(self, key: str) -> Trial | None:
        """The stored trial, or ``None`` (a miss, or no usable cache)."""
        return await asyncio.to_thread(self._get, key)

    async def put(
        self,
        key: str,
        trial: Trial,
        *,
        judge_model: str,
        prompt_version: str,
        method: str,
        criterion: str,
        report_sha256: str,
        trial_index: int,
    ) -> None:
        """Store ``trial`` under ``key`` (replacing an older entry)."""
        row = (
            key,
            judge_model,
            prompt_version,
            method,
            criterion,
            report_sha256,
            trial_index,
            trial.model_dump_json(),
            time.time(),
        )
        await asyncio.to_thread(self._put, row)

    def _get(self, key: str) -> Trial | None:
        with self._file.session(create=False) as db:
            if db is None:
                return None
            row = db.execute("SELECT trial FROM verdicts WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            try:
                return Trial.model_validate_json(row[0])
            except ValidationError:
                logger.debug("judge cache %s: unreadable entry %s, ignored", self.path, key[:12])
                return None
        return None  # the session swallowed an SQLite error

    def _put(self, row: tuple[str, str, str, str, str, str, int, str, float]) -> None:
        with self._file.session(create=True) as db:
            if db is None:
                return
            with transaction(db):
                db.execute(
                    "INSERT OR REPLACE INTO verdicts (key, judge_model, prompt_version, method, criterion,"
                    " report_sha256, trial_index, trial, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
