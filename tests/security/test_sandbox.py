"""Attacks on the ``shell`` tool's sandbox, through the real tool with real subprocesses.

The breaks the attack suite found: a call's processes held 6 GiB together under a 2 GiB setting (the
limit was per process); ``/etc/shadow`` was readable inside bubblewrap when the agent ran as root; one
call filled the workspace with 1 GB (no quota); and a ``kill -9`` of the agent mid-call left its cgroup
folder behind for good. Then what held, kept so it keeps holding: no network, no parent environment, a
bounded fork bomb, a read-only host.

Each test skips only where this machine lacks the mechanism it is about (bubblewrap, root, a writable
cgroup); on a root machine with bubblewrap and cgroups, as in CI, they all run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deepresearch.errors import ConfigError
from deepresearch.sources import SourceRegistry
from deepresearch.tools import cgroups, sandbox
from deepresearch.tools.base import ShellConfig, ToolContext, ToolResult
from deepresearch.tools.shell import ShellArgs, run_shell

MB = 1024 * 1024
Runner = Callable[..., ToolResult]
ROOT = os.geteuid() == 0


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


def _context(workspace: Path, config: ShellConfig) -> ToolContext:
    return ToolContext(
        workspace=workspace, sources=SourceRegistry(), state={}, step=1, call_id="c1", shell=config
    )


@pytest.fixture
def run(workspace: Path) -> Runner:
    """One shell call: ``run(cmd, timeout=30, sandbox="bwrap", quota=None, **ShellConfig fields)``."""

    def call(
        cmd: str, timeout: int = 30, sandbox: str = "bwrap", quota: int | None = None, **config: Any
    ) -> ToolResult:
        _require(sandbox)
        ctx = _context(workspace, ShellConfig(sandbox=sandbox, **config))  # type: ignore[arg-type]
        if quota is not None:
            ctx.workspace_max_bytes = quota
        return asyncio.run(run_shell(ShellArgs(cmd=cmd, timeout=timeout), ctx))

    return call


def _block(text: str, tag: str) -> str:
    return text.split(f"<{tag}>", 1)[1].split(f"</{tag}>", 1)[0] if f"<{tag}>" in text else ""


def _allocated(folder: Path) -> int:
    return sum(p.lstat().st_blocks * 512 for p in folder.rglob("*") if not p.is_dir())


# --- break 7: the memory limit was per process ---------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import os, time
    block = b"x" * (100 * 1024 * 1024)  # written, so resident: not a lazy zero page
    open(os.path.join("held", str(os.getpid())), "w").close()

    def holding(pid):  # a process the kernel killed (gone, or a zombie) holds nothing any more
        try:
            return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] not in "ZX"
        except OSError:
            return False

    for _ in range(40):  # wait up to 2 s for five processes to hold their 100 MB at the same time
        if sum(holding(int(pid)) for pid in os.listdir("held")) == 5:
            print("all five hold 100 MB", flush=True)
            break
        time.sleep(0.05)
    """
)


@pytest.mark.skipif(not ROOT, reason="the call's memory cgroup is made only when the agent runs as root")
def test_memory_limit_holds_for_all_processes_of_a_call_together(run: Runner, workspace: Path) -> None:
    (workspace / "hold.py").write_text(HOLDER)
    (workspace / "held").mkdir()
    result = run("for i in 1 2 3 4 5; do python3 hold.py & done; wait", memory_mb=256)
    if result.data.get("memory_limit") == "rlimit":
        pytest.skip("no writable memory cgroup (v1 hierarchy or delegated v2) on this machine")
    stdout = _block(result.text, "stdout")
    # each process stays far under 256 MB (the old per-process limit), the five together do not
    assert "all five hold 100 MB" not in stdout
    assert result.data["memory_limit"] == "cgroup" and result.data["oom_kills"] >= 1
    assert "256 MB memory limit of one call" in _block(result.text, "message")


