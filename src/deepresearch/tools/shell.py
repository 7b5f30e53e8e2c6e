"""The ``shell`` tool: run one bash command in the workspace, confined, and tell the model how it ended.

The interface is frozen by ARCHITECTURE.md: ``shell(cmd: str, timeout: int = 60)``. The result keeps the
tags of the reference implementation (``<cmd>``, ``<exit_code>``, ``<stdout>``, ``<stderr>``, and
``<message>`` when something was cut short) but not its faults: the command runs in bash rather than
``sh``, inside the sandbox of ``tools/sandbox.py``, with an environment built from nothing; on timeout the
whole process tree is killed and what it printed before is kept; output is read while it is produced,
capped, shown as its tail, and saved whole in the workspace when the tail is not all of it. A non-zero exit
code is information for the model, not a failure of the tool.

The workspace has a disk quota (``ToolContext.workspace_max_bytes``) and no filesystem here enforces it
for us, so a call enforces it twice: no file may grow past the space left when the call starts
(``RLIMIT_FSIZE``), and a poll of the workspace's size stops the command once the total passes the quota.
The poll starts after ``QUOTA_POLL_S``, so a short command never waits on it; a command that writes many
files fast can overshoot by what it writes in one interval.

The tool is built by ``shell_tool()`` rather than at import, so importing this module reads no file.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from deepresearch.errors import ToolError
from deepresearch.tools.base import ShellConfig, Tool, ToolContext, ToolResult, tool_description
from deepresearch.tools.cgroups import CallCgroup, call_cgroup
from deepresearch.tools.sandbox import (
    detect_sandbox,
    limit_command,
    limits_for,
    sandbox_user,
    scrubbed_env,
    wrap_command,
)
from deepresearch.tools.truncate import offload
from deepresearch.tools.workspace import lend_workspace, reclaim_workspace, workspace_usage

logger = logging.getLogger(__name__)

CMD_ECHO_CHARS = 1024
"""The command is echoed back in ``<cmd>``; longer commands show their last this-many characters."""
KILL_GRACE_S = 2.0
"""After the command ends, how long to wait for processes that escaped the kill to close its pipes."""
QUOTA_POLL_S = 0.25
"""Seconds between two measurements of the workspace's size during a call (and before the first)."""
QUOTA_POLL_SHARE = 0.05
"""At most this share of a call's time goes to measuring: a slow walk (a huge workspace) polls less often."""
MIN_FILE_BYTES = 1024 * 1024
"""The file size cap never goes below this, so a full workspace still lets a command use ``/tmp``."""
_READ_CHUNK = 64 * 1024
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")

KilledReason = Literal["timeout", "output_limit", "disk_quota"]
ProcessLimit = Literal["cgroup", "rlimit", "none"]
MemoryLimit = Literal["cgroup", "rlimit"]


class ShellArgs(BaseModel):
    cmd: str = Field(
        description="The bash command to run in the workspace (run by `bash -c`; pipes, "
        "heredocs and `[[ ]]` work)."
    )
    timeout: int = Field(
        default=60,
        description="Seconds before the command is killed; 0 means the "
        "configured maximum, which also caps larger values.",
    )


def shell_tool() -> Tool:
    """The ``shell`` tool, its description read from ``tools/prompts/shell.md``."""
    return Tool(
        name="shell",
        args=ShellArgs,
        run=run_shell,
        description=tool_description("shell"),
        describer=describe_shell,
    )


def describe_shell(arguments: dict[str, Any]) -> str:
    """``shell: <the command's start>``."""
    return f"shell: {str(arguments.get('cmd', ''))[:70]}"


def effective_timeout(requested: int, max_timeout: int) -> int:
    """``requested`` clamped to ``[1, max_timeout]``; 0 means ``max_timeout``."""
    cap = max(1, max_timeout)
    return cap if requested == 0 else min(max(requested, 1), cap)


