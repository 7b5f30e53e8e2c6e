"""The sandbox layer on its own: argv construction, the environment, rlimits, detection and its cache.

Detection runs the real tools; "not installed" and "broken" are simulated with a search path that lacks
the binary or holds a stand-in script, never by mocking subprocess.
"""

import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from deepresearch.errors import ConfigError
from deepresearch.tools.base import ShellConfig
from deepresearch.tools.cgroups import cgroup_parent
from deepresearch.tools.sandbox import (
    CPU_MARGIN_S,
    SANDBOX_UID,
    SYSTEM_PATH,
    SandboxKind,
    describe_limits,
    detect_sandbox,
    limit_command,
    limits_for,
    scrubbed_env,
    wrap_command,
)

REAL_BWRAP = shutil.which("bwrap", path=SYSTEM_PATH)
REAL_UNSHARE = shutil.which("unshare", path=SYSTEM_PATH)
REAL_SETPRIV = shutil.which("setpriv", path=SYSTEM_PATH)


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _pairs(args: list[str], flag: str) -> list[tuple[str, str]]:
    return [(args[i + 1], args[i + 2]) for i, a in enumerate(args) if a == flag]


def test_bwrap_argv_binds_system_read_only_and_workspace_read_write(tmp_path: Path) -> None:
    workspace = tmp_path / "run" / "workspace"
    workspace.mkdir(parents=True)
    config = ShellConfig(extra_ro_binds=["/opt"])
    fake = _script(tmp_path / "bin" / "bwrap", "exit 0")
    argv = wrap_command(
        SandboxKind.BWRAP, ["bash", "-c", "true"], workspace, config, search_path=str(fake.parent)
    )
    assert argv[0] == str(fake)
    assert argv[-4:] == ["--", "bash", "-c", "true"]
    for flag in ("--unshare-all", "--die-with-parent", "--new-session"):
        assert flag in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    ro = _pairs(argv, "--ro-bind")
    links = _pairs(argv, "--symlink")
    for path in ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc"):
        if os.path.islink(path):  # merged /usr: recreated as the same symlink, not bound
            assert (os.readlink(path), path) in links
        elif os.path.isdir(path):
            assert (path, path) in ro
    ro_try = _pairs(argv, "--ro-bind-try")
    assert ("/opt", "/opt") in ro_try and ("/proc/sys", "/proc/sys") in ro_try
    prefix = os.path.realpath(sys.base_prefix)
    if not prefix.startswith("/usr/"):
        assert (prefix, prefix) in ro_try
    assert _pairs(argv, "--bind") == [(str(workspace), str(workspace))]
    assert argv[argv.index("--chdir") + 1] == str(workspace)
    # /tmp is a fresh tmpfs mounted before the workspace, so a workspace under /tmp shows through it
    assert argv.index("--tmpfs") < argv.index("--bind")
    assert "/root" not in {dest for _, dest in ro + ro_try} and str(Path.home()) not in {d for _, d in ro}


