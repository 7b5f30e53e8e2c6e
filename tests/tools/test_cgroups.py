"""The shell's per-call cgroups: created capped, joined by the command, emptied and removed; the parent
found on v1 and on delegated v2 (a made-up layout, since a machine has one or the other); the limit
files written for each; and folders left by a killed agent cleaned up."""

import asyncio
import os
from pathlib import Path

import pytest

from deepresearch.tools import cgroups
from deepresearch.tools.cgroups import call_cgroup, cgroup_parent


@pytest.mark.skipif(os.geteuid() != 0, reason="the call's cgroups are only used as root")
def test_call_cgroup_is_capped_and_removed() -> None:
    if cgroup_parent("pids") is None and cgroup_parent("memory") is None:
        pytest.skip("no writable pids or memory cgroup on this machine")

    async def scenario() -> list[Path]:
        async with call_cgroup(max_processes=17, memory_bytes=64 * 1024 * 1024) as cgroup:
            assert cgroup is not None
            if "pids" in cgroup.paths:
                assert (cgroup.paths["pids"] / "pids.max").read_text().strip() == "17"
            if "memory" in cgroup.paths:
                limit = "memory.limit_in_bytes" if cgroup.versions["memory"] == 1 else "memory.max"
                assert (cgroup.paths["memory"] / limit).read_text().strip() == str(64 * 1024 * 1024)
            argv = cgroup.join(["sleep", "30"])
            proc = await asyncio.create_subprocess_exec(*argv, start_new_session=True)
            for _ in range(200):
                if all((d / "cgroup.procs").read_text().split() for d in cgroup.dirs):
                    break
                await asyncio.sleep(0.01)
            for directory in cgroup.dirs:  # one process, in each of the call's cgroups
                assert (directory / "cgroup.procs").read_text().split() == [str(proc.pid)]
            paths = cgroup.dirs
        assert await asyncio.wait_for(proc.wait(), 10) == -9  # killed on leaving the block
        return paths

    paths = asyncio.run(scenario())
    assert paths and not any(path.exists() for path in paths)


def test_cgroup_parent_on_v1_and_delegated_v2(tmp_path: Path) -> None:
    """The parent is found from ``/proc/self/cgroup`` and the mount table: a v1 hierarchy that has the
    controller, or a v2 folder that delegates it (to its children, through ``cgroup.subtree_control``)."""
    v1, v2 = tmp_path / "v1-memory", tmp_path / "unified"
    (v1 / "agents" / "a1").mkdir(parents=True)
    (v2 / "user" / "agent").mkdir(parents=True)
    (v2 / "user" / "agent" / "cgroup.subtree_control").write_text("memory pids\n")
    mountinfo = (
        f"35 31 0:32 / {v1} rw,relatime - cgroup cgroup rw,memory\n"
        f"41 31 0:38 / {v2} rw,relatime - cgroup2 cgroup2 rw\n"
    )
    own = "8:pids:/\n4:memory:/agents/a1\n0::/user/agent\n"
    find = cgroups._find_cgroup_parent
    assert find("memory", own, mountinfo) == cgroups.CgroupParent(v1 / "agents" / "a1", 1)
    assert find("pids", own, mountinfo) == cgroups.CgroupParent(v2 / "user" / "agent", 2)
    (v2 / "user" / "agent" / "cgroup.subtree_control").write_text("memory\n")  # pids not delegated
    assert find("pids", own, mountinfo) is None
    assert find("memory", "0::/user/agent\n", mountinfo) == cgroups.CgroupParent(v2 / "user" / "agent", 2)


def test_limits_written_for_v1_and_v2(tmp_path: Path) -> None:
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    for folder, name in ((v1, "memory.memsw.limit_in_bytes"), (v2, "memory.swap.max")):
        folder.mkdir()
        (folder / name).write_text("max\n")
    size = 64 * 1024 * 1024
    cgroups._set_limit(v1, "memory", 1, 40, size)
    cgroups._set_limit(v2, "memory", 2, 40, size)
    cgroups._set_limit(v2, "pids", 2, 40, size)
    assert (v1 / "memory.limit_in_bytes").read_text() == f"{size}\n"
    assert (v1 / "memory.memsw.limit_in_bytes").read_text() == f"{size}\n"  # no swap beyond it
    assert (v2 / "memory.max").read_text() == f"{size}\n"
    assert (v2 / "memory.swap.max").read_text() == "0\n" and (v2 / "pids.max").read_text() == "40\n"