async def run_shell(args: ShellArgs, ctx: ToolContext) -> ToolResult:
    """Run ``args.cmd`` with ``bash -c`` in the workspace and report exit code and output tails."""
    config = ctx.shell
    if not args.cmd.strip():
        raise ToolError("`cmd` is empty: pass the bash command to run")
    timeout = effective_timeout(args.timeout, config.max_timeout)
    workspace = ctx.workspace.resolve()
    workspace.mkdir(parents=True, exist_ok=True)
    kind = await asyncio.to_thread(detect_sandbox, config)
    user = await asyncio.to_thread(sandbox_user, kind)
    lent = user != os.geteuid()  # root's commands run as an unprivileged uid that borrows the workspace
    root_fd = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    quota = ctx.workspace_max_bytes
    # the loan runs to its end in its thread even if this call is cancelled, and is then ended below
    loan = asyncio.ensure_future(
        asyncio.to_thread(lend_workspace if lent else _usage, root_fd, str(workspace), user)
    )
    try:
        used = await asyncio.shield(loan)
        async with call_cgroup(
            max_processes=config.max_processes, memory_bytes=config.memory_mb * 1024 * 1024
        ) as cgroup:
            memory_cgroup = cgroup is not None and "memory" in cgroup.paths
            limits = limits_for(
                config,
                timeout,
                kind,
                user=user,
                file_bytes=max(quota - used, MIN_FILE_BYTES),
                memory_cgroup=memory_cgroup,
            )
            inner, preexec_fn = limit_command(["bash", "-c", args.cmd], limits)
            argv = wrap_command(kind, inner, workspace, config)
            if cgroup is not None:
                argv = cgroup.join(argv)
            logger.debug("shell: sandbox %s, timeout %ds, command %r", kind.value, timeout, args.cmd)
            outcome = await _execute(
                argv,
                env=scrubbed_env(workspace),
                cwd=workspace,
                timeout=timeout,
                max_bytes=config.max_capture_bytes,
                preexec_fn=preexec_fn,
                cgroup=cgroup,
                quota_watch=_QuotaWatch(root_fd, max(quota, used)),
            )
            oom_kills = cgroup.oom_kills() if cgroup is not None else 0
    finally:
        try:
            await asyncio.wait([loan])
            final_used = await asyncio.to_thread(
                reclaim_workspace if lent else _usage, root_fd, str(workspace), user
            )
        finally:
            os.close(root_fd)
    memory_limit: MemoryLimit = "cgroup" if memory_cgroup else "rlimit"
    process_limit: ProcessLimit = (
        "cgroup" if cgroup is not None and "pids" in cgroup.paths else "rlimit" if user != 0 else "none"
    )
    logger.info(
        "shell: step %d call %s: exit %d after %.2fs in %s%s",
        ctx.step,
        ctx.call_id,
        outcome.exit_code,
        outcome.duration_s,
        kind.value,
        f" ({outcome.killed_reason})" if outcome.killed_reason else "",
    )
    stem = f"shell/{ctx.step}_{_UNSAFE_NAME.sub('_', ctx.call_id) or uuid.uuid4().hex[:8]}"
    return await _report(
        args.cmd,
        outcome,
        config,
        timeout=timeout,
        workspace=workspace,
        stem=stem,
        confinement={
            "sandbox": kind.value,
            "user": "root" if user == 0 else "unprivileged",
            "process_limit": process_limit,
            "memory_limit": memory_limit,
            "workspace_quota": "fsize+poll",
            "file_limit_bytes": limits.file_bytes,
            "oom_kills": oom_kills,
        },
        quota=quota,
        workspace_bytes=final_used,
        memory_mb=config.memory_mb,
    )


def _usage(root_fd: int, key: str, uid: int) -> int:
    del key, uid  # the signature of lend_workspace / reclaim_workspace, for a workspace that is not lent
    return workspace_usage(root_fd)


