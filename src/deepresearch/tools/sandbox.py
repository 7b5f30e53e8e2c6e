"""Confinement for the ``shell`` tool: namespaces, a scrubbed environment, rlimits and a process cap.

The shell runs commands a model wrote, so the question is not whether to confine them but how far this
machine allows. ``detect_sandbox`` finds out once per process by running a trivial command (bubblewrap can
be installed and still fail inside a container); ``wrap_command`` turns an argv into one that runs confined:

- ``bwrap``: new user, pid, network, ipc and uts namespaces, no capabilities, a root made of the system
  directories and the interpreter's prefix (read-only), a fresh ``/tmp``, ``/proc`` with ``/proc/sys``
  read-only, and the workspace as the only writable host path.
- ``unshare``: network and pid namespaces only — the filesystem is the host's. It stops network access
  and lets the whole process tree die with the command; nothing more.
- ``none``: a plain subprocess.

An explicit choice that does not work raises ``ConfigError``; ``auto`` takes the first that works and logs
what it fell back to. The environment is built from nothing (never from ``os.environ``), so no key of the
parent process can leak into a command.

Rlimits are applied innermost with ``prlimit`` — after the namespaces exist, so that in a fresh user
namespace ``RLIMIT_NPROC`` counts only the sandbox's processes. The kernel ignores ``RLIMIT_NPROC`` for a
process whose real uid is root, and bubblewrap started by root maps root to root, so when we run as root
``pids_cgroup`` caps the process count instead, where this machine lets us create a pids cgroup.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import resource
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from deepresearch.errors import ConfigError
from deepresearch.tools.base import ShellConfig

logger = logging.getLogger(__name__)

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""Where sandbox tools are looked up and what commands get as ``PATH`` (after the interpreter's bin)."""
CPU_MARGIN_S = 5
"""CPU seconds granted beyond the wall-clock timeout before RLIMIT_CPU stops a process."""
PROBE_TIMEOUT_S = 15
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
_PROC_COVER = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus")
_CGROUP_PREFIX = "deepresearch-shell-"


class SandboxKind(StrEnum):
    BWRAP = "bwrap"
    UNSHARE = "unshare"
    NONE = "none"


def detect_sandbox(config: ShellConfig, *, search_path: str = SYSTEM_PATH) -> SandboxKind:
    """The sandbox commands will run in: ``config.sandbox`` if it works, else (for ``auto``) the best one
    that does. Probes run once per process and executable; ``search_path`` is where the tools are found."""
    if config.sandbox == "none":
        return SandboxKind.NONE
    if config.sandbox == "auto":
        return _detect_auto(search_path)
    kind = SandboxKind(config.sandbox)
    works, reason = _check(kind, search_path)
    if not works:
        raise ConfigError(f"shell sandbox {kind.value!r} is configured but does not work here: {reason}")
    return kind


@functools.cache
def _detect_auto(search_path: str) -> SandboxKind:
    reasons: list[str] = []
    for kind in (SandboxKind.BWRAP, SandboxKind.UNSHARE):
        works, reason = _check(kind, search_path)
        if works:
            if reasons:
                logger.warning(
                    "shell sandbox: %s; falling back to %s (network isolation only)",
                    "; ".join(reasons),
                    kind.value,
                )
            return kind
        reasons.append(reason)
    logger.warning("shell sandbox: %s; shell commands run WITHOUT a sandbox", "; ".join(reasons))
    return SandboxKind.NONE


def _check(kind: SandboxKind, search_path: str) -> tuple[bool, str]:
    executable = shutil.which(kind.value, path=search_path)
    if executable is None:
        return False, f"{kind.value} not found on {search_path}"
    return _probe(kind, executable)


