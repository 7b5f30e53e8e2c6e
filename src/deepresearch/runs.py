"""The run directory: every disk write a run makes goes through here.

Layout (ARCHITECTURE.md): ``run.json`` (summary and status), ``events.jsonl`` (append-only record,
the source of truth), ``messages.json`` (the trajectory), ``sources.json``, ``todo.json``,
``report.md``/``report.html`` and ``workspace/`` (the only folder tools may touch).

Durability rules: events are appended with unbuffered writes (one line each, straight to the OS) and
fsync'ed at every step boundary, so ``kill -9`` loses at most the step in flight; whole-file JSON is
written to a temporary file and moved into place with ``os.replace``, so a reader never sees half a
file. A file that does not parse raises ``RunCorrupted`` naming the path and line — except a torn last
line of ``events.jsonl`` (the write a kill interrupted), which is reported and skipped.

A write that fails (disk full, quota, I/O error) raises ``RunStoreError`` and leaves the log whole: an
append that fails is cut back to the end of the last complete line, and a torn tail left by an earlier
process is mended (completed or cut) before anything is appended after it, so a later ``resume`` reads
every event that was recorded and nothing half written.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import IO, Any, Literal, NoReturn, Protocol

from pydantic import BaseModel, ConfigDict, ValidationError

from deepresearch.errors import RunCorrupted, RunStoreError
from deepresearch.events import Event, RunFinished, event_json, parse_event
from deepresearch.sources import Source

logger = logging.getLogger(__name__)

RunStatus = Literal["running", "done", "failed", "cancelled", "interrupted"]


FORMAT = "deepresearch-run-1"
"""Version of the run-directory format, written into ``run.json``."""
RUN_INFO, EVENTS, MESSAGES, SOURCES, TODO = (
    "run.json",
    "events.jsonl",
    "messages.json",
    "sources.json",
    "todo.json",
)
REPORT, REPORT_HTML, WORKSPACE, LOCK = "report.md", "report.html", "workspace", ".lock"
TASK, TASK_ID = "task.json", "task_id"
"""Which benchmark task a run answers: ``{"task_id", "benchmark"}`` (written by ``bench``), or a
plain-text id a user put beside a run made by hand."""
"""The run directory's files: spelled here and nowhere else (read them through ``RunDir``)."""
_RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")
EventCallback = Callable[[Event], None]


def new_run_id() -> str:
    """Sortable and unique enough for one user: ``20261125-220501-3f9a1c``."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def new_run_dir(runs_dir: Path) -> Path:
    """Where a new run lives by default: ``runs_dir/<a fresh run id>`` (not created yet)."""
    return runs_dir / new_run_id()


def run_id_for(path: Path) -> str:
    """The id of the run that ``path`` will hold: its name when ``new_run_dir`` chose it (so the
    folder and ``run.json`` agree), else a fresh id (a folder the user named)."""
    return path.name if _RUN_ID.fullmatch(path.name) else new_run_id()


FAILED_OUTCOMES = frozenset({"uncited", "empty"})
"""Outcomes that are not what the user asked for: the CLI exits 3 on them."""


class RunInfo(BaseModel):
    """``run.json``: what a listing or a dashboard needs without reading the events."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    format: str = FORMAT
    """Version of the run-directory format."""
    id: str
    """The run id (also the default directory name)."""
    question: str
    model: str = ""
    search: str = ""
    """The search backend."""
    status: RunStatus = "running"
    """``running``, ``done``, ``failed`` or ``cancelled``; listings show ``interrupted`` for a running
    run whose process is gone."""
    started: str = ""
    ended: str | None = None
    steps: int = 0
    """Model calls made."""
    usage: dict[str, Any] = {}
    """``{prompt_tokens, completion_tokens, total_tokens, cost_usd}`` over all calls."""
    citations: dict[str, int] = {}
    """``{cited, resolved, unresolved}``: distinct keys cited, found in the registry, and removed."""
    report_origin: str | None = None
    """``answer`` (the model finished), ``forced`` (a budget forced it), ``fallback`` (evidence list) or
    ``guided`` (written section by section under the guided strategy)."""
    strategy: str = "react"
    """``react`` (the model drives the tools) or ``guided`` (the code drives, the model writes)."""
    outcome: Literal["report", "extractive", "uncited", "empty"] | None = None
    """What the user got: ``report`` (a model-written report with at least one resolved citation),
    ``extractive`` (built from quoted passages), ``uncited`` (a report with no resolved citation) or
    ``empty`` (the fallback: no report, the evidence list). ``uncited`` and ``empty`` exit 3."""
    outcome_reason: str | None = None
    """One line on why the outcome is what it is."""
    guards: dict[str, int] = {}
    """What the loop guards did: ``repeated_calls`` refused, ``guard_steps`` taken for the model,
    final answers rejected as ``echoed_prompt`` or ``fake_citations``."""
    sandbox: str | None = None
    """How the shell tool was isolated: ``bwrap``, ``unshare`` or ``none``."""
    shell_limits: dict[str, str] = {}
    """How the shell's limits are enforced on this machine: ``sandbox``, ``user`` (who commands run
    as), ``memory_limit`` (a cgroup for the whole call, or an address-space limit per process),
    ``process_limit`` and ``workspace_quota``."""
    local_threads: dict[str, Any] = {}
    """The embedded model server's CPU threads: ``threads``, how they were ``decided`` (``setting``,
    ``cached``, ``measured``, ``single-cpu``) and the measured ``timings_ms`` per candidate."""
    error: str | None = None
    pid: int | None = None
    """The process writing the run (used to tell a live run from an interrupted one)."""


