"""Research jobs for the server: a persistent queue, a bounded pool of workers, live events, and
recovery after a restart.

A job is a question plus a few options; its work is an ordinary run (``research`` / ``resume``) in its
own run directory, so everything the CLI guarantees — events on disk step by step, resume after a
kill — holds here too. The job table (SQLite, next to the runs) adds what a server needs: the queue
order, who is waiting, and which jobs were running when the process stopped.

Status: ``queued`` → ``running`` → ``done`` | ``failed`` | ``cancelled``. A job that was running when
the server stopped becomes ``interrupted`` and, like every ``queued`` job, is taken up again when the
server starts (interrupted ones first, resumed from their last completed step). Shutdown asks each
running run to stop after the step in progress (``StopRequested``) and cancels what has not stopped
after the grace period; either way the run is persisted and resumable.

Events: every event a run records gets a sequence number, its line in ``events.jsonl`` counted from 1
(what SSE sends as the event id). ``JobManager.events`` replays the file after a given id and then
follows the live run, with no gap and no duplicate: it subscribes before it reads the file, and both
happen on the event loop that runs the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sqlite3
import threading
from collections.abc import AsyncIterator
from dataclasses import astuple, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from deepresearch.agent.stops import StopRequested
from deepresearch.config import Settings
from deepresearch.errors import ConfigError, RunStoreError
from deepresearch.events import Event, event_json
from deepresearch.migrations import Migrations, connect
from deepresearch.runs import RunDir
from deepresearch.tools.registry import Registry

logger = logging.getLogger(__name__)

JobStatus = Literal["queued", "running", "done", "failed", "cancelled", "interrupted"]
FINAL: frozenset[str] = frozenset({"done", "failed", "cancelled"})
JOBS_FILE = "jobs.sqlite"
DEFAULT_WORKERS = 4
DEFAULT_GRACE_S = 30.0
QUESTION_MAX_CHARS = 20_000

MIGRATIONS = Migrations()


@MIGRATIONS.register
def m001_jobs(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            question TEXT NOT NULL,
            options TEXT NOT NULL,            -- JSON of ResearchOptions
            status TEXT NOT NULL,
            run_dir TEXT NOT NULL,
            created TEXT NOT NULL,
            started TEXT NOT NULL DEFAULT '',
            ended TEXT NOT NULL DEFAULT '',
            error TEXT NOT NULL DEFAULT '',
            client TEXT NOT NULL DEFAULT ''
        )
        """
    )
    db.execute("CREATE INDEX jobs_by_status ON jobs (status, created)")


def check_text(text: str) -> str:
    """``text`` if it is valid Unicode; a lone surrogate (JSON's ``"\\ud800"`` parses to one) cannot be
    stored or sent on, so it is refused here with a message rather than failing later as a 500."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("it holds a lone surrogate (U+D800 to U+DFFF), which is not valid Unicode") from None
    return text


class ResearchOptions(BaseModel):
    """What a request may change about a run: budgets and language, nothing that reaches the machine
    (endpoints, keys, shell sandbox, MCP servers) — those are the server's own settings. Every budget
    is a finite number in its range: JSON as Python reads it admits ``NaN`` and ``Infinity``."""

    model_config = ConfigDict(extra="forbid")

    max_steps: int | None = Field(default=None, ge=1, le=200)
    max_cost: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    max_tokens: int | None = Field(default=None, ge=1000)
    max_time: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    language: Literal["auto", "en", "zh"] | None = None

    def apply(self, settings: Settings) -> Settings:
        update: dict[str, Any] = {
            "max_steps": self.max_steps,
            "max_cost": self.max_cost,
            "max_total_tokens": self.max_tokens,
            "max_wall_time": self.max_time,
            "language": self.language,
        }
        return settings.model_copy(update={k: v for k, v in update.items() if v is not None})


@dataclass
class Job:
    id: str
    question: str
    options: str
    status: JobStatus
    run_dir: str
    created: str
    started: str = ""
    ended: str = ""
    error: str = ""
    client: str = ""

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def research_options(self) -> ResearchOptions:
        return ResearchOptions.model_validate_json(self.options)


_COLUMNS = [f.name for f in fields(Job)]
_SELECT = ", ".join(_COLUMNS)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_job_id() -> str:
    """Sortable by creation time, unguessable: a job id is the only key to its report."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(6)


class JobStore:
    """The job table; every write commits at once (a job is never lost between two statements)."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        db = connect(path, MIGRATIONS, what="job store")
        self._db = db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def insert(self, job: Job) -> None:
        with self._lock:
            self._db.execute(
                f"INSERT INTO jobs ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                astuple(job),
            )

    def update(self, job_id: str, **changes: str) -> None:
        unknown = set(changes) - set(_COLUMNS[1:])
        if unknown:
            raise ValueError(f"unknown job fields: {', '.join(sorted(unknown))}")
        assignments = ", ".join(f"{name} = ?" for name in changes)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*changes.values(), job_id))

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
        return Job(*row) if row else None

    def recent(self, *, status: str | None = None, limit: int = 50, before: str | None = None) -> list[Job]:
        """Newest first; ``before`` pages on by job id (ids sort by creation time)."""
        where, params = [], []
        if status:
            where.append("status = ?")
            params.append(status)
        if before:
            where.append("id < ?")
            params.append(before)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM jobs {clause} ORDER BY id DESC LIMIT ?", (*params, limit)
            ).fetchall()
        return [Job(*row) for row in rows]

    def unfinished(self) -> list[Job]:
        """Jobs to take up at start: interrupted (and running: the process died) first, then queued."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_SELECT} FROM jobs WHERE status IN ('running', 'interrupted', 'queued') "
                "ORDER BY status = 'queued', created"
            ).fetchall()
        return [Job(*row) for row in rows]