@functools.cache
def _probe(kind: SandboxKind, executable: str) -> tuple[bool, str]:
    """Whether ``executable`` can run ``true`` the way ``wrap_command`` would run a command."""
    if kind is SandboxKind.BWRAP:
        argv = [executable, *_bwrap_base(ShellConfig()), "--", "true"]
    else:
        argv = [executable, *_UNSHARE_ARGS, "true"]
    try:
        done = subprocess.run(
            argv,
            env={"PATH": SYSTEM_PATH},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"{kind.value} failed to start: {exc}"
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return False, f"{kind.value} does not work here (exit {done.returncode}: {' '.join(detail[-1:])})"
    logger.debug("shell sandbox probe: %s works", executable)
    return True, ""


# --- wrapping -----------------------------------------------------------------------------------------

_UNSHARE_ARGS = ("--net", "--map-root-user", "--pid", "--fork", "--kill-child", "--")


def wrap_command(
    kind: SandboxKind,
    argv: list[str],
    workspace: Path,
    config: ShellConfig,
    *,
    search_path: str = SYSTEM_PATH,
) -> list[str]:
    """``argv`` as it runs in sandbox ``kind`` with ``workspace`` as its writable working directory."""
    if kind is SandboxKind.NONE:
        return list(argv)
    executable = shutil.which(kind.value, path=search_path)
    if executable is None:
        raise ConfigError(f"{kind.value} not found on {search_path}")
    if kind is SandboxKind.UNSHARE:
        return [executable, *_UNSHARE_ARGS, *argv]
    real = os.path.realpath(workspace)
    return [
        executable,
        *_bwrap_base(config),
        "--bind",
        real,
        str(workspace),
        "--chdir",
        str(workspace),
        "--",
        *argv,
    ]


def _bwrap_base(config: ShellConfig) -> list[str]:
    """Everything but the workspace: namespaces, the read-only root, ``/tmp``, ``/proc`` and ``/dev``.
    ``/tmp`` comes before any bind so that a workspace under ``/tmp`` is mounted on top of it."""
    args = [
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--perms",
        "1777",
        "--size",
        str(config.memory_mb * 1024 * 1024),
        "--tmpfs",
        "/tmp",
    ]
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in [*_interpreter_dirs(), *config.extra_ro_binds]:
        real = os.path.realpath(path)
        for dest in dict.fromkeys((real, os.path.abspath(path))):
            args += ["--ro-bind-try", real, dest]
    args += ["--proc", "/proc"]
    for path in _PROC_COVER:  # bwrap leaves these writable when root runs it; host sysctls must stay put
        args += ["--ro-bind-try", path, path]
    args += ["--dev", "/dev"]
    return args


def _interpreter_dirs() -> list[str]:
    """The running interpreter's prefixes not already covered by a system directory, so ``python3`` from
    the same environment works inside the sandbox."""
    prefixes = dict.fromkeys(os.path.abspath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix) if p)
    return [p for p in prefixes if not _covered(os.path.realpath(p))]


def _covered(path: str) -> bool:
    return any(path == d or path.startswith(d + "/") for d in _SYSTEM_DIRS)


def scrubbed_env(workspace: Path) -> dict[str, str]:
    """The whole environment of a command, built from constants: nothing of the parent's (API keys
    included) reaches it."""
    path = SYSTEM_PATH
    bin_dir = os.path.dirname(sys.executable) if sys.executable else ""
    if bin_dir and bin_dir not in SYSTEM_PATH.split(":"):
        path = f"{bin_dir}:{path}"
    return {
        "PATH": path,
        "HOME": str(workspace),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": "dumb",
        "TMPDIR": "/tmp",
        "PAGER": "cat",
        "NO_COLOR": "1",
        "MPLBACKEND": "Agg",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",  # so that output printed before a timeout kill is not lost in a buffer
    }


