"""Workspace attacks on the ``file`` tool and the tools' own saves: a folder swapped for a link to the
host while calls are in flight, links and hard links out, FIFOs and devices, the disk quota, and the
static path tricks.

The race is the one the attack suite won on the old code: a process of the same step exchanges a
workspace folder with a link to a host folder (``renameat2(RENAME_EXCHANGE)``, atomically, in a
loop) while hundreds of ``file`` calls write, append, patch and read through the folder's name.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from deepresearch.errors import PathOutsideWorkspace, ToolError
from deepresearch.sources import SourceRegistry
from deepresearch.tools.base import ToolContext, ToolResult
from deepresearch.tools.file import FileArgs, run_file
from deepresearch.tools.truncate import offload

HOST_SECRET = "HOST-ONLY-SECRET-7f3a"
CALLS_PER_ACTION = 150

SWAPPER = textwrap.dedent(
    """
    import ctypes, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    a, b = sys.argv[1].encode(), sys.argv[2].encode()
    print("ready", flush=True)
    while True:
        if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0:
            sys.exit("renameat2 failed: errno %d" % ctypes.get_errno())
    """
)


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    workspace = tmp_path / "run" / "workspace"
    workspace.mkdir(parents=True)
    return ToolContext(workspace=workspace, sources=SourceRegistry(), state={})


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A host folder the model must never reach, holding a secret."""
    folder = tmp_path / "host"
    folder.mkdir()
    for name in ("notes.md", "secret.txt"):
        (folder / name).write_text(f"{HOST_SECRET}\n", encoding="utf-8")
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def call(ctx: ToolContext, **kwargs: object) -> ToolResult:
    return asyncio.run(run_file(FileArgs.model_validate(kwargs), ctx))


async def attempt(ctx: ToolContext, **kwargs: object) -> ToolResult | Exception:
    try:
        return await run_file(FileArgs.model_validate(kwargs), ctx)
    except (ToolError, OSError) as exc:
        return exc