@dataclass(frozen=True)
class JobEvent:
    seq: int
    type: str
    data: str
    """The event as its JSON line."""


class _Feed:
    """The live events of one running job, fanned out to every subscriber."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.subscribers: set[asyncio.Queue[JobEvent | None]] = set()

    def publish(self, event: Event) -> None:
        self.seq += 1
        item = JobEvent(self.seq, event.type, event_json(event))
        for queue in self.subscribers:
            queue.put_nowait(item)

    def close(self) -> None:
        for queue in self.subscribers:
            queue.put_nowait(None)


class JobManager:
    """Owns the queue and the workers; the HTTP, OpenAI-compatible and MCP faces all submit here."""

    def __init__(
        self,
        settings: Settings,
        *,
        data_dir: Path,
        workers: int = DEFAULT_WORKERS,
        grace_s: float = DEFAULT_GRACE_S,
    ) -> None:
        if workers < 1:
            raise ConfigError("the server needs at least one worker")
        self.settings, self.tools = sandboxed(settings)
        self.data_dir = data_dir
        self.runs_dir = data_dir / "runs"
        self.workers = workers
        self.grace_s = grace_s
        self.store = JobStore(data_dir / JOBS_FILE)
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._feeds: dict[str, _Feed] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stops: dict[str, asyncio.Event] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._closing = False

    # --- lifecycle

    async def start(self) -> None:
        """Take up what the last process left, then start the workers."""
        for job in self.store.unfinished():
            if job.status != "queued":
                self.store.update(job.id, status="interrupted")
            self._queue.put_nowait(job.id)
        self._workers = [
            asyncio.create_task(self._work(), name=f"job-worker-{i}") for i in range(self.workers)
        ]

    async def shutdown(self) -> None:
        """Stop taking jobs; let each running run finish its step (up to ``grace_s``), then cancel."""
        self._closing = True
        for stop in self._stops.values():
            stop.set()
        running = list(self._tasks.values())
        if running:
            _, late = await asyncio.wait(running, timeout=self.grace_s)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self.store.close()

    # --- the faces' API

    def submit(self, question: str, options: ResearchOptions | None = None, *, client: str = "") -> Job:
        if self._closing:
            raise ConfigError("the server is shutting down")
        question = question.strip()
        if not question:
            raise ConfigError("the question is empty")
        try:
            check_text(question)
        except ValueError as exc:
            raise ConfigError(f"the question is not valid: {exc}") from None
        if len(question) > QUESTION_MAX_CHARS:
            raise ConfigError(f"the question is longer than {QUESTION_MAX_CHARS} characters")
        job_id = new_job_id()
        job = Job(
            id=job_id,
            question=question,
            options=(options or ResearchOptions()).model_dump_json(exclude_none=True),
            status="queued",
            run_dir=str(self.runs_dir / job_id),
            created=_now(),
            client=client,
        )
        self.store.insert(job)
        self._queue.put_nowait(job_id)
        return job

    def get(self, job_id: str) -> Job | None:
        return self.store.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued or running job (a running run is recorded as cancelled); final jobs stay."""
        job = self.store.get(job_id)
        if job is None or job.final:
            return job
        task = self._tasks.get(job_id)
        if task is not None:
            task.cancel()
        self._set(job_id, **_ended("cancelled"))
        return self.store.get(job_id)

    async def wait(self, job_id: str, timeout: float | None = None) -> Job | None:
        """The job once it is final (or when ``timeout`` passes)."""

        async def final() -> None:
            while True:
                job = self.store.get(job_id)
                if job is None or job.final:
                    return
                changed = self._changed.setdefault(job_id, asyncio.Event())
                await changed.wait()
                changed.clear()

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(final(), timeout)
        return self.store.get(job_id)

    async def events(self, job_id: str, after: int = 0) -> AsyncIterator[JobEvent]:
        """Events with ``seq > after`` from the log, then live ones until the job is final."""
        queue: asyncio.Queue[JobEvent | None] = asyncio.Queue()
        feed = self._feeds.get(job_id)
        if feed is not None:
            feed.subscribers.add(queue)
        try:
            job = self.store.get(job_id)
            if job is None:
                return
            last = after
            for seq, event in enumerate(_logged(Path(job.run_dir)), start=1):
                if seq > last:
                    last = seq
                    yield JobEvent(seq, event.type, event_json(event))
            while True:
                if feed is None:  # not running in this process: wait until it runs or ends
                    job = self.store.get(job_id)
                    if job is None or job.final:
                        return
                    feed = await self._next_feed(job_id)
                    if feed is None:
                        continue
                    feed.subscribers.add(queue)
                    for seq, event in enumerate(_logged(Path(job.run_dir)), start=1):
                        if seq > last:
                            last = seq
                            yield JobEvent(seq, event.type, event_json(event))
                item = await queue.get()
                if item is None:  # the run ended in this process
                    feed.subscribers.discard(queue)
                    feed = None
                    continue
                if item.seq > last:
                    last = item.seq
                    yield item
        finally:
            if feed is not None:
                feed.subscribers.discard(queue)

    async def _next_feed(self, job_id: str) -> _Feed | None:
        changed = self._changed.setdefault(job_id, asyncio.Event())
        await changed.wait()
        changed.clear()
        return self._feeds.get(job_id)

    # --- workers

    async def _work(self) -> None:
        while True:
            job_id = await self._queue.get()
            job = self.store.get(job_id)
            if job is None or job.final or self._closing:
                continue
            task = asyncio.create_task(self._run(job), name=f"job-{job_id}")
            self._tasks[job_id] = task
            try:
                await asyncio.wait({task})  # the worker itself is cancelled only at shutdown
            finally:
                self._tasks.pop(job_id, None)

    async def _run(self, job: Job) -> None:
        from deepresearch.research import research, resume

        run_dir = Path(job.run_dir)
        resuming = RunDir(run_dir).started
        feed = _Feed(len(_logged(run_dir)) if resuming else 0)
        stop = asyncio.Event()
        self._feeds[job.id], self._stops[job.id] = feed, stop
        settings = job.research_options().apply(self.settings).model_copy(update={"out": run_dir})
        self._set(job.id, status="running", started=job.started or _now(), error="")
        try:
            if resuming:
                await resume(run_dir, settings, on_event=feed.publish, stop=stop, tools=self.tools)
            else:
                await research(job.question, settings, on_event=feed.publish, stop=stop, tools=self.tools)
        except asyncio.CancelledError:
            self._set(job.id, **({"status": "interrupted"} if self._closing else _ended("cancelled")))
            raise
        except StopRequested:  # shutting down: the step in progress was finished and persisted
            self._set(job.id, status="interrupted")
        except Exception as exc:
            error = " ".join(f"{type(exc).__name__}: {exc}".split())[:500]
            logger.warning("job %s failed: %s", job.id, error)
            self._set(job.id, **_ended("failed"), error=error)
        else:
            self._set(job.id, **_ended("done"))
        finally:
            feed.close()
            self._feeds.pop(job.id, None)
            self._stops.pop(job.id, None)

    def _set(self, job_id: str, **changes: str) -> None:
        current = self.store.get(job_id)
        if current is not None and current.final and changes.get("status") not in (None, current.status):
            return  # a cancelled job stays cancelled whatever its run does next
        self.store.update(job_id, **changes)
        final = changes.get("status") in FINAL  # its waiters wake, see it final and leave: forget it
        changed = self._changed.pop(job_id, None) if final else self._changed.get(job_id)
        if changed is not None:
            changed.set()