class _QuotaWatch:
    """Measures the workspace now and then during a call; ``run`` returns once it holds more than
    ``ceiling`` bytes (its quota, or what it held at the start when that was more already: a command
    may then clean up, not grow it)."""

    def __init__(self, root_fd: int, ceiling: int) -> None:
        self.root_fd = root_fd
        self.ceiling = ceiling
        self._walk: asyncio.Future[int] | None = None

    async def run(self) -> None:
        pause = QUOTA_POLL_S
        while True:
            await asyncio.sleep(pause)
            started = time.monotonic()
            self._walk = asyncio.ensure_future(
                asyncio.to_thread(workspace_usage, self.root_fd, stop_above=self.ceiling)
            )
            if await asyncio.shield(self._walk) > self.ceiling:
                return
            pause = max(QUOTA_POLL_S, (time.monotonic() - started) / QUOTA_POLL_SHARE)

    async def settle(self) -> None:
        """Wait for a measurement still running in its thread (it reads the workspace's descriptor)."""
        if self._walk is not None:
            with contextlib.suppress(Exception):
                await self._walk


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.0f}" if size % (1024 * 1024) == 0 else f"{size / (1024 * 1024):.1f}"


async def _report(
    cmd: str,
    outcome: _Outcome,
    config: ShellConfig,
    *,
    timeout: int,
    workspace: Path,
    stem: str,
    confinement: dict[str, str | int],
    quota: int,
    workspace_bytes: int,
    memory_mb: int,
) -> ToolResult:
    """The tagged text for the model and the data for the event log; a stream longer than its tail is
    saved whole as ``<stem>.out.txt`` / ``<stem>.err.txt`` in the workspace. ``confinement`` says what
    limits applied (it goes into the data as it is)."""
    streams = {
        "stdout": outcome.stdout.decode("utf-8", "replace"),
        "stderr": outcome.stderr.decode("utf-8", "replace"),
    }
    limit = max(0, config.output_tail_chars)
    messages: list[str] = []
    if outcome.killed_reason == "timeout":
        messages.append(
            f"Execution exceeded {timeout}s and was terminated; output printed before that is shown."
        )
    if outcome.overflowed:
        killed = " and was terminated" if outcome.killed_reason == "output_limit" else ""
        messages.append(
            f"The command printed more than {config.max_capture_bytes} bytes{killed}; "
            "output past that point was dropped."
        )
    if outcome.killed_reason == "disk_quota":
        messages.append(
            f"Stopped: the workspace went over its {_mb(quota)} MB quota ({_mb(workspace_bytes)} MB now). "
            "Delete files you no longer need (`rm`) or write less, then retry."
        )
    elif workspace_bytes >= quota:
        messages.append(
            f"The workspace is full: {_mb(workspace_bytes)} MB of its {_mb(quota)} MB quota. Writes past it "
            "fail (File too large) or stop the command; delete files you no longer need (`rm`)."
        )
    oom_kills = confinement.get("oom_kills", 0)
    if oom_kills:
        messages.append(
            f"The kernel killed {oom_kills} process(es) of this command: together they went over the "
            f"{memory_mb} MB memory limit of one call. Use less memory (smaller chunks, fewer processes)."
        )
    saved: list[str] = []
    shown: dict[str, str] = {}
    for name, text in streams.items():
        shown[name] = text[-limit:] if limit else ""
        if len(text) > limit:
            suffix = "out" if name == "stdout" else "err"
            relpath = await asyncio.to_thread(offload, text, workspace, f"{stem}.{suffix}.txt")
            saved.append(relpath)
            messages.append(
                f"{name} has {len(text)} characters; only the last {limit} are shown. The whole "
                f'{name} is saved at {relpath}: read it with file(action="read", path="{relpath}").'
            )
    echoed = cmd if len(cmd) <= CMD_ECHO_CHARS else "…" + cmd[-CMD_ECHO_CHARS:]
    text = (
        f"<cmd>{echoed}</cmd>\n<exit_code>{outcome.exit_code}</exit_code>\n"
        f"<stdout>{shown['stdout']}</stdout>\n<stderr>{shown['stderr']}</stderr>"
    )
    if messages:
        text += "\n<message>" + "\n".join(messages) + "</message>"
    return ToolResult(
        text=text,
        data={
            "exit_code": outcome.exit_code,
            "timed_out": outcome.killed_reason == "timeout",
            "killed_reason": outcome.killed_reason,
            **confinement,
            "workspace_bytes": workspace_bytes,
            "duration_s": round(outcome.duration_s, 3),
            "stdout_chars": len(streams["stdout"]),
            "stderr_chars": len(streams["stderr"]),
            "saved": saved,
        },
    )


