"""The ``file`` tool: the model's notebook and draft, confined to the run's ``workspace/``.

Long research needs somewhere outside the context window: notes, drafts of the report, and the full
texts the other tools saved when they had to cut a result (their truncation marker names a path and a
*character* offset, which ``read`` honours exactly). The interface is frozen by ARCHITECTURE.md:
``file(action, path, content, offset, limit, old, new)`` with the actions read, write, append, list,
stat and patch. ``patch`` is the token-efficient edit: the model sends only the fragment to change and
its replacement (the matching lives in ``tools/patch.py``).

Every path is resolved beneath the workspace's directory descriptor (``tools/workspace.py``), never
checked and then opened by name, so a shell command of the same step that swaps a folder for a link
cannot redirect a call to the host; only regular files are read or written (a FIFO cannot hang a
call), and writes that would take the workspace past its disk quota are refused. Mistakes come back
to the model as ``ToolError``/``PathOutsideWorkspace``; the blocking file work runs
in a thread so that the other tool calls of a step go on meanwhile.
"""

from __future__ import annotations

import asyncio
import codecs
import os
import re
import stat as stat_mode
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any, BinaryIO, Literal

from pydantic import BaseModel, Field

from deepresearch.errors import ToolError
from deepresearch.tools.base import Tool, ToolContext, ToolResult, tool_description
from deepresearch.tools.patch import apply_patch
from deepresearch.tools.truncate import cut_point
from deepresearch.tools.workspace import Place, located, workspace_usage

DEFAULT_READ_CHARS = 12_000
"""Characters ``read`` returns when ``limit`` is 0."""
MAX_READ_CHARS = 50_000
"""Hard cap on one ``read``: longer files are paged with ``offset``."""
MAX_WRITE_BYTES = 5 * 1024 * 1024
"""Largest ``content`` one write or append accepts (UTF-8 bytes)."""
MAX_PATCH_BYTES = 16 * 1024 * 1024
"""Largest file ``patch`` edits; it is read whole into memory and matched fuzzily."""
MAX_LIST_ENTRIES = 200
"""Entries ``list`` shows before it says how many it left out."""

_SNIFF_BYTES = 1024  # a NUL byte in the first KB means binary
_CHUNK_BYTES = 1 << 20
_SHOWN_REPLACED_CHARS = 600  # of the text a loose patch match replaced, echoed for the model to check
_BACKTICKS = re.compile(r"`+")
_WRITE_LOCK = threading.Lock()  # parallel calls of one step must not interleave read-modify-write

Action = Literal["read", "write", "append", "list", "stat", "patch"]


class FileArgs(BaseModel):
    """Arguments of the ``file`` tool (names frozen by the architecture)."""

    action: Action = Field(description="What to do: read, write, append, list, stat or patch.")
    path: str = Field(
        ".",
        description="Path relative to the workspace, e.g. `notes/sources.md`; "
        "`.` is the workspace itself (for list).",
    )
    content: str = Field("", description="Text to write (replacing the file) or to append.")
    offset: int = Field(
        0,
        ge=0,
        description="read: character offset to start from (0 = the beginning); "
        "use the next offset a previous read or a truncation note gave.",
    )
    limit: int = Field(
        DEFAULT_READ_CHARS,
        ge=0,
        description=f"read: most characters to return (0 = {DEFAULT_READ_CHARS}; at most {MAX_READ_CHARS}).",
    )
    old: str = Field(
        "",
        description="patch: the fragment to replace, copied from the file with a line "
        "or so of surrounding context so that it matches one place.",
    )
    new: str = Field("", description="patch: the text that replaces `old` (empty deletes it).")


async def run_file(args: FileArgs, ctx: ToolContext) -> ToolResult:
    """Run one ``file`` call against ``ctx.workspace``."""
    handler = _HANDLERS[args.action]
    return await asyncio.to_thread(handler, args, ctx)


def file_tool() -> Tool:
    """The ``file`` tool for the registry (a function: the description is read from package data)."""
    return Tool(
        name="file",
        args=FileArgs,
        run=run_file,
        description=tool_description("file"),
        describer=describe_file,
    )


def describe_file(arguments: dict[str, Any]) -> str:
    """``file <action> <path>``."""
    return f"file {arguments.get('action', '?')} {arguments.get('path', '')}"