def test_a_folder_swapped_for_a_host_link_mid_step_never_reaches_the_host(ctx: ToolContext, host: Path):
    folder, link = ctx.workspace / "notes", ctx.workspace / "swap"
    folder.mkdir()
    for name in ("notes.md", "secret.txt"):
        (folder / name).write_text("workspace text\n", encoding="utf-8")
    link.symlink_to(host, target_is_directory=True)
    before = snapshot(host)
    swapper = subprocess.Popen(
        [sys.executable, "-c", SWAPPER, str(folder), str(link)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert swapper.stdout is not None and swapper.stdout.readline().strip() == "ready"

        async def storm() -> list[ToolResult | Exception]:
            calls = []
            for i in range(CALLS_PER_ACTION):
                calls += [
                    attempt(ctx, action="write", path=f"notes/new{i}.md", content=f"written {i}"),
                    attempt(ctx, action="append", path="notes/notes.md", content=f"appended {i}\n"),
                    attempt(ctx, action="patch", path="notes/secret.txt", old=HOST_SECRET, new="patched"),
                    attempt(ctx, action="read", path="notes/secret.txt"),
                    attempt(ctx, action="stat", path="notes/notes.md"),
                    attempt(ctx, action="list", path="notes"),
                ]
            return await asyncio.gather(*calls)

        outcomes = asyncio.run(storm())
        assert swapper.poll() is None, "the swapper stopped early; the race did not run"
    finally:
        swapper.kill()
        swapper.wait()
        swapper.stdout.close()
    assert snapshot(host) == before, "a file call changed the host folder"
    leaked = [o for o in outcomes if isinstance(o, ToolResult) and HOST_SECRET in o.text]
    assert not leaked, f"{len(leaked)} calls returned host bytes"
    unclear = [repr(o) for o in outcomes if isinstance(o, Exception) and not isinstance(o, ToolError)]
    assert not unclear, unclear  # every refusal is a clear tool error
    assert any(isinstance(o, ToolResult) for o in outcomes), "no call got through at all"


def test_tool_saves_into_a_folder_swapped_for_a_host_link_are_refused(ctx: ToolContext, host: Path):
    """The web tool saves pages under ``pages/`` and the loop long outputs under ``tool_outputs/``."""
    before = snapshot(host)
    (ctx.workspace / "pages").symlink_to(host, target_is_directory=True)
    with pytest.raises(PathOutsideWorkspace):
        offload("page text from a hostile site", ctx.workspace, "pages/secret.txt")
    (ctx.workspace / "tool_outputs").symlink_to(host / "secret.txt")
    with pytest.raises(PathOutsideWorkspace):
        offload("long output", ctx.workspace, "tool_outputs/step001.txt")
    assert snapshot(host) == before


def test_a_hard_link_to_a_host_file_is_not_written_through(ctx: ToolContext, host: Path):
    os.link(host / "secret.txt", ctx.workspace / "linked.txt")
    for action in ("write", "append"):
        with pytest.raises(ToolError, match="hard links"):
            call(ctx, action=action, path="linked.txt", content="pwned")
    call(ctx, action="patch", path="linked.txt", old=HOST_SECRET, new="patched")  # a new file, renamed in
    assert (host / "secret.txt").read_text() == f"{HOST_SECRET}\n"
    assert (ctx.workspace / "linked.txt").read_text() == "patched\n"


@pytest.mark.parametrize("action", ["read", "stat", "write", "append", "patch"])
def test_a_fifo_in_the_workspace_is_refused_without_hanging(ctx: ToolContext, action: str):
    fifo = ctx.workspace / "pipe"
    os.mkfifo(fifo)
    rescued = threading.Event()

    def rescue() -> None:  # on code that blocks in open(), unblock it after a while so the test ends
        if not done.wait(10):
            rescued.set()
            fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
            os.close(fd)

    done = threading.Event()
    threading.Thread(target=rescue, daemon=True).start()
    try:
        with pytest.raises(ToolError, match="named pipe"):
            call(ctx, action=action, path="pipe", content="x", old="a", new="b")
    finally:
        done.set()
    assert not rescued.is_set(), "the call blocked on the FIFO"


def test_a_device_is_refused(ctx: ToolContext):
    (ctx.workspace / "dev").symlink_to("/dev/zero")  # a link out is refused before the device is met
    with pytest.raises(PathOutsideWorkspace):
        call(ctx, action="read", path="dev")
    if os.geteuid() == 0:  # only root can make device nodes
        os.mknod(ctx.workspace / "zero", 0o600 | 0o020000, os.makedev(1, 5))
        with pytest.raises(ToolError, match="a device"):
            call(ctx, action="read", path="zero")


def test_writes_past_the_workspace_quota_are_refused(ctx: ToolContext):
    quota = ToolContext(
        workspace=ctx.workspace, sources=SourceRegistry(), state={}, workspace_max_bytes=3 * 1024 * 1024
    )
    mb = "x" * (1024 * 1024)
    call(quota, action="write", path="a.txt", content=mb)
    call(quota, action="append", path="a.txt", content=mb)
    with pytest.raises(ToolError, match="quota"):
        call(quota, action="write", path="b.txt", content=mb * 2)
    with pytest.raises(ToolError, match="quota"):
        call(quota, action="append", path="a.txt", content=mb * 2)
    (ctx.workspace / "c.txt").write_text("short\n")
    with pytest.raises(ToolError, match="quota"):
        call(quota, action="patch", path="c.txt", old="short", new=mb * 2)
    call(quota, action="write", path="a.txt", content=mb)  # replacing shrinks: allowed
    assert not (ctx.workspace / "b.txt").exists()
    assert (ctx.workspace / "c.txt").read_text() == "short\n"
    assert (ctx.workspace / "a.txt").stat().st_size == len(mb)


def test_links_inside_the_workspace_resolve_beneath_it(ctx: ToolContext, host: Path):
    (ctx.workspace / "real").mkdir()
    (ctx.workspace / "real" / "a.md").write_text("inside")
    (ctx.workspace / "rel").symlink_to("real")
    (ctx.workspace / "real" / "up").symlink_to("../real/a.md")
    (ctx.workspace / "abs").symlink_to(ctx.workspace / "real" / "a.md")
    for path in ("rel/a.md", "real/up", "abs"):
        assert "inside" in call(ctx, action="read", path=path).text
    (ctx.workspace / "climb").symlink_to("real/../../../host/secret.txt")
    (ctx.workspace / "loop").symlink_to("loop")
    with pytest.raises(PathOutsideWorkspace):
        call(ctx, action="read", path="climb")
    with pytest.raises(ToolError, match="symbolic links"):
        call(ctx, action="read", path="loop")


@pytest.mark.parametrize(
    "path",
    [
        "../host/secret.txt",
        "./../host/secret.txt",
        "a/./../../host/secret.txt",
        "real/..",
        "/etc/passwd",
        "//etc/passwd",
        "~root/.bashrc",
        "~/.ssh/id_rsa",
        "secret\x00.txt",
    ],
)
@pytest.mark.parametrize("action", ["read", "write", "append", "list", "stat", "patch"])
def test_static_path_tricks_are_refused(ctx: ToolContext, host: Path, action: str, path: str):
    before = snapshot(host)
    with pytest.raises(PathOutsideWorkspace):
        call(ctx, action=action, path=path, content="pwned", old=HOST_SECRET, new="pwned")
    assert snapshot(host) == before


@pytest.mark.parametrize("path", ["%2e%2e/x", "..\\x", "․․/x", "x/..."])
def test_lookalike_names_stay_names_inside_the_workspace(ctx: ToolContext, tmp_path: Path, path: str):
    call(ctx, action="write", path=path, content="kept inside")
    assert (ctx.workspace / path).read_text() == "kept inside"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["workspace"]
