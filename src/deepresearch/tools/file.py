"""The ``file`` tool: the model's notebook and draft, confined to the run's ``workspace/``.

Long research needs somewhere outside the context window: notes, drafts of the report, and the full
texts the other tools saved when they had to cut a result (their truncation marker names a path and a
*character* offset, which ``read`` honours exactly). The interface is frozen by ARCHITECTURE.md:
``file(action, path, content, offset, limit, old, new)`` with the actions read, write, append, list,
stat and patch. ``patch`` is the token-efficient edit: the model sends only the fragment to change and
its replacement (the matching lives in ``tools/patch.py``).

Every path is resolved, symlinks included, and must stay inside the workspace's real path; writes
open the final component with ``O_NOFOLLOW`` so a link swapped in after the check is not followed.
Mistakes come back to the model as ``ToolError``/``PathOutsideWorkspace``; the blocking file work runs
in a thread so that the other tool calls of a step go on meanwhile.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import re
import stat as stat_mode
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Literal

from pydantic import BaseModel, Field

from deepresearch.errors import PathOutsideWorkspace, ToolError
from deepresearch.tools.base import Tool, ToolContext, ToolResult, tool_description
from deepresearch.tools.patch import apply_patch
from deepresearch.tools.truncate import cut_point

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
    return await asyncio.to_thread(handler, args, Path(ctx.workspace))


def file_tool() -> Tool:
    """The ``file`` tool for the registry (a function: the description is read from package data)."""
    return Tool(name="file", args=FileArgs, run=run_file, description=tool_description("file"))


# -- confinement -------------------------------------------------------------------------------------


def resolve_in_workspace(workspace: Path, path: str) -> tuple[Path, str]:
    """The real path ``path`` names inside ``workspace`` and its tidy relative form for messages;
    ``PathOutsideWorkspace`` when it is absolute, climbs with ``..`` or leads out through a symlink."""
    raw = path.strip() or "."
    if "\x00" in raw:
        raise PathOutsideWorkspace("paths are relative to the workspace; this one contains a NUL byte")
    if raw.startswith(("/", "~")):
        raise PathOutsideWorkspace(
            f"paths are relative to the workspace; {raw!r} is not (drop the "
            "leading '/' or '~' and name the file inside the workspace)"
        )
    if ".." in raw.split("/"):
        raise PathOutsideWorkspace(f"paths are relative to the workspace; {raw!r} uses '..' to leave it")
    root = Path(os.path.realpath(workspace))
    relative = PurePosixPath(raw)
    real = Path(os.path.realpath(root / relative))
    if real != root and not real.is_relative_to(root):
        raise PathOutsideWorkspace(
            f"paths are relative to the workspace; {raw!r} leads outside it through a symbolic link"
        )
    return real, relative.as_posix()


# -- actions -----------------------------------------------------------------------------------------


def _read(args: FileArgs, workspace: Path) -> ToolResult:
    real, rel = resolve_in_workspace(workspace, args.path)
    _require_file(real, rel)
    limit = min(args.limit or DEFAULT_READ_CHARS, MAX_READ_CHARS)
    with _open_read(real, rel) as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(_SNIFF_BYTES)
        if b"\x00" in head:
            binary = {"action": "read", "path": rel, "bytes": size, "binary": True}
            return ToolResult(_render("read", rel, f"binary file, {size} bytes; not shown as text"), binary)
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


def _write(args: FileArgs, workspace: Path) -> ToolResult:
    return _put(args, workspace, append=False)


def _append(args: FileArgs, workspace: Path) -> ToolResult:
    return _put(args, workspace, append=True)


def _put(args: FileArgs, workspace: Path, *, append: bool) -> ToolResult:
    action = "append" if append else "write"
    payload = args.content.encode("utf-8", errors="replace")
    if len(payload) > MAX_WRITE_BYTES:
        raise ToolError(
            f"{action} accepts at most {MAX_WRITE_BYTES} bytes per call and `content` has "
            f"{len(payload)}; split it over several append calls"
        )
    real, rel = resolve_in_workspace(workspace, args.path)
    _require_writable(real, rel)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if append else os.O_TRUNC)
    with _WRITE_LOCK:
        existed = real.exists()
        try:
            real.parent.mkdir(parents=True, exist_ok=True)
            if os.path.realpath(real.parent) != str(real.parent):  # a folder became a link meanwhile
                raise PathOutsideWorkspace(
                    f"paths are relative to the workspace; {rel!r} changed under the check"
                )
            fd = os.open(real, flags, 0o644)
        except OSError as exc:
            raise ToolError(f"cannot {action} {rel}: {exc.strerror or exc}") from exc
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            size = os.fstat(fh.fileno()).st_size
    verb = "appended" if append else "wrote"
    how = "created the file" if not existed else ("added at the end" if append else "replaced the file")
    details = f"{verb} {len(payload)} bytes ({how}); size now {size} bytes"
    data = {"action": action, "path": rel, "bytes": len(payload), "size": size, "created": not existed}
    return ToolResult(_render(action, rel, details), data)


def _list(args: FileArgs, workspace: Path) -> ToolResult:
    real, rel = resolve_in_workspace(workspace, args.path)
    if not real.exists():
        raise ToolError(f"no such file or directory: {rel}; list `.` to see the workspace")
    if not real.is_dir():
        rows = [(real.name, "file", str(real.stat().st_size))]
        total, dirs = 1, 0
    else:
        with os.scandir(real) as it:
            entries = sorted(it, key=lambda e: (not e.is_dir(follow_symlinks=False), e.name.casefold()))
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


def _stat(args: FileArgs, workspace: Path) -> ToolResult:
    real, rel = resolve_in_workspace(workspace, args.path)
    try:
        info = real.stat()
    except OSError as exc:
        raise ToolError(f"no such file or directory: {rel}; list `.` to see the workspace") from exc
    modified = datetime.fromtimestamp(info.st_mtime, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    data: dict[str, Any] = {"action": "stat", "path": rel, "modified": modified}
    if stat_mode.S_ISDIR(info.st_mode):
        with os.scandir(real) as it:
            count = sum(1 for _ in it)
        data |= {"type": "dir", "entries": count}
        details = f"type: directory; {_count(count, 'entry', 'entries')}; modified {modified}"
    else:
        with _open_read(real, rel) as fh:
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


def _patch(args: FileArgs, workspace: Path) -> ToolResult:
    real, rel = resolve_in_workspace(workspace, args.path)
    _require_file(real, rel)
    with _WRITE_LOCK:
        with _open_read(real, rel) as fh:
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
        _replace_atomically(real, rel, payload, info.st_mode)
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


_HANDLERS: dict[Action, Callable[[FileArgs, Path], ToolResult]] = {
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


def _open_read(real: Path, rel: str) -> BinaryIO:
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError as exc:
        raise ToolError(f"no such file: {rel}; list `.` to see the workspace") from exc
    except OSError as exc:
        raise ToolError(f"cannot open {rel}: {exc.strerror or exc}") from exc
    return os.fdopen(fd, "rb")


def _require_file(real: Path, rel: str) -> None:
    if real.is_dir():
        raise ToolError(f'{rel} is a directory; use file(action="list", path="{rel}") to see what it holds')
    if not real.exists():
        raise ToolError(f"no such file: {rel}; list `.` to see the workspace, or create it with write")


def _require_writable(real: Path, rel: str) -> None:
    if real.is_dir():
        raise ToolError(f"{rel} is a directory; name a file inside it")


def _replace_atomically(real: Path, rel: str, payload: bytes, mode: int) -> None:
    """Write ``payload`` to a temporary file beside ``real`` and move it over ``real``: a reader sees
    the old text or the new one, and a failure leaves the old one intact."""
    fd, tmp = tempfile.mkstemp(dir=real.parent, prefix=f".{real.name}.", suffix=".patch")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, stat_mode.S_IMODE(mode))
        os.replace(tmp, real)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise ToolError(f"cannot save {rel}: {exc.strerror or exc}; the file is unchanged") from exc


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