# -- actions -----------------------------------------------------------------------------------------


def _read(args: FileArgs, ctx: ToolContext) -> ToolResult:
    with located(ctx.workspace, args.path) as place:
        rel = place.rel
        _require_file(place)
        limit = min(args.limit or DEFAULT_READ_CHARS, MAX_READ_CHARS)
        with _open_read(place) as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(_SNIFF_BYTES)
            if b"\x00" in head:
                binary = {"action": "read", "path": rel, "bytes": size, "binary": True}
                shown_as = f"binary file, {size} bytes; not shown as text"
                return ToolResult(_render("read", rel, shown_as), binary)
            scan = _scan(fh, head, args.offset, limit + 1)  # one more, to see whether a break falls there
    shown = scan.window[: cut_point(scan.window, limit)]
    end = args.offset + len(shown)
    data: dict[str, Any] = {
        "action": "read",
        "path": rel,
        "bytes": size,
        "total_chars": scan.chars,
        "chars": [args.offset, end],
        "lines": scan.lines,
    }
    if args.offset >= scan.chars:
        details = (
            "the file is empty"
            if not scan.chars
            else f"offset {args.offset} is past the end: the file has {scan.chars} characters"
        )
        return ToolResult(_render("read", rel, details), data)
    first = scan.lines_before + 1
    last = first + shown.count("\n", 0, max(0, len(shown) - 1))
    details = f"characters {args.offset}–{end} of {scan.chars}; lines {first}–{last} of {scan.lines}"
    if end < scan.chars:
        details += f"; more remains: continue with offset={end}"
        data["next_offset"] = end
    else:
        details += "; end of file"
    return ToolResult(_render("read", rel, details, shown), data)


def _write(args: FileArgs, ctx: ToolContext) -> ToolResult:
    return _put(args, ctx, append=False)


def _append(args: FileArgs, ctx: ToolContext) -> ToolResult:
    return _put(args, ctx, append=True)


def _put(args: FileArgs, ctx: ToolContext, *, append: bool) -> ToolResult:
    action = "append" if append else "write"
    payload = args.content.encode("utf-8", errors="replace")
    if len(payload) > MAX_WRITE_BYTES:
        raise ToolError(
            f"{action} accepts at most {MAX_WRITE_BYTES} bytes per call and `content` has "
            f"{len(payload)}; split it over several append calls"
        )
    with _WRITE_LOCK, located(ctx.workspace, args.path, create_parents=True) as place:
        rel = place.rel
        before = place.lstat()
        if (before is not None and stat_mode.S_ISDIR(before.st_mode)) or place.name is None:
            raise ToolError(f"{rel} is a directory; name a file inside it")
        freed = 0 if append or before is None else before.st_blocks * 512
        _check_quota(place, ctx, action, len(payload), freed)
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else 0)
        try:
            fd = place.open_regular(flags)
        except ToolError:
            raise
        except OSError as exc:
            raise ToolError(f"cannot {action} {rel}: {exc.strerror or exc}") from exc
        with os.fdopen(fd, "wb") as fh:
            if not append:
                fh.truncate(0)
            fh.write(payload)
            fh.flush()
            size = os.fstat(fh.fileno()).st_size
    verb = "appended" if append else "wrote"
    existed = before is not None
    how = "created the file" if not existed else ("added at the end" if append else "replaced the file")
    details = f"{verb} {len(payload)} bytes ({how}); size now {size} bytes"
    data = {"action": action, "path": rel, "bytes": len(payload), "size": size, "created": not existed}
    return ToolResult(_render(action, rel, details), data)