# --- break 8: root-only files were readable inside bubblewrap ------------------------------------------


@pytest.mark.skipif(not ROOT, reason="the break is an agent running as root")
def test_root_only_files_are_closed_while_the_workspace_stays_shared(
    run: Runner, workspace: Path, tmp_path: Path
) -> None:
    private = tmp_path / "private"  # root-only, outside the workspace, bound into the sandbox's view
    private.mkdir()
    secret = private / "key.pem"
    secret.write_text("ROOT-ONLY-SECRET\n")
    secret.chmod(0o600)
    os.link(secret, workspace / "linked.pem")  # as a root command of an earlier call could have left it
    (workspace / "agent.txt").write_text("agent\n")  # the agent's files, as the file tool writes them
    (workspace / "notes").mkdir()
    (workspace / "notes" / "a.md").write_text("a\n")
    shadow = "/etc/shadow" if Path("/etc/shadow").exists() else str(secret)
    result = run(
        f"id -u; cat {shadow}; cat {secret}; cat linked.pem; grep -E '^Cap(Eff|Prm)' /proc/self/status; "
        "echo more >> agent.txt && echo b >> notes/a.md && echo appended; "
        "echo new > made.txt && mkdir -p sub && echo deep > sub/f.txt && echo created; "
        "cp /bin/true suid && chmod 4755 suid && echo setuid; "
        "python3 -c 'import sys; print(sys.prefix)'",
        extra_ro_binds=[str(private)],
    )
    stdout = _block(result.text, "stdout").splitlines()
    stderr = _block(result.text, "stderr")
    assert stdout[0] != "0" and result.data["user"] == "unprivileged"
    assert "ROOT-ONLY-SECRET" not in result.text and "root:" not in result.text
    assert stderr.count("Permission denied") == 3  # /etc/shadow, the 0600 file, and a link to it
    assert [line.split()[1] for line in stdout[1:3]] == ["0000000000000000"] * 2  # no capabilities
    assert stdout[3:] == ["appended", "created", "setuid", sys.prefix]  # and the agent's own python3
    # the agent's files were writable inside; the command's files are the agent's again afterwards
    assert (workspace / "agent.txt").read_text() == "agent\nmore\n"
    assert (workspace / "notes" / "a.md").read_text() == "a\nb\n"
    for path in (workspace, workspace / "made.txt", workspace / "sub", workspace / "sub" / "f.txt"):
        assert path.lstat().st_uid == os.getuid()
    assert secret.stat().st_uid == 0 and stat.S_IMODE(secret.stat().st_mode) == 0o600  # not lent
    suid = (workspace / "suid").lstat()  # handing a file back must not make a setuid-root program
    assert suid.st_uid == 0 and not suid.st_mode & (stat.S_ISUID | stat.S_ISGID)
    (workspace / "made.txt").write_text("agent edit\n")  # and both ways again on the next call
    again = run("cat made.txt && echo x >> made.txt && cat sub/f.txt")
    assert _block(again.text, "stdout") == "agent edit\ndeep\n" and again.data["exit_code"] == 0
    assert (workspace / "made.txt").read_text() == "agent edit\nx\n"


# --- break 9: no disk quota for the workspace ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["bwrap", "none"])
def test_no_file_grows_past_the_space_left(run: Runner, workspace: Path, kind: str) -> None:
    quota = 20 * MB
    (workspace / "before.bin").write_bytes(b"b" * (4 * MB))
    result = run("dd if=/dev/zero of=big.bin bs=1M count=100 2>&1; echo done", sandbox=kind, quota=quota)
    assert (workspace / "big.bin").stat().st_size <= 16 * MB  # the 20 MB quota less the 4 MB already used
    assert result.data["file_limit_bytes"] <= 16 * MB and result.data["workspace_quota"] == "fsize+poll"
    assert "File size limit exceeded" in result.text or "File too large" in result.text
    assert "The workspace is full" in _block(result.text, "message")


