"""How every synthesis pipeline runs: JSONL in, JSONL out, resumable, bounded, tallied.

A pipeline is one async function ``step(item) -> Outcome`` over the items of an input (a JSONL file,
a folder of documents, the seeds of a graph). ``run_items`` drives it:

- **Resumable, never paid twice.** Each decided item appends one line to ``<out>.ledger.jsonl``
  (its id, ``kept`` or the reason it was dropped, its tokens and cost), after its output records went
  to ``out`` in one write. A rerun skips every id in the ledger, and every id already in ``out`` (a
  kill between the two writes leaves the records and no ledger line: the records count). A torn last
  line, the mark of a kill mid-write, is cut off before anything is appended.
- **Undecided is not dropped.** A step that raises ``LLMError`` (the endpoint failed after its own
  retries) or any other exception leaves its item out of both files, so a rerun tries it again; the
  failure is counted and its message kept for the summary. A step's own verdict that an item is
  unusable is an ``Outcome`` with a ``dropped`` reason: decided, recorded, not retried.
- **Bounded.** At most ``concurrency`` steps run at once; items are read lazily, so a large input is
  never held in memory beyond what is in flight.
- **Tallied.** Each step gets a ``Tally`` of its own (calls, tokens, cost) that it passes to
  ``synth.model.Model``; the ledger line carries it and the summary adds them up. A progress bar on
  stderr shows kept / dropped / failed and the spend.

Records written to ``out`` carry ``source_id`` (the item's id), which is how ``out`` is read back.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepresearch.errors import ConfigError

logger = logging.getLogger(__name__)

LEDGER_SUFFIX = ".ledger.jsonl"


@dataclass(slots=True)
class Tally:
    """Model calls and their tokens and cost (one item's, or a whole pipeline's)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, other: Tally) -> None:
        self.calls += other.calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost_usd += other.cost_usd

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": round(self.cost_usd, 8),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Tally:
        if not isinstance(data, dict):
            return cls()
        return cls(
            calls=int(data.get("calls", 0) or 0),
            prompt_tokens=int(data.get("prompt_tokens", 0) or 0),
            completion_tokens=int(data.get("completion_tokens", 0) or 0),
            cost_usd=float(data.get("cost_usd", 0.0) or 0.0),
        )


@dataclass
class Outcome:
    """What one step made of one item: records to keep, or the reason it was dropped."""

    records: list[dict[str, Any]] = field(default_factory=list)
    dropped: str | None = None
    """Why nothing was kept (a short slug, e.g. ``unsupported_edge``); ``None`` when records were."""
    detail: dict[str, Any] = field(default_factory=dict)
    """Anything worth keeping in the ledger beside the verdict (scores, counts)."""

    @classmethod
    def keep(cls, *records: dict[str, Any], **detail: Any) -> Outcome:
        return cls(records=list(records), detail=detail)

    @classmethod
    def drop(cls, reason: str, **detail: Any) -> Outcome:
        return cls(dropped=reason, detail=detail)


@dataclass
class Summary:
    """What one ``run_items`` did, including what earlier runs of the same output had done."""

    out: Path
    kept: int = 0
    """Items kept (each wrote one or more records) in this run."""
    records: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    """Items left undecided by an error (tried again by a rerun)."""
    errors: list[str] = field(default_factory=list)
    skipped: int = 0
    """Items already decided by an earlier run (not redone, not paid again)."""
    tally: Tally = field(default_factory=Tally)
    """This run's spend."""
    total_kept: int = 0
    """Items kept in ``out`` over every run, this one included."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "kept": self.kept,
            "records": self.records,
            "dropped": dict(self.dropped),
            "failed": self.failed,
            "errors": self.errors[:20],
            "skipped": self.skipped,
            "total_kept": self.total_kept,
            **self.tally.to_dict(),
        }

    def describe(self) -> str:
        dropped = ", ".join(f"{reason} {n}" for reason, n in self.dropped.most_common()) or "none"
        return (
            f"kept {self.kept} ({self.records} records); dropped: {dropped}; failed {self.failed}; "
            f"skipped {self.skipped} already done; {self.tally.calls} model calls, "
            f"{self.tally.prompt_tokens + self.tally.completion_tokens} tokens, ${self.tally.cost_usd:.4f}; "
            f"{self.total_kept} kept in {self.out} in all"
        )


Step = Callable[[dict[str, Any], Tally], Awaitable[Outcome]]
"""One item (with its ``id``) and the tally to charge → its outcome."""


def ledger_path(out: Path) -> Path:
    return out.with_name(out.name + LEDGER_SUFFIX)


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line number, value)`` of each non-blank line; a line that is not JSON yields a ``ValueError``
    as its value, so callers report it with its place and go on."""
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, ValueError(f"not JSON ({exc.msg})")


