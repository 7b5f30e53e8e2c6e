"""Every file operation the tools make inside a run's ``workspace/``, beneath its directory descriptor.

The ``shell`` tool runs model-written commands with the workspace writable, and the model may issue
``file`` calls in the same step. Checking a path and then opening it by name loses that race: a command
that swaps a folder for a symbolic link to a host folder between the check and the open (``renameat2``
with ``RENAME_EXCHANGE`` in a loop) turns a workspace write into a host write. So nothing here opens a
path by name. The workspace is opened once per operation; each component is then opened relative to
the descriptor of its parent with ``O_NOFOLLOW``, so the kernel never follows a link on our behalf.

Links that stay inside the workspace keep working: a link met on the way is read with ``readlinkat``
on the descriptor that holds it and its target is resolved by the same walk — ``..`` pops back towards
the root and never above it, an absolute target counts only when it names a place inside the
workspace (by the path the tools were given or its real path). This is ``openat2``'s
``RESOLVE_BENEATH`` done in user space, which works on every kernel and in every container.

The same module lends the workspace to the shell's unprivileged user for a call and measures it for
the disk quota (``lend_workspace``, ``reclaim_workspace``, ``workspace_usage``), walking it by
descriptor without following links, like everything else here.

Only regular files are read or written: a FIFO, socket or device is refused after an ``O_NONBLOCK``
open (which cannot hang) by ``fstat`` on the descriptor. A regular file with more than one hard link
is not written in place (it may be a host file linked in). Temporary files for atomic replacement are
created and renamed relative to the same descriptor.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat as stat_mode
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from deepresearch.errors import PathOutsideWorkspace, ToolError

logger = logging.getLogger(__name__)

MAX_LINK_HOPS = 40
"""Links followed while resolving one path before giving up (the kernel's own limit)."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_LINK_ERRNOS = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)  # what O_NOFOLLOW answers on a link


def relative_parts(path: str) -> tuple[list[str], str]:
    """The components of the model's ``path`` and its tidy relative form for messages;
    ``PathOutsideWorkspace`` when it is absolute, climbs with ``..`` or carries a NUL byte."""
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
    relative = PurePosixPath(raw)
    return [part for part in relative.parts if part != "."], relative.as_posix()


@dataclass
class Place:
    """Where a path leads: the descriptor of the directory that holds it and its name there.

    ``name`` is ``None`` when the path is a folder held open itself (``.``, or a link to a folder).
    The descriptors stay open (and the directory they
    name stays the one that was checked, whatever is renamed meanwhile) until the ``located`` block
    ends."""

    rel: str
    dir_fd: int
    name: str | None
    root_fd: int
    _owned: list[int] = field(default_factory=list)

    def lstat(self) -> os.stat_result | None:
        """The entry itself (a link is not followed); ``None`` when nothing is there."""
        if self.name is None:
            return os.fstat(self.dir_fd)
        try:
            return os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def open_directory(self) -> int:
        """A new descriptor of this directory (the caller closes it)."""
        if self.name is None:
            return os.dup(self.dir_fd)
        try:
            return os.open(self.name, _DIR_FLAGS, dir_fd=self.dir_fd)
        except OSError as exc:
            if exc.errno in _LINK_ERRNOS:
                raise _changed(self.rel) from exc
            raise

    @contextlib.contextmanager
    def listing(self) -> Iterator[list[os.DirEntry[str]]]:
        """The entries of this folder, for the block (their ``stat`` needs the folder held open)."""
        fd = self.open_directory()
        try:
            with os.scandir(fd) as it:
                yield list(it)
        finally:
            os.close(fd)

    def open_regular(self, flags: int, mode: int = 0o644) -> int:
        """A descriptor of this regular file opened with ``flags`` (``O_CREAT`` may create it); anything
        but a regular file is refused without blocking. The caller closes it."""
        if self.name is None:
            raise ToolError(f"{self.rel} is a directory; name a file inside it")
        try:
            fd = os.open(self.name, flags | _FILE_FLAGS, mode, dir_fd=self.dir_fd)
        except OSError as exc:
            if exc.errno in _LINK_ERRNOS:
                raise _changed(self.rel) from exc
            if exc.errno == errno.ENXIO:  # a FIFO opened for writing with no reader
                raise _not_regular(self.rel, "a named pipe (FIFO)") from exc
            if exc.errno == errno.EISDIR:
                raise ToolError(f"{self.rel} is a directory; name a file inside it") from exc
            raise
        info = os.fstat(fd)
        if not stat_mode.S_ISREG(info.st_mode):
            os.close(fd)
            raise _not_regular(self.rel, _kind(info.st_mode))
        if flags & (os.O_WRONLY | os.O_RDWR) and info.st_nlink > 1:
            os.close(fd)
            raise ToolError(
                f"{self.rel} has {info.st_nlink} hard links and may be a file from outside the workspace; "
                "the file tool does not write such files in place (write a new file instead)"
            )
        os.set_blocking(fd, True)
        return fd

    def replace(self, payload: bytes, mode: int) -> None:
        """Write ``payload`` to a temporary file in the same directory and rename it over this name: a
        reader sees the old content or the new, and a failure leaves the old content intact."""
        if self.name is None:
            raise ToolError(f"{self.rel} is a directory; name a file inside it")
        temp = f".{self.name[:200]}.{secrets.token_hex(6)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(temp, flags, 0o600, dir_fd=self.dir_fd)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
                os.fchmod(handle.fileno(), stat_mode.S_IMODE(mode))
            os.replace(temp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=self.dir_fd)
            raise


@contextlib.contextmanager
def located(workspace: Path, path: str, *, create_parents: bool = False) -> Iterator[Place]:
    """Resolve the model's ``path`` beneath ``workspace`` and hold the result open for the block.

    ``create_parents`` makes the missing folders on the way (each with ``mkdirat``). The last
    component may be missing (to be created); a link as the last component is followed when it
    stays inside the workspace."""
    parts, rel = relative_parts(path)
    root_fd = open_root(workspace)
    place = Place(rel=rel, dir_fd=root_fd, name=None, root_fd=root_fd, _owned=[root_fd])
    try:
        _walk(place, parts, workspace, create_parents=create_parents)
        yield place
    finally:
        for fd in reversed(place._owned):
            os.close(fd)


def open_root(workspace: Path) -> int:
    """A descriptor of the workspace folder. Its own path is ours, not the model's, so a link on the
    way to it (a workspace reached through an alias) is followed."""
    try:
        return os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise ToolError(f"the workspace cannot be opened: {exc.strerror or exc}") from exc


def _walk(place: Place, parts: list[str], workspace: Path, *, create_parents: bool) -> None:
    """Move ``place`` to the last of ``parts``, opening each folder beneath the one before it."""
    stack = place._owned  # the open folders from the root down to the current one
    pending = list(reversed(parts))  # the next component is at the end
    hops = 0
    while pending:
        part = pending.pop()
        if part in ("", "."):
            continue
        if part == "..":  # only ever from a link's target: the model's own `..` is refused earlier
            if len(stack) == 1:
                raise _outside(place.rel)
            os.close(stack.pop())
            continue
        here = stack[-1]
        if pending:
            fd = _open_folder(part, here, place.rel, create=create_parents)
            if fd is not None:
                stack.append(fd)
                continue
        else:  # the last component: it may be missing (to be created) or a link to follow
            info = _lstat(part, here)
            if info is None or not stat_mode.S_ISLNK(info.st_mode):
                place.dir_fd, place.name = here, part
                return
        hops += 1
        if hops > MAX_LINK_HOPS:
            raise ToolError(f"{place.rel}: too many levels of symbolic links")
        try:
            target = os.readlink(part, dir_fd=here)
        except OSError as exc:  # no longer a link (renamed meanwhile): look at the name again
            if exc.errno not in (errno.EINVAL, errno.ENOENT):
                raise
            pending.append(part)
            continue
        inside = _inside_parts(target, workspace)
        if inside is None:
            raise _outside(place.rel)
        if target.startswith("/"):
            while len(stack) > 1:
                os.close(stack.pop())
        pending.extend(reversed(inside))
    place.dir_fd, place.name = stack[-1], None


def _open_folder(part: str, here: int, rel: str, *, create: bool) -> int | None:
    """A descriptor of folder ``part`` beneath ``here``; ``None`` when ``part`` is a link (to resolve)."""
    for _ in range(2):
        try:
            return os.open(part, _DIR_FLAGS, dir_fd=here)
        except FileNotFoundError:
            if not create:
                raise ToolError(f"no such file or directory: {rel}; list `.` to see the workspace") from None
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=here)
        except OSError as exc:
            if exc.errno not in _LINK_ERRNOS:
                raise
            info = _lstat(part, here)
            if info is not None and stat_mode.S_ISLNK(info.st_mode):
                return None
            raise ToolError(f"{rel}: {part!r} is not a directory") from exc
    raise _changed(rel)


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _inside_parts(target: str, workspace: Path) -> list[str] | None:
    """A link's target as components to resolve: relative ones from the link's folder, absolute ones
    from the workspace root when they name a place inside it; ``None`` when they lead out."""
    if not target.startswith("/"):
        return target.split("/")
    normal = os.path.normpath(target)
    for root in dict.fromkeys((os.path.abspath(workspace), os.path.realpath(workspace))):
        if normal == root:
            return []
        if normal.startswith(root.rstrip("/") + "/"):
            return normal[len(root.rstrip("/")) + 1 :].split("/")
    return None