def _list(args: FileArgs, ctx: ToolContext) -> ToolResult:
    with located(ctx.workspace, args.path) as place:
        rel = place.rel
        info = place.lstat()
        if info is None:
            raise ToolError(f"no such file or directory: {rel}; list `.` to see the workspace")
        if not stat_mode.S_ISDIR(info.st_mode):
            kind = "link" if stat_mode.S_ISLNK(info.st_mode) else "file"
            rows = [(PurePosixPath(rel).name, kind, str(info.st_size))]
            total, dirs = 1, 0
        else:
            with place.listing() as entries:
                entries.sort(key=_folders_first)
                dirs = sum(1 for e in entries if e.is_dir(follow_symlinks=False))
                rows = [_describe(entry) for entry in entries[:MAX_LIST_ENTRIES]]
                total = len(entries)
    summary = _count(total, "entry", "entries") + (f" ({_count(dirs, 'folder', 'folders')})" if dirs else "")
    lines = [summary, "name | type | size (bytes)"]
    lines += [f"{name} | {kind} | {size}" for name, kind, size in rows]
    if total > len(rows):
        lines.append(f"… {total - len(rows)} more entries not shown; list a subdirectory or a file by name")
    data = {"action": "list", "path": rel, "entries": total, "shown": len(rows)}
    return ToolResult(_render("list", rel, "\n".join(lines)), data)


def _stat(args: FileArgs, ctx: ToolContext) -> ToolResult:
    with located(ctx.workspace, args.path) as place:
        rel = place.rel
        info = place.lstat()
        if info is None:
            raise ToolError(f"no such file or directory: {rel}; list `.` to see the workspace")
        modified = datetime.fromtimestamp(info.st_mtime, UTC).isoformat(timespec="seconds")
        modified = modified.replace("+00:00", "Z")
        data: dict[str, Any] = {"action": "stat", "path": rel, "modified": modified}
        if stat_mode.S_ISDIR(info.st_mode):
            with place.listing() as entries:
                count = len(entries)
            data |= {"type": "dir", "entries": count}
            details = f"type: directory; {_count(count, 'entry', 'entries')}; modified {modified}"
        else:
            with _open_read(place) as fh:
                head = fh.read(_SNIFF_BYTES)
                binary = b"\x00" in head
                scan = None if binary else _scan(fh, head, 0, 0)
            data |= {"type": "file", "bytes": info.st_size, "binary": binary}
            details = f"type: {'binary ' if binary else 'text '}file; {info.st_size} bytes"
            if scan is not None:
                data |= {"chars": scan.chars, "lines": scan.lines}
                details += f", {scan.chars} characters, {scan.lines} lines"
            details += f"; modified {modified}"
    return ToolResult(_render("stat", rel, details), data)


def _patch(args: FileArgs, ctx: ToolContext) -> ToolResult:
    with _WRITE_LOCK, located(ctx.workspace, args.path) as place:
        rel = place.rel
        _require_file(place)
        with _open_read(place) as fh:
            info = os.fstat(fh.fileno())
            if info.st_size > MAX_PATCH_BYTES:
                raise ToolError(
                    f"{rel} has {info.st_size} bytes, more than patch edits "
                    f"({MAX_PATCH_BYTES}); write a smaller file"
                )
            raw = fh.read()
        if b"\x00" in raw[:_SNIFF_BYTES]:
            raise ToolError(f"{rel} is a binary file; patch edits text only")
        text = raw.decode("utf-8", errors="surrogateescape")  # bytes that are not UTF-8 stay as they were
        outcome = apply_patch(text, _clean(args.old), _clean(args.new))
        payload = outcome.text.encode("utf-8", errors="surrogateescape")
        _check_quota(place, ctx, "patch", len(payload), info.st_blocks * 512)
        try:
            place.replace(payload, info.st_mode)
        except OSError as exc:
            raise ToolError(f"cannot save {rel}: {exc.strerror or exc}; the file is unchanged") from exc
    span = _lines(outcome.start_line, outcome.end_line)
    details = f"replaced {span} (matched: {outcome.matched_by}"
    if outcome.matched_by == "fuzzy":
        details += f", similarity {outcome.similarity:.2f}"
    details += f"); the new text is at {_lines(outcome.new_start_line, outcome.new_end_line)}; "
    details += f"size now {len(payload)} bytes"
    body = None
    if outcome.matched_by != "exact":  # let the model check that the right place changed
        details += "; the text that was replaced:"
        body = outcome.replaced
        if len(body) > _SHOWN_REPLACED_CHARS:
            body = body[:_SHOWN_REPLACED_CHARS] + " …"
    data = {
        "action": "patch",
        "path": rel,
        "bytes": len(payload),
        "matched_by": outcome.matched_by,
        "similarity": outcome.similarity,
        "lines": [outcome.start_line, outcome.end_line],
        "new_lines": [outcome.new_start_line, outcome.new_end_line],
    }
    return ToolResult(_render("patch", rel, details, body), data)