@dataclass
class LoadedEvents:
    events: list[Event]
    torn_tail: str | None = None
    """The unparseable last line that a crash left behind, if any (skipped)."""
    warnings: list[str] = field(default_factory=list)


class RunStore:
    """One run directory, opened for writing by exactly one process at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.workspace = path / WORKSPACE
        self._log: int | None = None
        """The descriptor ``events.jsonl`` is appended through (opened on the first append)."""
        self._lock: IO[str] | None = None

    # --- opening

    @classmethod
    def create(cls, path: Path) -> RunStore:
        if (path / EVENTS).exists():
            raise RunStoreError(f"{path} already holds a run; use `deepresearch resume {path}`")
        try:
            path.mkdir(parents=True, exist_ok=True)
            (path / WORKSPACE).mkdir(exist_ok=True)
        except OSError as exc:
            _fail("create", path, exc)
        store = cls(path)
        store.acquire()
        return store

    @classmethod
    def open(cls, path: Path) -> RunStore:
        if not (path / EVENTS).is_file():
            raise RunStoreError(f"{path} is not a run directory (no events.jsonl)")
        store = cls(path)
        try:
            store.workspace.mkdir(exist_ok=True)
        except OSError as exc:
            _fail("create", store.workspace, exc)
        store.acquire()
        return store

    def acquire(self) -> None:
        """Take the run's lock so that two processes never write one run."""
        try:
            handle = (self.path / LOCK).open("a+")
        except OSError as exc:
            _fail("create", self.path / LOCK, exc)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise RunStoreError(f"{self.path} is in use by another process") from exc
        self._lock = handle

    def close(self) -> None:
        """fsync and close the log, release the lock; never raises (it runs on the way out of failures)."""
        if self._log is not None:
            try:
                self.sync()
            except RunStoreError as exc:
                logger.warning("%s", exc)
            with contextlib.suppress(OSError):
                os.close(self._log)
            self._log = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # --- events

    def append(self, event: Event) -> None:
        """Append one event as one line, written straight to the OS (it survives ``kill -9``; ``sync``
        makes it survive power loss). A failed write is cut back to the last complete line."""
        line = (event_json(event) + "\n").encode("utf-8")
        log = self._open_log()
        end = os.lseek(log, 0, os.SEEK_END)
        try:
            _write_all(log, line)
        except OSError as exc:
            self._cut(end)
            _fail("append to", self.path / EVENTS, exc)

    def sync(self) -> None:
        """fsync the event log: called at every step boundary."""
        if self._log is not None:
            try:
                os.fsync(self._log)
            except OSError as exc:
                _fail("sync", self.path / EVENTS, exc)

    def _open_log(self) -> int:
        if self._log is None:
            path = self.path / EVENTS
            try:
                log = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                _fail("open", path, exc)
            try:
                _mend_tail(log, path)
            except OSError as exc:
                os.close(log)
                _fail("repair the last line of", path, exc)
            self._log = log
        return self._log

    def _cut(self, end: int) -> None:
        """Drop what a failed append wrote after ``end``; if even that fails, close the log so that the
        next append reopens it and mends the tail first (it never writes after half a line)."""
        assert self._log is not None
        try:
            os.ftruncate(self._log, end)
        except OSError as exc:
            logger.warning("could not cut a failed write off %s: %s", self.path / EVENTS, exc)
            with contextlib.suppress(OSError):
                os.close(self._log)
            self._log = None

    @property
    def events_path(self) -> Path:
        return self.path / EVENTS

    def load_events(self) -> LoadedEvents:
        return load_events(self.path / EVENTS)

    # --- whole files

    def write_json(self, name: str, data: Any) -> None:
        self.write_text(name, json_text(data))

    def write_text(self, name: str, text: str | list[str]) -> None:
        """Replace ``name`` whole (a temporary file moved into place); on failure the old file stays.

        ``text`` may come in pieces, written one after the other: the conversation (megabytes by the
        end of a long run) is never joined into one string, nor encoded into one bytes object."""
        target = self.path / name
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            with tmp.open("w", encoding="utf-8") as handle:
                handle.writelines([text] if isinstance(text, str) else text)
            os.replace(tmp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            _fail("write", target, exc)

    def read_json(self, name: str) -> Any:
        return read_json(self.path / name)

    def write_info(self, info: RunInfo) -> None:
        self.write_text(RUN_INFO, info.model_dump_json(indent=1))


def _fail(action: str, path: Path, exc: OSError) -> NoReturn:
    """Raise the ``RunStoreError`` for a failed disk operation: one line, naming the file and the cause."""
    raise RunStoreError(f"cannot {action} {path}: {exc.strerror or exc}") from exc


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _mend_tail(log: int, path: Path) -> None:
    """Make the log end with a complete line before anything is appended after it.

    A tail without its newline is what a kill or a failed write left. If it parses, it is an event
    ``load_events`` counted, and gets its newline; otherwise it is the torn line ``load_events``
    skipped, and is cut off — appending after it would bury the next event in a line that does not
    parse, in the middle of the file.
    """
    size = os.fstat(log).st_size
    if size == 0 or os.pread(log, 1, size - 1) == b"\n":
        return
    start = size
    while start > 0:  # find the start of the last line, a block at a time
        block = os.pread(log, min(start, 65536), max(0, start - 65536))
        newline = block.rfind(b"\n")
        if newline >= 0:
            start = start - len(block) + newline + 1
            break
        start -= len(block)
    tail = os.pread(log, size - start, start)
    try:
        parse_event(tail.decode("utf-8", errors="replace"))
    except ValidationError:
        os.ftruncate(log, start)
        logger.warning("%s: cut a torn last line (%d bytes) before appending", path, size - start)
    else:
        _write_all(log, b"\n")


def json_text(data: Any) -> str:
    """How run files hold JSON: readable and not ASCII-escaped. A list has one item per line, each
    encoded by the C encoder (indenting makes ``json`` fall back to its pure-Python encoder, ~10×
    slower, and ``sources.json`` is rewritten with every snapshot); anything else is indented."""
    if isinstance(data, list):
        return "".join(_json_array([json.dumps(item, ensure_ascii=False) for item in data]))
    return json.dumps(data, ensure_ascii=False, indent=1)


def read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RunStoreError(f"cannot read {path}: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunCorrupted(path, exc.lineno, exc.msg) from exc


def load_events(path: Path) -> LoadedEvents:
    """Parse ``events.jsonl``; a torn last line is skipped and reported, any other bad line raises."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    except OSError as exc:
        raise RunStoreError(f"cannot read {path}: {exc}") from exc
    if lines and lines[-1] == "":
        lines.pop()
    loaded = LoadedEvents(events=[])
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            loaded.events.append(parse_event(line))
        except ValidationError as exc:
            if number == len(lines):
                loaded.torn_tail = line
                loaded.warnings.append(f"{path}:{number}: skipped a truncated last event ({len(line)} bytes)")
                logger.warning("skipping truncated last line %d of %s", number, path)
                continue
            raise RunCorrupted(path, number, _first_error(exc)) from exc
    return loaded


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return f"{error['msg']} at {'.'.join(str(p) for p in error['loc']) or 'line'}"


def read_info(path: Path) -> RunInfo:
    data = read_json(path / RUN_INFO)
    try:
        info = RunInfo.model_validate(data)
    except ValidationError as exc:
        raise RunCorrupted(path / RUN_INFO, None, _first_error(exc)) from exc
    if info.status == "running" and not _locked(path):
        info.status = "interrupted"  # nobody holds the lock: the process died
    return info


def _locked(path: Path) -> bool:
    lock = path / LOCK
    if not lock.exists():
        return False
    with lock.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def iter_runs(root: Path) -> Iterator[tuple[Path, RunInfo | Exception]]:
    """Every run directory under ``root`` (newest first) with its info, or the error reading it."""
    if not root.is_dir():
        return
    for child in sorted(root.iterdir(), reverse=True):
        if (child / RUN_INFO).is_file():
            try:
                yield child, read_info(child)
            except RunStoreError as exc:
                yield child, exc


@contextmanager
def opened(store: RunStore) -> Iterator[RunStore]:
    try:
        yield store
    finally:
        store.close()


class _History(Protocol):
    def records(self) -> list[str]: ...


class _Usage(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


class RunSnapshot(Protocol):
    """What the derived files are made from (``agent.state.RunState`` is one)."""

    @property
    def history(self) -> _History: ...
    @property
    def sources(self) -> Iterable[Source]: ...
    @property
    def tool_state(self) -> dict[str, Any]: ...
    @property
    def step(self) -> int: ...
    @property
    def usage(self) -> _Usage: ...


SNAPSHOT_EVERY = 10
"""Steps between rewrites of ``messages.json``/``sources.json``/``todo.json`` during a run."""


@cache
def _writer() -> ThreadPoolExecutor:
    """The threads that write runs' files behind them, shared by the runs of a process (their own,
    so a burst of writes never queues behind other work sent to the loop's default executor)."""
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="run-writes")


class Recorder:
    """Writes what a run records into its directory and tells the live view.

    Every event is appended to ``events.jsonl`` (the source of truth) and the log is fsync'ed at every
    step boundary (``save``), with ``run.json`` (steps, usage) rewritten there too. That write goes on
    behind the run, in a worker thread, while the next step's model call is made: one in flight per
    run, the next ``save`` (or the end of the run) waits for it, and its error surfaces there. A step
    waited ~10 ms for it (p50; 20 at p90) when 16 runs shared a process, for a guarantee that only a
    power cut tests: what is appended is in the OS the moment it is recorded, whatever happens to the
    process.

    The files derived from the whole conversation — ``messages.json``, ``sources.json``,
    ``todo.json`` — are rewritten every ``SNAPSHOT_EVERY`` steps, when the run ends (report, failure,
    cancel) and when it is resumed, not at every step: rewriting them each step made a run's disk
    writes grow with the square of its length, and the event log already makes the run recoverable.
    So during a run they may lag the log by a few steps; ``resume`` rebuilds them from it.
    """

    def __init__(self, store: RunStore, info: RunInfo, on_event: EventCallback | None = None) -> None:
        self.store, self.info, self.on_event = store, info, on_event
        self._snapshot_step: int | None = None
        """The step of the last full snapshot (``None``: none written by this process yet)."""
        self._behind: Future[None] | None = None
        """The step boundary's write still in flight, if any."""

    def record(self, event: Event) -> None:
        self.store.append(event)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:  # a display bug must not break the run
                logger.exception("event callback failed")

    def checkpoint(self, state: RunSnapshot) -> None:
        """Rewrite every derived file now (the run ends, or resumes); then fsync the event log."""
        self.flush()
        self.write(self._snapshot(state, full=True))

    async def save(self, state: RunSnapshot, *, sources: list[dict[str, Any]] | None = None) -> None:
        """A step boundary: ``run.json`` and the fsync, with the conversation's files every
        ``SNAPSHOT_EVERY`` steps, written behind the run (see the class). The files' text is made
        now, on the loop's thread. ``sources`` (the report's numbering: the run's last save) waits
        for the write."""
        last = self._snapshot_step
        full = sources is not None or last is None or state.step - last >= SNAPSHOT_EVERY
        files = self._snapshot(state, sources, full=full)
        await self._caught_up()
        self._behind = _writer().submit(self.write, files)
        if sources is not None:
            await self._caught_up()

    async def write_report(self, markdown: str, html: str) -> None:
        """``report.md`` and ``report.html``, each atomically, then the fsync."""
        await self._caught_up()
        await asyncio.wrap_future(_writer().submit(self.write, {REPORT: markdown, REPORT_HTML: html}))

    async def _caught_up(self) -> None:
        """Wait for the write in flight; its failure is raised here."""
        behind, self._behind = self._behind, None
        if behind is not None:
            await asyncio.wrap_future(behind)

    def flush(self) -> None:
        """Block until the write in flight is done, before the run's files are written from here or
        closed. Its failure is only logged: whoever calls this writes everything again, or is
        ending the run for another reason."""
        behind, self._behind = self._behind, None
        if behind is None:
            return
        try:
            behind.result()
        except RunStoreError as exc:
            logger.info("an earlier step's write failed: %s", exc)

    def write_info(self) -> None:
        self.store.write_info(self.info)

    def _snapshot(
        self, state: RunSnapshot, sources: list[dict[str, Any]] | None = None, *, full: bool = True
    ) -> dict[str, str | list[str]]:
        """The derived files' text (only ``run.json`` unless ``full``), built on the loop's thread
        while nothing else changes ``state``."""
        files: dict[str, str | list[str]] = {}
        if full:
            if sources is None:
                sources = [s.to_dict() | {"n": None} for s in state.sources]
            files[MESSAGES] = _json_array(state.history.records())  # already encoded, in pieces
            files[SOURCES] = json_text(sources)
            if "todo" in state.tool_state:
                files[TODO] = json_text(state.tool_state["todo"])
            self._snapshot_step = state.step
        self.info.steps, self.info.usage = state.step, state.usage.to_dict()
        files[RUN_INFO] = self.info.model_dump_json(indent=1)
        return files

    def wind_up(
        self, state: RunSnapshot, status: Literal["failed", "cancelled"], *, derived: bool = True
    ) -> None:
        """Record how the run ended, best effort: after a disk failure these writes may fail too, and
        must not hide the error that ended the run. ``run.json`` (status and reason) goes first; the
        derived files are skipped after a store failure (``resume`` rebuilds them from the events)."""

        self.flush()
        usage = state.usage.to_dict()
        self.info.steps, self.info.usage = state.step, usage
        finished = RunFinished(step=state.step, status=status, usage=usage, steps=state.step)
        writes: list[Callable[[], None]] = [self.write_info, lambda: self.record(finished)]
        if derived:
            writes.insert(0, lambda: self.checkpoint(state))
        for write in writes:
            try:
                write()
            except RunStoreError as exc:
                logger.info("could not record the end of the run: %s", exc)

    def write(self, files: dict[str, str | list[str]]) -> None:
        """Write whole files (atomically, each), then fsync the event log."""
        for name, text in files.items():
            self.store.write_text(name, text)
        self.store.sync()


def _json_array(items: list[str]) -> list[str]:
    """The pieces of a JSON array of already-encoded ``items``, one per line."""
    if not items:
        return ["[\n\n]"]
    pieces = ["[\n"]
    for item in items:
        pieces += (item, ",\n")
    pieces[-1] = "\n]"
    return pieces


@dataclass(frozen=True)
class RunDir:
    """A run directory, for reading: what the benchmark runner, the server, the judge's loaders and
    data synthesis read. Nothing here writes; ``RunStore`` and ``Recorder`` do."""

    path: Path

    @classmethod
    def open(cls, path: Path) -> RunDir:
        """``path`` as a run directory; ``RunStoreError`` when it holds no run."""
        if not (path / RUN_INFO).is_file() and not (path / EVENTS).is_file():
            raise RunStoreError(f"{path} is not a run directory (it has no {RUN_INFO} and no {EVENTS})")
        return cls(path)

    @property
    def started(self) -> bool:
        """Whether a run began here (its event log exists): a new run would resume it instead."""
        return (self.path / EVENTS).is_file()

    @property
    def meta(self) -> RunInfo:
        """``run.json``, with ``interrupted`` for a ``running`` run whose process is gone."""
        return read_info(self.path)

    @property
    def status(self) -> RunStatus:
        return self.meta.status

    @property
    def finished(self) -> bool:
        """Whether the run is done (its report delivered)."""
        return self.status == "done"

    @property
    def report_path(self) -> Path:
        return self.path / REPORT

    @property
    def report_html_path(self) -> Path:
        return self.path / REPORT_HTML

    @property
    def workspace(self) -> Path:
        return self.path / WORKSPACE

    def events(self) -> list[Event]:
        """Every recorded event (a torn last line, the mark of a kill, is skipped)."""
        return load_events(self.path / EVENTS).events

    def messages(self) -> list[dict[str, Any]]:
        """The conversation in OpenAI chat format (``messages.json``); empty before the first step."""
        return self._json_list(MESSAGES)

    def sources(self) -> list[dict[str, Any]]:
        """Every source the run saw, with its key and its number in the report (``n``)."""
        return self._json_list(SOURCES)

    def report(self) -> str | None:
        """The report's Markdown, or ``None`` when none was written."""
        return self._text(REPORT)

    def report_html(self) -> str | None:
        return self._text(REPORT_HTML)

    def task(self) -> Any | None:
        """The parsed ``task.json`` (``RunCorrupted`` when it does not parse), else the text of
        ``task_id``, else ``None``."""
        if (self.path / TASK).is_file():
            return read_json(self.path / TASK)
        text = self._text(TASK_ID)
        return text.strip() or None if text is not None else None

    def _text(self, name: str) -> str | None:
        try:
            return (self.path / name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RunStoreError(f"cannot read {self.path / name}: {exc}") from exc

    def _json_list(self, name: str) -> list[dict[str, Any]]:
        if not (self.path / name).is_file():
            return []
        data = read_json(self.path / name)
        if not isinstance(data, list):
            raise RunCorrupted(self.path / name, None, "not a JSON list")
        return data