def write_text(workspace: Path, relpath: str, text: str) -> None:
    """Create or replace ``workspace/relpath`` with ``text`` (the tools' own saves: pages, long
    outputs), making the folders on the way — beneath the workspace's descriptor like any other write."""
    with located(workspace, relpath, create_parents=True) as place:
        fd = place.open_regular(os.O_WRONLY | os.O_CREAT)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.truncate(0)
                handle.write(text.encode("utf-8", errors="replace"))
        except OSError:  # a disk that filled up: leave no half file to hold the last free space
            with contextlib.suppress(OSError):
                os.unlink(place.name or "", dir_fd=place.dir_fd)
            raise


def _kind(mode: int) -> str:
    if stat_mode.S_ISDIR(mode):
        return "a directory"
    if stat_mode.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat_mode.S_ISSOCK(mode):
        return "a socket"
    if stat_mode.S_ISCHR(mode) or stat_mode.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _not_regular(rel: str, kind: str) -> ToolError:
    return ToolError(f"{rel} is {kind}; the file tool reads and writes regular files only")


def _outside(rel: str) -> PathOutsideWorkspace:
    return PathOutsideWorkspace(
        f"paths are relative to the workspace; {rel!r} leads outside it through a symbolic link"
    )


def _changed(rel: str) -> PathOutsideWorkspace:
    return PathOutsideWorkspace(
        f"paths are relative to the workspace; {rel!r} changed into a symbolic link while it was opened"
    )


