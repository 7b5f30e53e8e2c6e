"""The shell tool end to end, with real subprocesses in every sandbox this machine supports.

Time is only ever bounded from above, and generously: these run on loaded two-core machines.
"""

import asyncio
import os
import pwd
import socket
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deepresearch.errors import ConfigError, ToolError
from deepresearch.sources import SourceRegistry
from deepresearch.tools import sandbox
from deepresearch.tools.base import ShellConfig, ToolContext, ToolResult, json_schema
from deepresearch.tools.cgroups import cgroup_parent
from deepresearch.tools.sandbox import CPU_MARGIN_S
from deepresearch.tools.shell import ShellArgs, effective_timeout, run_shell, shell_tool

KINDS = ["bwrap", "unshare", "none"]
Runner = Callable[..., ToolResult]


def _require(kind: str) -> None:
    try:
        sandbox.detect_sandbox(ShellConfig(sandbox=kind))  # type: ignore[arg-type]
    except ConfigError as exc:
        pytest.skip(f"sandbox {kind} does not work here: {exc}")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "run" / "workspace"
    path.mkdir(parents=True)
    return path


def _context(workspace: Path, config: ShellConfig, call_id: str = "call:7") -> ToolContext:
    return ToolContext(
        workspace=workspace, sources=SourceRegistry(), state={}, step=4, call_id=call_id, shell=config
    )


@pytest.fixture
def run(workspace: Path) -> Runner:
    """Run one shell call: ``run(cmd, timeout=60, sandbox="none", **ShellConfig fields)``."""

    def call(cmd: str, timeout: int = 60, sandbox: str = "none", **config: Any) -> ToolResult:
        _require(sandbox)
        ctx = _context(workspace, ShellConfig(sandbox=sandbox, **config))  # type: ignore[arg-type]
        return asyncio.run(run_shell(ShellArgs(cmd=cmd, timeout=timeout), ctx))

    return call


def _block(text: str, tag: str) -> str:
    return text.split(f"<{tag}>", 1)[1].split(f"</{tag}>", 1)[0]


def _host_processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                cmdline = Path(entry.path, "cmdline").read_bytes()
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(entry.name))
    return found


def _has_pids_cgroup() -> bool:
    return os.geteuid() == 0 and cgroup_parent("pids") is not None


def _process_cap_works() -> bool:
    return os.geteuid() != 0 or _has_pids_cgroup()


# --- interface ----------------------------------------------------------------------------------------


def test_frozen_interface_and_description() -> None:
    tool = shell_tool()
    schema = json_schema(tool.args)
    assert tool.name == "shell" and set(schema["properties"]) == {"cmd", "timeout"}
    assert schema["required"] == ["cmd"] and schema["properties"]["timeout"]["default"] == 60
    assert all(p["description"] for p in schema["properties"].values())
    assert "network" in tool.description and "workspace" in tool.description and "python3" in tool.description


@pytest.mark.parametrize(("requested", "expected"), [(60, 60), (0, 600), (-3, 1), (5000, 600), (1, 1)])
def test_timeout_is_clamped(requested: int, expected: int) -> None:
    assert effective_timeout(requested, 600) == expected


def test_commands_that_cannot_start_are_refused(run: Runner) -> None:
    with pytest.raises(ToolError, match="empty"):
        run("   ")
    with pytest.raises(ToolError, match="file tool"):
        run("echo " + "x" * 200_000)  # one argument over the kernel's 128 KiB limit
    with pytest.raises(ToolError, match="could not be started"):
        run("echo a\0b")


# --- behaviour in every sandbox -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_bash_in_the_workspace_with_python(run: Runner, workspace: Path, kind: str) -> None:
    result = run(
        '[[ -n "$BASH_VERSION" ]] && echo "bash $BASH_VERSION"; pwd; echo "home=$HOME"; '
        'python3 -c "print(6 * 7)"; echo oops >&2; exit 3',
        sandbox=kind,
    )
    stdout = _block(result.text, "stdout").splitlines()
    assert stdout[0].startswith("bash ") and stdout[1] == str(workspace) and stdout[2] == f"home={workspace}"
    assert stdout[3] == "42"
    assert _block(result.text, "stderr") == "oops\n"
    assert "<exit_code>3</exit_code>" in result.text and "<message>" not in result.text
    assert not result.is_error
    assert result.data["exit_code"] == 3 and result.data["sandbox"] == kind and result.data["saved"] == []
    assert result.data["timed_out"] is False and result.data["killed_reason"] is None