_HANDLERS: dict[Action, Callable[[FileArgs, ToolContext], ToolResult]] = {
    "read": _read,
    "write": _write,
    "append": _append,
    "list": _list,
    "stat": _stat,
    "patch": _patch,
}


# -- helpers -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Scan:
    """One pass over a file's text: a window of it and its totals."""

    window: str
    chars: int
    lines: int
    lines_before: int
    """Line breaks before the window's first character."""


def _scan(fh: BinaryIO, head: bytes, offset: int, limit: int) -> _Scan:
    """Decode the file in chunks (UTF-8, bad bytes replaced, never splitting a character) keeping the
    characters ``[offset, offset + limit)`` and counting all characters and lines."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pieces: list[str] = []
    chars = breaks = before = 0
    last = ""
    data = head
    while True:
        text = decoder.decode(data, final=not data)
        if text:
            lo, hi = max(chars, offset), min(chars + len(text), offset + limit)
            if lo < hi:
                pieces.append(text[lo - chars : hi - chars])
            before += text.count("\n", 0, max(0, offset - chars))
            breaks += text.count("\n")
            chars += len(text)
            last = text[-1]
        if not data:
            break
        data = fh.read(_CHUNK_BYTES)
    lines = breaks + (1 if last and last != "\n" else 0)
    return _Scan("".join(pieces), chars, lines, before)


def _open_read(place: Place) -> BinaryIO:
    try:
        fd = place.open_regular(os.O_RDONLY)
    except FileNotFoundError as exc:
        raise ToolError(f"no such file: {place.rel}; list `.` to see the workspace") from exc
    except ToolError:
        raise
    except OSError as exc:
        raise ToolError(f"cannot open {place.rel}: {exc.strerror or exc}") from exc
    return os.fdopen(fd, "rb")


def _require_file(place: Place) -> None:
    info = place.lstat()
    if (info is not None and stat_mode.S_ISDIR(info.st_mode)) or place.name is None:
        raise ToolError(
            f'{place.rel} is a directory; use file(action="list", path="{place.rel}") to see what it holds'
        )
    if info is None:
        raise ToolError(f"no such file: {place.rel}; list `.` to see the workspace, or create it with write")


def _check_quota(place: Place, ctx: ToolContext, action: str, adding: int, freeing: int) -> None:
    """Refuse a write that would take the workspace past its disk quota (``workspace_max_mb``)."""
    if adding <= freeing:  # the workspace does not grow
        return
    quota = ctx.workspace_max_bytes
    used = workspace_usage(place.root_fd)
    after = used - freeing + adding
    if after > quota:
        raise ToolError(
            f"{action} refused: it would take the workspace to {_mb(after)} MB, over its quota of "
            f"{_mb(quota)} MB ({_mb(used)} MB used now); delete files you no longer need "
            "(shell `rm`) or write less"
        )


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f}"


def _folders_first(entry: os.DirEntry[str]) -> tuple[bool, str]:
    return not entry.is_dir(follow_symlinks=False), entry.name.casefold()


def _describe(entry: os.DirEntry[str]) -> tuple[str, str, str]:
    if entry.is_symlink():
        return entry.name, "link", "-"
    if entry.is_dir():
        return entry.name + "/", "dir", "-"
    try:
        size = str(entry.stat().st_size)
    except OSError:
        size = "?"
    return entry.name, "file", size


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _clean(text: str) -> str:
    """``text`` without lone surrogates (a JSON string may carry them; UTF-8 cannot)."""
    return text.encode("utf-8", errors="replace").decode("utf-8")


def _lines(first: int, last: int) -> str:
    return f"line {first}" if first >= last else f"lines {first}–{last}"


def _render(action: str, rel: str, details: str, body: str | None = None) -> str:
    """The compact, XML-like result the model reads; a body goes in a fence longer than any run of
    backticks inside it."""
    path = rel.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    out = [f'<file_result action="{action}" path="{path}">', details]
    if body is not None:
        fence = "`" * max(3, _longest_backtick_run(body) + 1)
        out += [fence, body, fence]
    out.append("</file_result>")
    return "\n".join(out)


def _longest_backtick_run(text: str) -> int:
    return max((len(run) for run in _BACKTICKS.findall(text)), default=0)