def sandboxed(settings: Settings) -> tuple[Settings, Registry | None]:
    """The server's settings and tools: the shell runs under bubblewrap or not at all.

    Requests come from anywhere the token reaches, so ``shell_sandbox = "none"`` (or the network-only
    ``unshare`` fallback) is not honoured here: without a working bubblewrap the ``shell`` tool is
    left out of the registry (``None`` means the default tools).
    """
    from deepresearch.tools.base import ShellConfig
    from deepresearch.tools.registry import default_tools
    from deepresearch.tools.sandbox import SandboxKind, detect_sandbox

    try:
        kind = detect_sandbox(ShellConfig(sandbox="bwrap"))
    except ConfigError as exc:
        logger.warning("no bubblewrap sandbox (%s): the server runs without the shell tool", exc)
        tools = default_tools()
        del tools["shell"]
        return settings, tools
    assert kind is SandboxKind.BWRAP
    return settings.model_copy(update={"shell_sandbox": "bwrap"}), None


def _ended(status: JobStatus) -> dict[str, str]:
    return {"status": status, "ended": _now()}


def _logged(run_dir: Path) -> list[Event]:
    try:
        return RunDir(run_dir).events()
    except (RunStoreError, OSError):
        return []


def job_report(job: Job) -> dict[str, Any]:
    """The run's report, usage and sources as far as they exist (a running job has usage only)."""
    run = RunDir(Path(job.run_dir))
    result: dict[str, Any] = {"steps": 0, "usage": {}, "report": None, "sources": [], "outcome": None}
    try:
        info = run.meta
    except RunStoreError:
        return result
    result["steps"], result["usage"] = info.steps, dict(info.usage)
    result["citations"] = dict(info.citations or {})
    result["outcome"], result["outcome_reason"] = info.outcome, info.outcome_reason
    markdown = run.report()
    if markdown is not None:
        result["report"] = {"markdown": markdown, "html": run.report_html() or ""}
    try:
        result["sources"] = run.sources()
    except RunStoreError:
        result["sources"] = []
    return result