@dataclass(slots=True)
class _Outcome:
    exit_code: int
    stdout: bytes
    stderr: bytes
    killed_reason: KilledReason | None
    overflowed: bool
    duration_s: float


async def _execute(
    argv: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    timeout: int,
    max_bytes: int,
    preexec_fn: Callable[[], None] | None,
    cgroup: CallCgroup | None,
    quota_watch: _QuotaWatch,
) -> _Outcome:
    """Run ``argv`` in a new session; stop it at ``timeout``, ``max_bytes`` of output or a workspace over
    its quota; then kill whatever it left behind, so no background process outlives the call."""
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.DEVNULL,
            stdout=out_write,
            stderr=err_write,
            cwd=cwd,
            env=env,
            start_new_session=True,
            preexec_fn=preexec_fn,
        )
    except BaseException as exc:
        os.close(out_read)
        os.close(err_read)
        if not isinstance(exc, OSError | ValueError):  # ValueError: a NUL byte in the command
            raise
        too_long = isinstance(exc, OSError) and exc.errno == errno.E2BIG
        hint = " (write the script to a file with the file tool and run that instead)" if too_long else ""
        raise ToolError(f"the command could not be started: {exc}{hint}") from exc
    finally:
        os.close(out_write)
        os.close(err_write)
    started = time.monotonic()
    capture = _Capture(out_read, err_read, max_bytes)
    exited = asyncio.ensure_future(proc.wait())
    overflow = asyncio.ensure_future(capture.overflow.wait())
    watch = asyncio.ensure_future(quota_watch.run())
    killed_reason: KilledReason | None = None
    try:
        done, _ = await asyncio.wait(
            (exited, overflow, watch), timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if exited not in done:
            killed_reason = (
                "output_limit" if overflow in done else "disk_quota" if watch in done else "timeout"
            )
    finally:
        overflow.cancel()
        watch.cancel()
        await quota_watch.settle()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the leader's group: background children included
        if cgroup is not None:
            await cgroup.kill_all()  # and anything that left the group with setsid
        exit_code = await exited
        duration = time.monotonic() - started
        await capture.finish(KILL_GRACE_S)
    return _Outcome(
        exit_code=exit_code,
        stdout=bytes(capture.buffers["stdout"]),
        stderr=bytes(capture.buffers["stderr"]),
        killed_reason=killed_reason,
        overflowed=capture.overflowed,
        duration_s=duration,
    )


class _Capture:
    """stdout and stderr read as they come, so a writer never blocks on a full pipe, under one byte budget
    shared by both; bytes past the budget are read and dropped, and ``overflow`` is set."""

    def __init__(self, stdout_fd: int, stderr_fd: int, max_bytes: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._fds = {"stdout": stdout_fd, "stderr": stderr_fd}
        self._room = max(0, max_bytes)
        self.buffers = {"stdout": bytearray(), "stderr": bytearray()}
        self.overflowed = False
        self.overflow = asyncio.Event()
        self._all_closed = asyncio.Event()
        for name, fd in self._fds.items():
            os.set_blocking(fd, False)
            self._loop.add_reader(fd, self._read, name)

    def _read(self, name: str) -> None:
        fd = self._fds.get(name)
        if fd is None:
            return
        try:
            chunk = os.read(fd, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._close(name)
            return
        if len(chunk) > self._room:
            chunk = chunk[: self._room]
            if not self.overflowed:
                self.overflowed = True
                self.overflow.set()
        self._room -= len(chunk)
        self.buffers[name] += chunk

    def _close(self, name: str) -> None:
        fd = self._fds.pop(name, None)
        if fd is not None:
            self._loop.remove_reader(fd)
            os.close(fd)
        if not self._fds:
            self._all_closed.set()

    async def finish(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for end of file on both pipes, then close them regardless."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_closed.wait(), grace)
        for name in list(self._fds):
            self._close(name)
