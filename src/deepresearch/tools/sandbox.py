"""Confinement for the ``shell`` tool: namespaces, an unprivileged user, a scrubbed environment, rlimits,
and one cgroup per call for memory and processes.

The shell runs commands a model wrote, so the question is not whether to confine them but how far this
machine allows. ``detect_sandbox`` finds out once per process by running a trivial command (bubblewrap can
be installed and still fail inside a container); ``wrap_command`` turns an argv into one that runs confined:

- ``bwrap``: new pid, network, ipc and uts namespaces, no capabilities, a root made of the system
  directories and the interpreter's prefix (read-only), a fresh ``/tmp``, ``/proc`` with ``/proc/sys``
  read-only, and the workspace as the only writable host path.
- ``unshare``: network and pid namespaces only — the filesystem is the host's. It stops network access
  and lets the whole process tree die with the command; nothing more.
- ``none``: a plain subprocess.

An explicit choice that does not work raises ``ConfigError``; ``auto`` takes the first that works and logs
what it fell back to. The environment is built from nothing (never from ``os.environ``), so no key of the
parent process can leak into a command.

**The user.** A user namespace does not make root harmless: bubblewrap started by root maps the sandbox's
uid to host uid 0, whatever ``--uid`` says, and a process whose host uid is 0 owns every root-owned file,
capabilities or not (``/etc/shadow`` is mode 0640 root). So when the agent runs as root, bubblewrap runs
without a user namespace and ``setpriv`` switches the command to ``SANDBOX_UID`` (``nobody``), a host uid
that owns nothing: root-only files are closed to it. The workspace is lent to that uid for the call
(``lend_workspace``: what the agent owns there is handed over) and given back when the last call using it
ends (``reclaim_workspace``), so the agent finds its files owned by itself again; the kernel clears setuid
bits on the way. ``unshare`` and ``none`` keep the agent's uid: as root they stay root.

**Rlimits** are applied innermost with ``prlimit`` — inside the namespaces and after the user switch. The
kernel ignores ``RLIMIT_NPROC`` for root, so when we run as root ``call_cgroup`` caps the process count,
and the memory of the whole call (all its processes together: ``RLIMIT_AS`` only bounds each one), in
cgroups made for the call where this machine lets us (v1 ``pids`` and ``memory`` hierarchies, or v2 with
those controllers delegated). A cgroup left behind by a killed agent is removed by the next call.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from deepresearch.errors import ConfigError
from deepresearch.tools.base import DEFAULT_WORKSPACE_MAX_BYTES, ShellConfig
from deepresearch.tools.cgroups import cgroup_parent

logger = logging.getLogger(__name__)

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""Where sandbox tools are looked up and what commands get as ``PATH`` (after the interpreter's bin)."""
CPU_MARGIN_S = 5
"""CPU seconds granted beyond the wall-clock timeout before RLIMIT_CPU stops a process."""
PROBE_TIMEOUT_S = 15
SANDBOX_UID = 65534
"""Host uid and gid of bubblewrap commands when the agent runs as root (``nobody``: owns no host file)."""
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
_PROC_COVER = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus")


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
    if kind is SandboxKind.BWRAP and _bwrap_drop(executable, search_path) is not None:
        return True, ""
    return _probe(kind, executable)


@functools.cache
def _probe(kind: SandboxKind, executable: str) -> tuple[bool, str]:
    """Whether ``executable`` can run ``true`` the way ``wrap_command`` would run a command."""
    if kind is SandboxKind.BWRAP:
        argv = [executable, *_bwrap_base(ShellConfig(), drop=False), "--", "true"]
    else:
        argv = [executable, *_UNSHARE_ARGS, "true"]
    return _run_probe(kind.value, argv)


def _run_probe(name: str, argv: list[str]) -> tuple[bool, str]:
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
        return False, f"{name} failed to start: {exc}"
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return False, f"{name} does not work here (exit {done.returncode}: {' '.join(detail[-1:])})"
    logger.debug("shell sandbox probe: %s works", argv[0])
    return True, ""