@pytest.mark.parametrize("kind", KINDS)
def test_parent_environment_is_not_visible(run: Runner, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-must-not-leak")
    monkeypatch.setenv("DEEPRESEARCH_API_KEY", "dr-test-must-not-leak")
    monkeypatch.setenv("SOME_OTHER_SETTING", "also-not")
    result = run("env; cat /proc/self/environ | tr '\\0' '\\n'", sandbox=kind)
    stdout = _block(result.text, "stdout")
    assert "PATH=" in stdout and "LC_ALL=C.UTF-8" in stdout
    for leaked in ("OPENAI_API_KEY", "DEEPRESEARCH_API_KEY", "must-not-leak", "SOME_OTHER_SETTING"):
        assert leaked not in stdout


@pytest.mark.parametrize("kind", KINDS)
def test_timeout_kills_and_keeps_earlier_output(run: Runner, kind: str) -> None:
    result = run(
        "echo before; python3 -c 'print(\"py-before\")'; sleep 45; echo after", timeout=2, sandbox=kind
    )
    stdout = _block(result.text, "stdout")
    assert "before" in stdout and "py-before" in stdout and "after" not in stdout
    assert result.data["exit_code"] < 0 and "<exit_code>-" in result.text
    assert result.data["timed_out"] is True and result.data["killed_reason"] == "timeout"
    assert "Execution exceeded 2s and was terminated" in _block(result.text, "message")
    assert result.data["duration_s"] < 30


@pytest.mark.parametrize("kind", KINDS)
def test_background_children_do_not_outlive_the_call(run: Runner, kind: str) -> None:
    marker = f"{uuid.uuid4().int % 10**6 + 10**6}.5"
    cmd = f"sleep {marker} & nohup sleep {marker} >/dev/null 2>&1 & echo started"
    if kind != "none" or _has_pids_cgroup():  # a process that leaves the session is caught by the
        cmd = f"(setsid sleep {marker} &); {cmd}"  # pid namespace or the cgroup, not by the group kill
    result = run(cmd, sandbox=kind)
    assert _block(result.text, "stdout") == "started\n" and result.data["exit_code"] == 0
    assert result.data["duration_s"] < 30
    assert _host_processes_with(f"sleep\0{marker}") == []


@pytest.mark.parametrize("kind", KINDS)
def test_fork_bomb_ends_within_the_timeout(run: Runner, kind: str) -> None:
    if not _process_cap_works():
        pytest.skip("running as root without a pids cgroup: a fork bomb would exhaust the host's pids")
    result = run(":(){ :|:& };:; sleep 40; echo survived", timeout=3, sandbox=kind, max_processes=48)
    assert result.data["process_limit"] in ("cgroup", "rlimit")
    assert result.data["timed_out"] is True and result.data["exit_code"] < 0
    assert "survived" not in _block(result.text, "stdout")
    assert result.data["duration_s"] < 30
    if result.data["process_limit"] == "cgroup":
        parent = cgroup_parent("pids")
        assert parent is not None
        assert not [
            p for p in parent.path.iterdir() if p.name.startswith(f"deepresearch-shell-{os.getpid()}-")
        ]


@pytest.mark.parametrize("kind", KINDS)
def test_runaway_output_is_capped_and_saved(run: Runner, workspace: Path, kind: str) -> None:
    result = run("yes", sandbox=kind, max_capture_bytes=200_000, output_tail_chars=500)
    assert result.data["killed_reason"] == "output_limit" and result.data["timed_out"] is False
    assert result.data["exit_code"] < 0 and result.data["duration_s"] < 30
    assert _block(result.text, "stdout") == "y\n" * 250
    assert result.data["saved"] == ["shell/4_call_7.out.txt"]
    saved = workspace / "shell" / "4_call_7.out.txt"
    assert saved.stat().st_size == 200_000 and saved.read_text().startswith("y\ny\n")
    message = _block(result.text, "message")
    assert "200000 bytes" in message and 'file(action="read", path="shell/4_call_7.out.txt")' in message


# --- output handling ----------------------------------------------------------------------------------


def test_output_just_over_the_tail_is_saved_whole(run: Runner, workspace: Path) -> None:
    result = run("python3 -c \"print('a' * 1000 + 'END')\"; echo short-err >&2", output_tail_chars=1000)
    assert _block(result.text, "stdout") == "a" * 996 + "END\n"
    assert _block(result.text, "stderr") == "short-err\n"
    assert result.data["stdout_chars"] == 1004 and result.data["saved"] == ["shell/4_call_7.out.txt"]
    assert (workspace / "shell" / "4_call_7.out.txt").read_text() == "a" * 1000 + "END\n"
    assert not (workspace / "shell" / "4_call_7.err.txt").exists()
    assert "1004 characters; only the last 1000 are shown" in _block(result.text, "message")
    assert result.data["killed_reason"] is None and result.data["exit_code"] == 0


def test_both_pipes_are_drained_at_once(run: Runner) -> None:
    # a writer blocked on a full stderr pipe while we wait on stdout would hang until the timeout
    result = run(
        "head -c 3000000 /dev/zero | tr '\\0' e >&2; head -c 3000000 /dev/zero | tr '\\0' o",
        timeout=60,
        output_tail_chars=10,
    )
    assert result.data["stdout_chars"] == 3_000_000 and result.data["stderr_chars"] == 3_000_000
    assert _block(result.text, "stdout") == "o" * 10 and _block(result.text, "stderr") == "e" * 10
    assert sorted(result.data["saved"]) == ["shell/4_call_7.err.txt", "shell/4_call_7.out.txt"]
    assert result.data["timed_out"] is False and result.data["duration_s"] < 30


def test_signal_death_is_a_negative_exit_code(run: Runner) -> None:
    result = run("kill -9 $$")
    assert result.data["exit_code"] == -9 and "<exit_code>-9</exit_code>" in result.text
    assert result.data["killed_reason"] is None and not result.is_error


def test_long_command_is_echoed_by_its_tail(run: Runner) -> None:
    result = run("true " + "x" * 3000 + " ; echo done")
    assert _block(result.text, "cmd").endswith("; echo done") and len(_block(result.text, "cmd")) <= 1025


# --- confinement (bubblewrap, and the network for unshare) -----------------------------------------------


@pytest.mark.parametrize("kind", ["bwrap", "unshare"])
def test_network_is_off(run: Runner, kind: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        probe = (
            f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5); "
            "print('connected')\""
        )
        control = run(probe, sandbox="none")
        assert _block(control.text, "stdout") == "connected\n"  # the probe works when nothing blocks it
        result = run(probe, sandbox=kind)
    assert result.data["exit_code"] != 0 and "connected" not in _block(result.text, "stdout")
    assert "Error" in _block(result.text, "stderr")


def test_bwrap_hides_the_host_and_is_read_only_outside_the_workspace(run: Runner, workspace: Path) -> None:
    run_dir = workspace.parent
    (run_dir / "events.jsonl").write_text("secret run record\n")
    test_home = Path(os.environ["HOME"])  # the conftest's stand-in home
    (test_home / ".netrc").write_text("machine example.org password secret\n")
    home = Path(pwd.getpwuid(os.getuid()).pw_dir)  # and the real one
    bound = [os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)]
    allowed = {Path(p).relative_to(home).parts[0] for p in bound if Path(p).is_relative_to(home)}
    result = run(
        f"cat {test_home}/.netrc {run_dir}/events.jsonl; ls -A {home}; echo x > {run_dir}/escape.txt; "
        "echo x > /usr/escape.txt; echo x > /etc/escape.txt; echo ok > inside.txt; "
        "echo tmp > /tmp/t.txt && cat /tmp/t.txt",
        sandbox="bwrap",
    )
    stdout = _block(result.text, "stdout").splitlines()
    assert "secret run record" not in stdout and not any("password" in line for line in stdout)
    assert set(stdout[:-1]) <= allowed  # the home shows at most the way down to the interpreter
    assert stdout[-1] == "tmp"
    assert not (run_dir / "escape.txt").exists()
    assert not Path("/usr/escape.txt").exists() and not Path("/etc/escape.txt").exists()
    assert (workspace / "inside.txt").read_text() == "ok\n"
    assert "Read-only file system" in _block(result.text, "stderr")