# --- lent to the shell's sandbox user, and measured --------------------------------------------

_lent: dict[str, int] = {}
_lent_lock = threading.Lock()


def lend_workspace(root_fd: int, key: str, uid: int) -> int:
    """Hand what we own in the workspace (held open as ``root_fd``) to ``uid`` for a call, so a command
    running as ``uid`` can change the agent's files; return the bytes the workspace occupies. ``key``
    names the workspace for ``reclaim_workspace``: calls of one step share it."""
    with _lent_lock:
        _lent[key] = _lent.get(key, 0) + 1
        return _walk_tree(root_fd, owner=(os.geteuid(), uid, uid))


def reclaim_workspace(root_fd: int, key: str, uid: int) -> int:
    """End a call's loan: when no other call holds the workspace, what ``uid`` owns there is the agent's
    again. Returns the bytes the workspace occupies."""
    with _lent_lock:
        left = _lent.get(key, 1) - 1
        if left > 0:
            _lent[key] = left
            return _walk_tree(root_fd)
        _lent.pop(key, None)
        return _walk_tree(root_fd, owner=(uid, os.geteuid(), os.getegid()))


def workspace_usage(root_fd: int, *, stop_above: int | None = None) -> int:
    """Bytes allocated to the files of the workspace held open as ``root_fd`` (links not followed),
    the way the file tool counts its quota; the walk stops once the total passes ``stop_above``."""
    return _walk_tree(root_fd, stop_above=stop_above)


def _walk_tree(
    root_fd: int, *, stop_above: int | None = None, owner: tuple[int, int, int] | None = None
) -> int:
    """The walk behind the three above. ``owner`` = (from, to uid, to gid) hands each entry owned by
    ``from`` over, by descriptor and name, never following a link (a command may swap any of them)."""
    total = 0
    if owner is not None:
        _hand_over(root_fd, None, owner)
    for _, dirs, files, dir_fd in os.fwalk(".", dir_fd=root_fd, follow_symlinks=False):
        if owner is not None:
            for name in dirs:  # before fwalk goes down into them
                _hand_over(dir_fd, name, owner)
        for name in files:
            try:
                info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                continue
            # a file with several names may be a host file linked in (by a command of an earlier call
            # that ran as root): lending it would hand the host file over
            linked = info.st_nlink > 1 and owner is not None and owner[1] != os.geteuid()
            if owner is not None and info.st_uid == owner[0] and not linked:
                _hand_over(dir_fd, name, owner, info)
            total += info.st_blocks * 512
        if stop_above is not None and total > stop_above:
            break
    return total


def _hand_over(
    dir_fd: int, name: str | None, owner: tuple[int, int, int], info: os.stat_result | None = None
) -> None:
    """Give entry ``name`` of ``dir_fd`` (the folder itself for ``None``) to the new owner if the old one
    has it. A failure (a file system that refuses ``chown``) leaves the entry as it was: the command then
    cannot change it, which it reports itself."""
    try:
        if info is None:
            info = os.fstat(dir_fd) if name is None else os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if info.st_uid != owner[0]:
            return
        if name is None:
            os.fchown(dir_fd, owner[1], owner[2])
        else:
            os.chown(name, owner[1], owner[2], dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        logger.debug("shell: cannot hand %s over to uid %d: %s", name or ".", owner[1], exc)