def _bwrap_drop(executable: str, search_path: str) -> list[str] | None:
    """The ``setpriv`` prefix that switches a bubblewrap command to ``SANDBOX_UID``, when we run as root
    and that works here; ``None`` when commands keep our uid."""
    if os.geteuid() != 0:
        return None
    setpriv = shutil.which("setpriv", path=search_path)
    if setpriv is None:
        return None
    return _probe_drop(executable, setpriv)


@functools.cache
def _probe_drop(executable: str, setpriv: str) -> list[str] | None:
    drop = [
        setpriv,
        f"--reuid={SANDBOX_UID}",
        f"--regid={SANDBOX_UID}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ]
    works, reason = _run_probe(
        "bwrap", [executable, *_bwrap_base(ShellConfig(), drop=True), "--", *drop, "true"]
    )
    if works:
        return drop
    logger.warning(
        "shell sandbox: bubblewrap cannot switch commands to uid %d (%s); they run as root",
        SANDBOX_UID,
        reason,
    )
    return None


def sandbox_user(kind: SandboxKind, *, search_path: str = SYSTEM_PATH) -> int:
    """The host uid commands run as in sandbox ``kind``: ``SANDBOX_UID`` where bubblewrap switches root's
    commands to it, else our own."""
    if kind is SandboxKind.BWRAP:
        executable = shutil.which(kind.value, path=search_path)
        if executable is not None and _bwrap_drop(executable, search_path) is not None:
            return SANDBOX_UID
    return os.geteuid()


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
    drop = _bwrap_drop(executable, search_path)
    real = os.path.realpath(workspace)
    return [
        executable,
        *_bwrap_base(config, drop=drop is not None),
        *_open_parents(str(workspace), set()),
        "--bind",
        real,
        str(workspace),
        "--chdir",
        str(workspace),
        "--",
        *(drop or []),
        *argv,
    ]


def _bwrap_base(config: ShellConfig, *, drop: bool) -> list[str]:
    """Everything but the workspace: namespaces, the read-only root, ``/tmp``, ``/proc`` and ``/dev``.
    ``/tmp`` comes before any bind so that a workspace under ``/tmp`` is mounted on top of it. With
    ``drop``, no user namespace (it would map the command to root) and only the capabilities ``setpriv``
    needs to switch to ``SANDBOX_UID``, which it then drops with the rest."""
    if drop:
        namespaces = [
            "--unshare-pid",
            "--unshare-net",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
        ]
        caps = ["--cap-drop", "ALL"]
        for cap in ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"):
            caps += ["--cap-add", cap]
    else:
        namespaces, caps = ["--unshare-all"], ["--cap-drop", "ALL"]
    args = [
        *namespaces,
        "--die-with-parent",
        "--new-session",
        *caps,
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
    made: set[str] = set()
    for path in [*_interpreter_dirs(), *config.extra_ro_binds]:
        real = os.path.realpath(path)
        for dest in dict.fromkeys((real, os.path.abspath(path))):
            args += [*_open_parents(dest, made), "--ro-bind-try", real, dest]
    args += ["--proc", "/proc"]
    for path in _PROC_COVER:  # bwrap leaves these writable when root runs it; host sysctls must stay put
        args += ["--ro-bind-try", path, path]
    args += ["--dev", "/dev"]
    return args


def _open_parents(dest: str, made: set[str]) -> list[str]:
    """Folders on the way to bind destination ``dest``, made world-searchable: bubblewrap makes missing
    ones with mode 0700, which shuts out a command that runs as another uid than bubblewrap."""
    args: list[str] = []
    parent = os.path.dirname(os.path.abspath(dest))
    parents: list[str] = []
    while parent not in ("/", "/tmp") and not _covered(parent) and parent not in made:
        parents.append(parent)
        parent = os.path.dirname(parent)
    for folder in reversed(parents):
        made.add(folder)
        args += ["--perms", "0755", "--dir", folder]
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
    """Per-process resource limits of one command; ``memory_bytes`` is ``None`` where a cgroup bounds the
    memory of the whole call instead (RLIMIT_AS would only refuse address space, not memory)."""

    cpu_s: int
    memory_bytes: int | None
    file_bytes: int
    processes: int

    def prlimit_args(self) -> list[str]:
        memory = [f"--as={self.memory_bytes}"] if self.memory_bytes is not None else []
        return [
            f"--cpu={self.cpu_s}:{self.cpu_s + CPU_MARGIN_S}",
            *memory,
            f"--fsize={self.file_bytes}",
            f"--nproc={self.processes}",
            "--core=0",
        ]

    def apply(self) -> None:
        """Set the limits on the calling process (used in a ``preexec_fn`` when ``prlimit`` is missing)."""
        resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_s, self.cpu_s + CPU_MARGIN_S))
        if self.memory_bytes is not None:
            resource.setrlimit(resource.RLIMIT_AS, (self.memory_bytes, self.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.file_bytes, self.file_bytes))
        resource.setrlimit(resource.RLIMIT_NPROC, (self.processes, self.processes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def limits_for(
    config: ShellConfig,
    timeout: int,
    kind: SandboxKind,
    *,
    user: int | None = None,
    file_bytes: int | None = None,
    memory_cgroup: bool = False,
) -> Limits:
    """The limits for a command with wall-clock ``timeout`` run as host uid ``user`` (default: ours).
    ``file_bytes`` lowers the file size cap (to the workspace's space left); ``memory_cgroup`` leaves memory
    to the call's cgroup. Outside a user namespace (``none``, or bubblewrap switching root's commands to
    another uid) RLIMIT_NPROC counts every process of the uid, so there the cap is added to what it runs."""
    uid = os.getuid() if user is None else user
    processes = config.max_processes
    if uid != 0 and (kind is SandboxKind.NONE or uid != os.getuid()):
        processes += _processes_of_user(uid)
    max_file = config.max_file_mb * 1024 * 1024
    return Limits(
        cpu_s=timeout + CPU_MARGIN_S,
        memory_bytes=None if memory_cgroup else config.memory_mb * 1024 * 1024,
        file_bytes=max_file if file_bytes is None else min(max_file, file_bytes),
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


# --- what applies, for the run's record ---------------------------------------------------------------


def describe_limits(
    config: ShellConfig,
    *,
    workspace_max_bytes: int = DEFAULT_WORKSPACE_MAX_BYTES,
    search_path: str = SYSTEM_PATH,
) -> dict[str, str]:
    """The confinement shell commands get on this machine under ``config``, in words (for ``run.json``):
    ``sandbox``, ``user``, ``memory_limit``, ``process_limit`` and ``workspace_quota``. May run the
    sandbox probe (a subprocess, once per process): call it off the event loop."""
    try:
        kind = detect_sandbox(config, search_path=search_path)
    except ConfigError as exc:
        sandbox = f"error: {exc} (every shell call fails)"
        kind = SandboxKind.NONE
    else:
        sandbox = kind.value
    uid = sandbox_user(kind, search_path=search_path)
    if uid == 0:
        user = "root (this sandbox cannot switch commands to an unprivileged uid)"
    elif uid != os.geteuid():
        user = f"uid {uid} (unprivileged; switched from root)"
    else:
        user = f"uid {uid} (the agent's own)"
    root = os.geteuid() == 0
    memory = cgroup_parent("memory") if root else None
    pids = cgroup_parent("pids") if root else None
    if pids is not None:
        process_limit = f"cgroup v{pids.version}"
    else:
        process_limit = (
            "rlimit per user" if uid != 0 else "none (root without a pids cgroup: only the timeout)"
        )
    return {
        "sandbox": sandbox,
        "user": user,
        "memory_limit": f"cgroup v{memory.version}" if memory is not None else "rlimit per process",
        "process_limit": process_limit,
        "workspace_quota": (
            f"{workspace_max_bytes // (1024 * 1024)} MB: file size rlimit at the space left, "
            "and a size poll that stops the command"
        ),
    }