def load_items(path: Path, *, id_field: str = "id") -> tuple[list[dict[str, Any]], list[str]]:
    """The JSON objects of a JSONL file, each with a string ``id`` (from ``id_field``, else the line
    number), and the problems of the lines that could not be used."""
    items: list[dict[str, Any]] = []
    problems: list[str] = []
    seen: set[str] = set()
    for number, value in read_jsonl(path):
        if isinstance(value, ValueError):
            problems.append(f"{path}:{number}: {value}")
            continue
        if not isinstance(value, dict):
            problems.append(f"{path}:{number}: not a JSON object")
            continue
        item_id = str(value.get(id_field) or value.get("id") or f"line-{number}")
        if item_id in seen:
            problems.append(f"{path}:{number}: duplicate id {item_id!r}")
            continue
        seen.add(item_id)
        items.append({**value, "id": item_id})
    return items, problems


def decided_ids(out: Path) -> tuple[set[str], int]:
    """The ids an earlier run decided (ledger, or records in ``out``), and how many were kept."""
    decided: set[str] = set()
    kept: set[str] = set()
    for path, key in ((ledger_path(out), "id"), (out, "source_id")):
        if not path.is_file():
            continue
        _mend_tail(path)
        for _, value in read_jsonl(path):
            if isinstance(value, dict) and value.get(key) is not None:
                decided.add(str(value[key]))
                if path == out or value.get("verdict") == "kept":
                    kept.add(str(value[key]))
    return decided, len(kept)


async def run_items(
    items: Iterable[dict[str, Any]] | AsyncIterator[dict[str, Any]],
    step: Step,
    out: Path,
    *,
    concurrency: int = 4,
    label: str = "synth",
    progress: bool = True,
    total: int | None = None,
) -> Summary:
    """Run ``step`` over every item not decided yet, appending kept records to ``out`` and a verdict
    per item to its ledger; see the module docstring."""
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, not {concurrency}")
    out.parent.mkdir(parents=True, exist_ok=True)
    decided, already_kept = decided_ids(out)
    summary = Summary(out=out, total_kept=already_kept)
    semaphore = asyncio.Semaphore(concurrency)
    bar = _Bar(label, total, enabled=progress)
    lock = asyncio.Lock()

    async def one(item: dict[str, Any]) -> None:
        item_id = str(item["id"])
        tally = Tally()
        try:
            outcome = await step(item, tally)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # undecided: counted, reported, tried again by a rerun
            logger.warning("%s: item %s failed: %s", label, item_id, exc)
            async with lock:
                summary.failed += 1
                summary.errors.append(f"{item_id}: {type(exc).__name__}: {exc}")
                summary.tally.add(tally)
                bar.update(summary)
            return
        async with lock:
            records = [{**record, "source_id": item_id} for record in outcome.records]
            if records:
                _append(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
            verdict = "kept" if records else "dropped"
            line = {
                "id": item_id,
                "verdict": verdict,
                "reason": None if records else (outcome.dropped or "nothing_kept"),
                "records": len(records),
                "detail": outcome.detail,
                **tally.to_dict(),
            }
            _append(ledger_path(out), json.dumps(line, ensure_ascii=False) + "\n")
            summary.tally.add(tally)
            if records:
                summary.kept += 1
                summary.total_kept += 1
                summary.records += len(records)
            else:
                summary.dropped[line["reason"]] += 1
            bar.update(summary)

    tasks: set[asyncio.Task[None]] = set()

    def finished(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        semaphore.release()

    try:
        async for item in _aiter(items):
            if str(item["id"]) in decided:
                summary.skipped += 1
                bar.update(summary)
                continue
            decided.add(str(item["id"]))  # the same id twice in one input is done once
            await semaphore.acquire()
            task = asyncio.ensure_future(one(item))
            tasks.add(task)
            task.add_done_callback(finished)
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        bar.close(summary)
    return summary


async def _aiter(
    items: Iterable[dict[str, Any]] | AsyncIterator[dict[str, Any]],
) -> AsyncIterator[dict[str, Any]]:
    if hasattr(items, "__aiter__"):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


def _append(path: Path, text: str) -> None:
    """One write of whole lines, flushed to disk, so a kill leaves at most a torn last line."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        data = text.encode("utf-8")
        while data:
            written = os.write(fd, data)
            data = data[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _mend_tail(path: Path) -> None:
    """Cut a torn last line (no newline at the end), the mark of a kill in the middle of a write."""
    with path.open("rb+") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        handle.seek(0)
        data = handle.read()
        cut = data.rfind(b"\n") + 1
        logger.warning(
            "%s: cutting a torn last line (%d bytes) left by an interrupted write", path, size - cut
        )
        handle.truncate(cut)


class _Bar:
    """A one-line progress display on stderr (rich), or nothing."""

    def __init__(self, label: str, total: int | None, *, enabled: bool) -> None:
        self._progress: Any = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn(f"[bold]{label}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task = self._progress.add_task("", total=total)
        self._progress.start()

    def update(self, summary: Summary) -> None:
        if self._progress is None:
            return
        done = summary.kept + sum(summary.dropped.values()) + summary.failed + summary.skipped
        self._progress.update(
            self._task,
            completed=done,
            description=(
                f"kept {summary.kept} dropped {sum(summary.dropped.values())} failed {summary.failed} "
                f"${summary.tally.cost_usd:.4f}"
            ),
        )

    def close(self, summary: Summary) -> None:
        if self._progress is not None:
            self.update(summary)
            self._progress.stop()