@pytest.mark.parametrize("kind", ["bwrap", "none"])
def test_a_call_writing_many_files_is_stopped_at_the_quota(run: Runner, workspace: Path, kind: str) -> None:
    quota = 20 * MB
    result = run(
        "for i in $(seq 100); do head -c 1048576 /dev/zero > f$i.bin; sleep 0.02; done; echo finished",
        sandbox=kind,
        quota=quota,
    )
    assert result.data["killed_reason"] == "disk_quota" and "finished" not in _block(result.text, "stdout")
    assert _allocated(workspace) < quota + 25 * MB  # stopped after a bounded overshoot, not at 100 MB
    assert result.data["workspace_bytes"] > quota
    message = _block(result.text, "message")
    assert "over its 20 MB quota" in message and "rm" in message

    cleanup = run("rm f*.bin && echo cleaned", sandbox=kind, quota=quota)  # a full workspace can be emptied
    assert _block(cleanup.text, "stdout") == "cleaned\n" and cleanup.data["killed_reason"] is None
    assert cleanup.data["workspace_bytes"] < MB and "<message>" not in cleanup.text


# --- break 14: a killed agent leaked its cgroup folders ------------------------------------------------

AGENT = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from deepresearch.sources import SourceRegistry
    from deepresearch.tools.base import ShellConfig, ToolContext
    from deepresearch.tools.shell import ShellArgs, run_shell
    ctx = ToolContext(workspace=Path(sys.argv[1]), sources=SourceRegistry(), state={},
                      shell=ShellConfig(sandbox="bwrap"))
    asyncio.run(run_shell(ShellArgs(cmd="sleep " + sys.argv[2]), ctx))
    """
)


def _own_cgroup_dirs() -> list[Path]:
    """The directories of this process's cgroups in every mounted hierarchy: where the shell tool makes
    its call cgroups (found here without its help, so the test reads the old code's folders too)."""
    own = [line.split(":", 2) for line in Path("/proc/self/cgroup").read_text().splitlines()]
    found: list[Path] = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        root, mountpoint, options = fields[3], fields[4], set(tail[2].split(","))
        for _, controllers, path in own:
            v2 = controllers == ""
            if v2 != (tail[0] == "cgroup2") or not (v2 or options & set(controllers.split(","))):
                continue
            relative = path[len(root) :] if root != "/" and path.startswith(root) else path
            if (candidate := Path(mountpoint) / relative.lstrip("/")).is_dir():
                found.append(candidate)
    return list(dict.fromkeys(found))


def _folders(prefix: str) -> list[Path]:
    return [p for d in _own_cgroup_dirs() for p in d.glob(f"{prefix}*") if p.is_dir()]


def _procs(folder: Path) -> list[str]:
    try:
        return (folder / "cgroup.procs").read_text().split()
    except OSError:
        return []


@pytest.mark.skipif(not ROOT, reason="the call's cgroups are made only when the agent runs as root")
def test_cgroups_left_by_a_killed_agent_are_removed_by_the_next_call(run: Runner, workspace: Path) -> None:
    _require("bwrap")
    marker = f"{uuid.uuid4().int % 10**6 + 10**6}.75"
    src = Path(sandbox.__file__).parents[2]
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT, str(workspace), marker],
        env={**os.environ, "PYTHONPATH": str(src)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        prefix = f"deepresearch-shell-{agent.pid}-"
        deadline = time.monotonic() + 30
        while not any(_procs(p) for p in _folders(prefix)) and time.monotonic() < deadline:
            time.sleep(0.05)
        leaked = _folders(prefix)
        if not leaked:
            pytest.skip("no writable cgroup on this machine: the shell call made none")
    finally:
        agent.send_signal(signal.SIGKILL)  # kill -9 mid-command
        agent.wait(10)
    dead = subprocess.Popen(["true"])
    dead.wait(10)
    stale = []  # and one more per parent, empty, as a crash of an older agent left it
    for parent in dict.fromkeys(p.parent for p in leaked):
        folder = parent / f"deepresearch-shell-{dead.pid}-0ldcrash"
        folder.mkdir()
        stale.append(folder)
    try:
        deadline = time.monotonic() + 10  # bubblewrap dies with its parent: the folders empty out
        while any(_procs(p) for p in leaked) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(p.exists() for p in leaked + stale)

        result = run("echo next")
        assert _block(result.text, "stdout") == "next\n"
        assert [p for p in leaked + stale if p.exists()] == []
        assert _folders(f"deepresearch-shell-{os.getpid()}-") == []  # the call removed its own too
    finally:
        for folder in leaked + stale:  # leave the machine as it was, whatever happened: the processes
            for pid in _procs(folder):  # left are the killed agent's command (a sandbox that did not
                with contextlib.suppress(ProcessLookupError):  # die with its parent)
                    os.kill(int(pid), signal.SIGKILL)
            for _ in range(100):
                if not folder.exists() or not _procs(folder):
                    break
                time.sleep(0.05)
            if folder.exists():
                folder.rmdir()


def test_a_folder_whose_creator_lives_is_kept(tmp_path: Path) -> None:
    """The clean-up takes only folders of dead creators: a running agent's cgroup stays (checked on a
    plain folder, which is what the clean-up sees of a cgroup's directory)."""
    dead = subprocess.Popen(["true"])
    dead.wait(10)
    alive = tmp_path / f"deepresearch-shell-{os.getpid()}-live"
    gone = tmp_path / f"deepresearch-shell-{dead.pid}-gone"
    busy = tmp_path / f"deepresearch-shell-{dead.pid}-busy"
    other = tmp_path / f"not-ours-{dead.pid}-x"
    for folder in (alive, gone, busy, other):
        folder.mkdir()
    (busy / "cgroup.procs").write_text("1\n")  # still holds a process: not removed
    assert cgroups.remove_stale_cgroups(tmp_path) == [gone.name]
    assert alive.exists() and busy.exists() and other.exists() and not gone.exists()


# --- what held: kept as tests so that it keeps holding ----------------------------------------------------


def test_no_network_inside_bubblewrap(run: Runner) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        probe = (
            f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5); "
            "print('connected')\""
        )
        assert _block(run(probe, sandbox="none").text, "stdout") == "connected\n"  # the probe works
        result = run(probe)
    assert "connected" not in _block(result.text, "stdout") and result.data["exit_code"] != 0


