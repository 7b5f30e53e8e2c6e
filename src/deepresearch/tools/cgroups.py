"""One cgroup per shell call: a hard cap on its processes that holds for root (the kernel ignores
``RLIMIT_NPROC`` for uid 0), and a memory limit for all its processes together (``RLIMIT_AS`` only
bounds each one: five processes of 2 GiB each pass a 2 GiB address-space limit).

Where this machine lets us create cgroups (v1 ``pids``/``memory`` hierarchies, or v2 with those
controllers delegated to our own cgroup), ``call_cgroup`` makes one per call (on v1, one per
controller), the command's first process moves itself in before it execs, and on the way out every
process in it is killed and the folder removed. Folders are named ``deepresearch-shell-<pid>-<id>``
after the agent that made them, so one left behind by a killed agent is removed by the next call
(``remove_stale_cgroups``), never one whose agent still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import shutil
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_CGROUP_PREFIX = "deepresearch-shell-"
_CGROUP_NAME = re.compile(re.escape(_CGROUP_PREFIX) + r"(\d+)-[0-9A-Za-z]+")
_CONTROLLERS = ("pids", "memory")
_WITHOUT_CGROUP = {
    "pids": "a fork bomb is stopped only by the timeout and the pid namespace",
    "memory": "memory is limited per process (RLIMIT_AS), not for the call as a whole",
}


@dataclass(frozen=True, slots=True)
class CgroupParent:
    """A cgroup directory in which this process may create children for ``controller``."""

    path: Path
    version: int


class CallCgroup:
    """The cgroups holding one command's processes (one per v1 hierarchy, or one on v2): caps on their
    number and on their memory together that hold for root, and a list of every process to kill,
    including ones that left the process group."""

    def __init__(self, paths: dict[str, Path], versions: dict[str, int]) -> None:
        self.paths = paths
        """The controller → directory of the call (one directory may serve several controllers)."""
        self.versions = versions

    @property
    def dirs(self) -> list[Path]:
        return list(dict.fromkeys(self.paths.values()))

    def join(self, argv: list[str], *, search_path: str = os.defpath) -> list[str]:
        """``argv`` preceded by a shell that moves itself into the cgroups, then execs it."""
        sh = shutil.which("sh", path=search_path) or "/bin/sh"
        dirs = self.dirs
        steps = [f'echo $$ > "${{{i}}}"' if i else 'echo $$ > "$0"' for i in range(len(dirs))]
        if len(dirs) > 1:
            steps.append(f"shift {len(dirs) - 1}")
        script = " && ".join([*steps, 'exec "$@"'])
        return [sh, "-c", script, *(str(d / "cgroup.procs") for d in dirs), *argv]

    def oom_kills(self) -> int:
        """Processes the kernel killed because the call went over its memory limit."""
        path = self.paths.get("memory")
        if path is None:
            return 0
        name = "memory.events" if self.versions["memory"] == 2 else "memory.oom_control"
        try:
            for line in (path / name).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        return 0

    async def kill_all(self) -> None:
        """SIGKILL every process in the cgroups until none is left (the cap bounds a fork bomb's refills)."""
        for _ in range(200):
            pids = {pid for d in self.dirs for pid in _procs(d)}
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.01)
        logger.warning("shell: processes survive in %s", self.dirs)

    async def remove(self) -> None:
        for path in self.dirs:
            for _ in range(100):  # exiting processes leave the cgroup a moment after they are killed
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    await asyncio.sleep(0.02)
            else:
                logger.warning("shell: could not remove cgroup %s", path)


def _procs(path: Path) -> list[int]:
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


@contextlib.asynccontextmanager
async def call_cgroup(*, max_processes: int, memory_bytes: int) -> AsyncIterator[CallCgroup | None]:
    """Fresh cgroups capping the call's processes at ``max_processes`` and their memory together at
    ``memory_bytes``, for whichever of the two controllers this machine lets us use, when we run as root
    (where RLIMIT_NPROC is ignored); ``None`` when neither. Everything left in them is killed on exit.
    Folders that a killed agent left behind beside them are removed first."""
    parents = {c: p for c in _CONTROLLERS if (p := cgroup_parent(c)) is not None} if os.geteuid() == 0 else {}
    name = f"{_CGROUP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    paths: dict[str, Path] = {}
    for parent in dict.fromkeys(p.path for p in parents.values()):
        remove_stale_cgroups(parent)
        path = parent / name
        controllers = [c for c, p in parents.items() if p.path == parent]
        try:
            path.mkdir()
            for controller in controllers:
                _set_limit(path, controller, parents[controller].version, max_processes, memory_bytes)
        except OSError as exc:
            logger.warning("shell: cannot create %s cgroup %s: %s", "+".join(controllers), path, exc)
            with contextlib.suppress(OSError):
                path.rmdir()
            continue
        paths.update(dict.fromkeys(controllers, path))
    if not paths:
        yield None
        return
    cgroup = CallCgroup(paths, {c: parents[c].version for c in paths})
    try:
        yield cgroup
    finally:
        await cgroup.kill_all()
        await cgroup.remove()