def test_bwrap_cannot_change_host_sysctls(run: Runner) -> None:
    result = run(
        "v=$(cat /proc/sys/vm/swappiness) && echo $v > /proc/sys/vm/swappiness && echo wrote", sandbox="bwrap"
    )
    assert "wrote" not in _block(result.text, "stdout") and result.data["exit_code"] != 0


@pytest.mark.parametrize("kind", KINDS)
def test_rlimits_apply_inside(run: Runner, kind: str) -> None:
    result = run(
        "python3 -c 'b = bytearray(700 * 1024 * 1024); print(\"allocated\")'; "
        "head -c 3000000 /dev/zero > big.bin; stat -c %s big.bin; "
        "grep -E '^Max (cpu|core)' /proc/self/limits",
        timeout=20,
        sandbox=kind,
        memory_mb=256,
        max_file_mb=1,
    )
    stdout = _block(result.text, "stdout").splitlines()
    assert "allocated" not in stdout
    if result.data["memory_limit"] == "cgroup":  # the call's memory cgroup: the kernel kills the process
        assert result.data["oom_kills"] >= 1 and "Killed" in _block(result.text, "stderr")
        assert "256 MB memory limit of one call" in _block(result.text, "message")
    else:
        assert result.data["memory_limit"] == "rlimit" and "MemoryError" in _block(result.text, "stderr")
    assert stdout[0] == str(1024 * 1024)  # RLIMIT_FSIZE stopped the writer at 1 MiB
    assert stdout[1].split()[3:5] == [str(20 + CPU_MARGIN_S), str(20 + 2 * CPU_MARGIN_S)]  # RLIMIT_CPU
    assert stdout[2].split()[4:6] == ["0", "0"]  # no core dumps