@pytest.mark.parametrize("kind", ["bwrap", "none"])
def test_parent_secrets_are_not_in_the_environment(
    run: Runner, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-attack-suite-secret")
    monkeypatch.setenv("SEARCH_TOKEN", "token-attack-suite-secret")
    result = run("env; cat /proc/self/environ", sandbox=kind)
    assert "PATH=" in _block(result.text, "stdout") and "attack-suite-secret" not in result.text


def test_fork_bomb_is_bounded(run: Runner) -> None:
    result = run(":(){ :|:& };:; sleep 40; echo survived", timeout=3, max_processes=48)
    assert result.data["process_limit"] in ("cgroup", "rlimit")
    assert result.data["timed_out"] is True and "survived" not in _block(result.text, "stdout")
    assert result.data["duration_s"] < 30


def test_writes_outside_the_workspace_fail(run: Runner, workspace: Path) -> None:
    run_dir = workspace.parent
    result = run(
        f"echo x > {run_dir}/escape.txt; echo x > /etc/escape.txt; echo x > /usr/escape.txt; "
        "echo x > /proc/sys/vm/swappiness; echo ok > inside.txt"
    )
    assert not (run_dir / "escape.txt").exists() and not Path("/etc/escape.txt").exists()
    assert not Path("/usr/escape.txt").exists() and (workspace / "inside.txt").read_text() == "ok\n"
    assert "Read-only file system" in _block(result.text, "stderr")