def _set_limit(path: Path, controller: str, version: int, max_processes: int, memory_bytes: int) -> None:
    if controller == "pids":
        (path / "pids.max").write_text(f"{max_processes}\n")
        return
    # memory: no swap beyond the limit either (v1 counts memory+swap together, v2 swap on its own)
    limit, swap, swap_value = (
        ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes", memory_bytes)
        if version == 1
        else ("memory.max", "memory.swap.max", 0)
    )
    (path / limit).write_text(f"{memory_bytes}\n")
    if (path / swap).exists():
        (path / swap).write_text(f"{swap_value}\n")


def remove_stale_cgroups(parent: Path) -> list[str]:
    """Remove the call cgroups in ``parent`` whose creating process is gone (an agent killed with
    SIGKILL mid-call leaves its folder behind) and that hold no process; returns their names. A creator
    is recognised by the pid in the name and a start time no later than the folder's."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        match = _CGROUP_NAME.fullmatch(entry.name)
        if match is None or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            created = entry.stat(follow_symlinks=False).st_ctime
        except OSError:
            continue
        if _started_by(int(match[1]), created) or _procs(Path(entry.path)):
            continue
        try:
            os.rmdir(entry.path)
        except OSError as exc:
            logger.debug("shell: stale cgroup %s stays: %s", entry.path, exc)
            continue
        removed.append(entry.name)
    if removed:
        logger.info("shell: removed %d cgroup(s) left by killed agents in %s", len(removed), parent)
    return removed


def _started_by(pid: int, created: float) -> bool:
    """Whether process ``pid`` is alive and started before ``created`` (it is not a reuse of the pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, counted after the command name
    except (OSError, ValueError, IndexError):
        return False
    return _boot_time() + ticks / os.sysconf("SC_CLK_TCK") <= created + 2.0  # btime has 1 s resolution


@functools.cache
def _boot_time() -> float:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError):
        pass
    return time.time() - time.monotonic()


@functools.cache
def cgroup_parent(controller: str) -> CgroupParent | None:
    """The cgroup directory (the v1 hierarchy of ``controller``, or v2 with ``controller`` delegated) in
    which this process may create children, or ``None``. Looked up once per process and controller."""
    try:
        own = Path("/proc/self/cgroup").read_text()
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return None
    found = _find_cgroup_parent(controller, own, mountinfo)
    if found is None and os.geteuid() == 0:
        logger.warning(
            "shell: running as root and no %s cgroup can be created; %s",
            controller,
            _WITHOUT_CGROUP[controller],
        )
    return found


def _find_cgroup_parent(controller: str, own: str, mountinfo: str) -> CgroupParent | None:
    """The parent for ``controller`` given ``/proc/self/cgroup`` (``own``) and ``/proc/self/mountinfo``."""
    v1_path = v2_path = None
    for line in own.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[1] == "":
            v2_path = parts[2]
        elif len(parts) == 3 and controller in parts[1].split(","):
            v1_path = parts[2]
    for fields, fstype, options in _mounts(mountinfo):
        root, mountpoint = fields[3], fields[4]
        if fstype == "cgroup" and controller in options and v1_path is not None:
            candidate = _under(mountpoint, root, v1_path)
            if candidate is not None and os.access(candidate, os.W_OK):
                return CgroupParent(candidate, 1)
        elif fstype == "cgroup2" and v2_path is not None:
            candidate = _under(mountpoint, root, v2_path)
            if candidate is not None and os.access(candidate, os.W_OK) and _delegates(candidate, controller):
                return CgroupParent(candidate, 2)
    return None


def _mounts(mountinfo: str) -> Iterator[tuple[list[str], str, list[str]]]:
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 3:
            yield fields, tail[0], tail[2].split(",")


def _under(mountpoint: str, root: str, path: str) -> Path | None:
    if root != "/" and path != root and not path.startswith(root.rstrip("/") + "/"):
        return None
    relative = path[len(root) :] if root != "/" else path
    candidate = Path(mountpoint) / relative.lstrip("/")
    return candidate if candidate.is_dir() else None


def _delegates(directory: Path, controller: str) -> bool:
    try:
        return controller in (directory / "cgroup.subtree_control").read_text().split()
    except OSError:
        return False