# --- rlimits ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-process resource limits of one command."""

    cpu_s: int
    memory_bytes: int
    file_bytes: int
    processes: int

    def prlimit_args(self) -> list[str]:
        return [
            f"--cpu={self.cpu_s}:{self.cpu_s + CPU_MARGIN_S}",
            f"--as={self.memory_bytes}",
            f"--fsize={self.file_bytes}",
            f"--nproc={self.processes}",
            "--core=0",
        ]

    def apply(self) -> None:
        """Set the limits on the calling process (used in a ``preexec_fn`` when ``prlimit`` is missing)."""
        resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_s, self.cpu_s + CPU_MARGIN_S))
        resource.setrlimit(resource.RLIMIT_AS, (self.memory_bytes, self.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_bytes, self.file_bytes))
        resource.setrlimit(resource.RLIMIT_NPROC, (self.processes, self.processes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def limits_for(config: ShellConfig, timeout: int, kind: SandboxKind) -> Limits:
    """The limits for a command with wall-clock ``timeout``. Outside a user namespace RLIMIT_NPROC counts
    every process of the user, so there the cap is added to what the user already runs."""
    processes = config.max_processes
    if kind is SandboxKind.NONE and os.getuid() != 0:
        processes += _processes_of_user(os.getuid())
    return Limits(
        cpu_s=timeout + CPU_MARGIN_S,
        memory_bytes=config.memory_mb * 1024 * 1024,
        file_bytes=config.max_file_mb * 1024 * 1024,
        processes=processes,
    )


def _processes_of_user(uid: int) -> int:
    count = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    count += entry.stat().st_uid == uid
    return count


def limit_command(
    argv: list[str], limits: Limits, *, search_path: str = SYSTEM_PATH
) -> tuple[list[str], Callable[[], None] | None]:
    """``argv`` under ``limits``: prefixed with ``prlimit`` when it exists (the limits then start inside
    the sandbox), else unchanged with a ``preexec_fn`` that sets them on the sandbox process itself."""
    prlimit = shutil.which("prlimit", path=search_path)
    if prlimit is None:
        return list(argv), limits.apply
    return [prlimit, *limits.prlimit_args(), "--", *argv], None


# --- the process cap for root -------------------------------------------------------------------------


class PidsCgroup:
    """A pids cgroup holding one command's processes: a hard cap on their number that holds for root,
    and a list of every process to kill, including ones that left the process group."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def join(self, argv: list[str], *, search_path: str = SYSTEM_PATH) -> list[str]:
        """``argv`` preceded by a shell that moves itself into the cgroup, then execs it."""
        sh = shutil.which("sh", path=search_path) or "/bin/sh"
        return [sh, "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs"), *argv]

    async def kill_all(self) -> None:
        """SIGKILL every process in the cgroup until it is empty (the cap bounds a fork bomb's refills)."""
        for _ in range(200):
            try:
                pids = [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
            except OSError:
                return
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.01)
        logger.warning("shell: processes survive in %s", self.path)

    async def remove(self) -> None:
        for _ in range(100):  # exiting processes leave the cgroup a moment after they are killed
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                await asyncio.sleep(0.02)
        logger.warning("shell: could not remove cgroup %s", self.path)


@contextlib.asynccontextmanager
async def pids_cgroup(max_processes: int) -> AsyncIterator[PidsCgroup | None]:
    """A fresh pids cgroup capped at ``max_processes`` when we run as root (where RLIMIT_NPROC is ignored)
    and this machine lets us make one; ``None`` otherwise. Everything left in it is killed on exit."""
    parent = _pids_cgroup_parent() if os.geteuid() == 0 else None
    if parent is None:
        yield None
        return
    path = parent / f"{_CGROUP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        path.mkdir()
        (path / "pids.max").write_text(f"{max_processes}\n")
    except OSError as exc:
        logger.warning("shell: cannot create pids cgroup %s: %s", path, exc)
        with contextlib.suppress(OSError):
            path.rmdir()
        yield None
        return
    cgroup = PidsCgroup(path)
    try:
        yield cgroup
    finally:
        await cgroup.kill_all()
        await cgroup.remove()


@functools.cache
def _pids_cgroup_parent() -> Path | None:
    """The cgroup directory (v1 ``pids`` hierarchy, or v2 with ``pids`` delegated) in which this process
    may create children, or ``None``. Looked up once per process."""
    try:
        own = Path("/proc/self/cgroup").read_text()
        mounts = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return None
    v1_path = v2_path = None
    for line in own.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[1] == "":
            v2_path = parts[2]
        elif len(parts) == 3 and "pids" in parts[1].split(","):
            v1_path = parts[2]
    for line in mounts.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        root, mountpoint, fstype, options = fields[3], fields[4], tail[0], tail[2].split(",")
        if fstype == "cgroup" and "pids" in options and v1_path is not None:
            candidate = _under(mountpoint, root, v1_path)
            if candidate is not None and os.access(candidate, os.W_OK):
                return candidate
        elif fstype == "cgroup2" and v2_path is not None:
            candidate = _under(mountpoint, root, v2_path)
            if candidate is not None and os.access(candidate, os.W_OK) and _delegates_pids(candidate):
                return candidate
    logger.warning(
        "shell: running as root and no pids cgroup can be created; a fork bomb is stopped only"
        " by the timeout and the pid namespace"
    )
    return None


def _under(mountpoint: str, root: str, path: str) -> Path | None:
    if root != "/" and path != root and not path.startswith(root.rstrip("/") + "/"):
        return None
    relative = path[len(root) :] if root != "/" else path
    candidate = Path(mountpoint) / relative.lstrip("/")
    return candidate if candidate.is_dir() else None


def _delegates_pids(directory: Path) -> bool:
    try:
        return "pids" in (directory / "cgroup.subtree_control").read_text().split()
    except OSError:
        return False