def test_calls_of_one_step_run_concurrently(workspace: Path) -> None:
    config = ShellConfig(sandbox="auto")

    async def both() -> list[ToolResult]:
        calls = [("sleep 1; echo slow", "a"), ("echo fast; echo err >&2", "b")]
        return await asyncio.gather(
            *(run_shell(ShellArgs(cmd=cmd), _context(workspace, config, call_id=cid)) for cmd, cid in calls)
        )

    slow, fast = asyncio.run(both())
    assert _block(slow.text, "stdout") == "slow\n" and _block(slow.text, "stderr") == ""
    assert _block(fast.text, "stdout") == "fast\n" and _block(fast.text, "stderr") == "err\n"
    assert slow.data["sandbox"] == fast.data["sandbox"] and slow.data["duration_s"] < 30


@pytest.mark.parametrize("kind", KINDS)
def test_cancelled_call_leaves_nothing_running(workspace: Path, kind: str) -> None:
    _require(kind)
    marker = f"{uuid.uuid4().int % 10**6 + 10**6}.25"
    ctx = _context(workspace, ShellConfig(sandbox=kind))  # type: ignore[arg-type]

    async def scenario() -> None:
        task = asyncio.create_task(run_shell(ShellArgs(cmd=f"sleep {marker} & sleep {marker}"), ctx))
        running = False
        for _ in range(600):  # wait until the command runs, then cancel as the agent would
            running = bool(_host_processes_with(f"sleep\0{marker}"))
            if running:
                break
            await asyncio.sleep(0.05)
        assert running
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert _host_processes_with(f"sleep\0{marker}") == []