@pytest.mark.skipif(
    os.geteuid() != 0 or REAL_SETPRIV is None, reason="root's commands switch uid with setpriv"
)
def test_bwrap_argv_for_root_switches_to_an_unprivileged_uid(tmp_path: Path) -> None:
    workspace = tmp_path / "deep" / "run" / "workspace"
    workspace.mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    _script(bin_dir / "bwrap", "exit 0")
    (bin_dir / "setpriv").symlink_to(REAL_SETPRIV)
    argv = wrap_command(
        SandboxKind.BWRAP, ["bash", "-c", "true"], workspace, ShellConfig(), search_path=str(bin_dir)
    )
    command = argv[argv.index("--") + 1 :]
    assert command[0] == str(bin_dir / "setpriv") and command[-3:] == ["bash", "-c", "true"]
    expected = {f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups", "--bounding-set=-all"}
    assert expected <= set(command)
    options = argv[1 : argv.index("--")]
    # no user namespace: bubblewrap started by root would map the command to host root
    assert "--unshare-all" not in options and "--unshare-user" not in options
    assert {"--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"} <= set(options)
    caps = [options[i + 1] for i, a in enumerate(options) if a == "--cap-add"]
    assert caps == ["CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP"]
    # the folders on the way to the workspace are made searchable for the other uid, before the bind
    dirs = [options[i + 3] for i, a in enumerate(options) if a == "--perms" and options[i + 2] == "--dir"]
    assert str(workspace.parent) in dirs and str(tmp_path / "deep") in dirs
    assert options.index("--bind") > max(i for i, a in enumerate(options) if a == "--dir")


def test_unshare_and_none_argv(tmp_path: Path) -> None:
    fake = _script(tmp_path / "bin" / "unshare", "exit 0")
    argv = wrap_command(
        SandboxKind.UNSHARE, ["bash", "-c", "true"], tmp_path, ShellConfig(), search_path=str(fake.parent)
    )
    assert argv[0] == str(fake) and {"--net", "--map-root-user", "--pid", "--kill-child"} <= set(argv)
    assert argv[-3:] == ["bash", "-c", "true"]
    assert wrap_command(SandboxKind.NONE, ["bash", "-c", "true"], tmp_path, ShellConfig()) == [
        "bash",
        "-c",
        "true",
    ]
    with pytest.raises(ConfigError):
        wrap_command(
            SandboxKind.BWRAP, ["true"], tmp_path, ShellConfig(), search_path=str(tmp_path / "empty")
        )


def test_env_is_built_from_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-leak")
    monkeypatch.setenv("DEEPRESEARCH_API_KEY", "dr-must-not-leak")
    env = scrubbed_env(tmp_path)
    assert env["HOME"] == str(tmp_path) and env["LC_ALL"] == "C.UTF-8" and env["TMPDIR"] == "/tmp"
    assert env["PATH"].endswith(SYSTEM_PATH)
    assert not {"OPENAI_API_KEY", "DEEPRESEARCH_API_KEY"} & set(env)
    assert not any("leak" in value for value in env.values())


def test_limits_follow_config_and_timeout() -> None:
    config = ShellConfig(memory_mb=512, max_file_mb=8, max_processes=40)
    limits = limits_for(config, 30, SandboxKind.BWRAP)
    assert limits.cpu_s == 30 + CPU_MARGIN_S
    assert limits.memory_bytes == 512 * 1024 * 1024 and limits.file_bytes == 8 * 1024 * 1024
    assert limits.processes == 40
    argv, preexec = limit_command(["bash", "-c", "true"], limits)
    assert preexec is None and Path(argv[0]).name == "prlimit"
    assert {f"--as={512 * 1024 * 1024}", f"--fsize={8 * 1024 * 1024}", "--nproc=40", "--core=0"} <= set(argv)
    assert argv[-4:] == ["--", "bash", "-c", "true"]


def test_limits_leave_memory_to_the_cgroup_and_files_to_the_space_left() -> None:
    config = ShellConfig(memory_mb=512, max_file_mb=8)
    limits = limits_for(config, 30, SandboxKind.BWRAP, file_bytes=3 * 1024 * 1024, memory_cgroup=True)
    assert limits.memory_bytes is None and limits.file_bytes == 3 * 1024 * 1024
    assert not any(arg.startswith("--as") for arg in limits.prlimit_args())
    assert limits_for(config, 30, SandboxKind.BWRAP, file_bytes=10**12).file_bytes == 8 * 1024 * 1024


def test_limits_fall_back_to_preexec_without_prlimit(tmp_path: Path) -> None:
    limits = limits_for(ShellConfig(), 5, SandboxKind.NONE)
    argv, preexec = limit_command(["bash", "-c", "true"], limits, search_path=str(tmp_path))
    assert argv == ["bash", "-c", "true"] and preexec == limits.apply


def test_none_needs_no_probe(tmp_path: Path) -> None:
    assert detect_sandbox(ShellConfig(sandbox="none"), search_path=str(tmp_path)) is SandboxKind.NONE


def test_explicit_choice_that_is_missing_raises(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="bwrap"):
        detect_sandbox(ShellConfig(sandbox="bwrap"), search_path=str(empty))
    with pytest.raises(ConfigError, match="unshare"):
        detect_sandbox(ShellConfig(sandbox="unshare"), search_path=str(empty))


def test_explicit_choice_that_is_broken_raises_and_auto_degrades(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    _script(bin_dir / "bwrap", 'echo "bwrap: No permissions to create new namespace" >&2; exit 1')
    with pytest.raises(ConfigError, match="does not work"):
        detect_sandbox(ShellConfig(sandbox="bwrap"), search_path=str(bin_dir))
    assert detect_sandbox(ShellConfig(sandbox="auto"), search_path=str(bin_dir)) is SandboxKind.NONE
    if REAL_UNSHARE is not None:  # with a working unshare beside the broken bwrap, auto takes unshare
        other = tmp_path / "other"
        _script(other / "bwrap", "exit 1")
        (other / "unshare").symlink_to(REAL_UNSHARE)
        try:
            detect_sandbox(ShellConfig(sandbox="unshare"), search_path=str(other))
        except ConfigError:
            expected = SandboxKind.NONE
        else:
            expected = SandboxKind.UNSHARE
        assert detect_sandbox(ShellConfig(sandbox="auto"), search_path=str(other)) is expected


@pytest.mark.skipif(REAL_BWRAP is None, reason="bubblewrap is not installed")
def test_detection_probes_once_per_process(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    bin_dir = tmp_path / "bin"
    _script(bin_dir / "bwrap", f'echo probe >> "{calls}"\nexec "{REAL_BWRAP}" "$@"')
    try:
        first = detect_sandbox(ShellConfig(sandbox="bwrap"), search_path=str(bin_dir))
    except ConfigError:
        pytest.skip("bubblewrap does not work on this machine")
    again = [
        detect_sandbox(ShellConfig(sandbox=s), search_path=str(bin_dir)) for s in ("bwrap", "auto", "bwrap")
    ]
    assert first is SandboxKind.BWRAP and again == [SandboxKind.BWRAP] * 3
    assert calls.read_text().splitlines() == ["probe"]


def test_describe_limits_says_what_applies_here() -> None:
    limits = describe_limits(ShellConfig(sandbox="none"), workspace_max_bytes=300 * 1024 * 1024)
    assert set(limits) == {"sandbox", "user", "memory_limit", "process_limit", "workspace_quota"}
    assert limits["sandbox"] == "none" and limits["workspace_quota"].startswith("300 MB")
    assert limits["user"].startswith("root" if os.geteuid() == 0 else f"uid {os.geteuid()}")
    memory = cgroup_parent("memory") if os.geteuid() == 0 else None
    assert limits["memory_limit"] == (f"cgroup v{memory.version}" if memory else "rlimit per process")
    assert limits["process_limit"].startswith(("cgroup v1", "cgroup v2", "rlimit", "none"))
    broken = describe_limits(ShellConfig(sandbox="bwrap"), search_path=str(Path("/nonexistent")))
    assert broken["sandbox"].startswith("error: ") and "bwrap" in broken["sandbox"]
    if REAL_SETPRIV is not None and os.geteuid() == 0:
        try:
            detect_sandbox(ShellConfig(sandbox="bwrap"))
        except ConfigError:
            return
        limits = describe_limits(ShellConfig(sandbox="bwrap"))
        assert limits["sandbox"] == "bwrap" and limits["user"].startswith(f"uid {SANDBOX_UID} (unprivileged")
