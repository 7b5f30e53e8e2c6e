"""The ``file`` tool: every action, paging saved texts back, confinement to the workspace, and patch
through the tool (atomic replacement included)."""

import asyncio
import os
import re
from pathlib import Path

import pytest

import deepresearch.tools.file as file_module
from deepresearch.errors import PathOutsideWorkspace, ToolError
from deepresearch.sources import SourceRegistry
from deepresearch.tools.base import ToolContext, ToolResult
from deepresearch.tools.file import MAX_READ_CHARS, MAX_WRITE_BYTES, FileArgs, file_tool, run_file
from deepresearch.tools.truncate import clip

ACTIONS = ("read", "write", "append", "list", "stat", "patch")


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    workspace = tmp_path / "run" / "workspace"
    workspace.mkdir(parents=True)
    return ToolContext(workspace=workspace, sources=SourceRegistry(), state={})


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the workspace holding a secret the model must never reach."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("TOP SECRET\n", encoding="utf-8")
    return folder


def call(ctx: ToolContext, **kwargs: object) -> ToolResult:
    return asyncio.run(run_file(FileArgs.model_validate(kwargs), ctx))


def body(result: ToolResult) -> str:
    """The fenced content of a read result."""
    match = re.search(r"\n(`{3,})\n(.*)\n\1\n</file_result>$", result.text, re.S)
    assert match, result.text
    return match.group(2)


# -- the actions -------------------------------------------------------------------------------------


def test_tool_schema_keeps_the_frozen_interface():
    tool = file_tool()
    assert tool.name == "file" and tool.args is FileArgs and "patch" in tool.description
    params = tool.schema()["function"]["parameters"]
    assert set(params["properties"]) == {"action", "path", "content", "offset", "limit", "old", "new"}
    assert params["required"] == ["action"]
    assert params["properties"]["action"]["enum"] == list(ACTIONS)
    assert all(p.get("description") for p in params["properties"].values())


def test_write_read_roundtrip_in_nested_folders(ctx: ToolContext):
    result = call(ctx, action="write", path="notes/2024/a.md", content="héllo\nworld\n")
    assert result.text.startswith('<file_result action="write" path="notes/2024/a.md">')
    assert result.data == {
        "action": "write",
        "path": "notes/2024/a.md",
        "bytes": 13,
        "size": 13,
        "created": True,
    }
    assert (ctx.workspace / "notes/2024/a.md").read_text(encoding="utf-8") == "héllo\nworld\n"
    result = call(ctx, action="read", path="notes/2024/a.md")
    assert body(result) == "héllo\nworld\n"
    assert "characters 0–12 of 12; lines 1–2 of 2; end of file" in result.text
    assert result.data["total_chars"] == 12 and "next_offset" not in result.data
    result = call(ctx, action="write", path="./notes//2024/a.md", content="new")
    assert result.data["created"] is False and "replaced the file" in result.text
    assert body(call(ctx, action="read", path="notes/2024/a.md")) == "new"


def test_append_creates_then_extends(ctx: ToolContext):
    first = call(ctx, action="append", path="log.md", content="one\n")
    assert first.data["created"] is True and first.data["size"] == 4
    second = call(ctx, action="append", path="log.md", content="two\n")
    assert second.data == {"action": "append", "path": "log.md", "bytes": 4, "size": 8, "created": False}
    assert "appended 4 bytes" in second.text and "size now 8 bytes" in second.text
    assert (ctx.workspace / "log.md").read_text() == "one\ntwo\n"


def test_write_refuses_oversized_content_and_directories(ctx: ToolContext):
    with pytest.raises(ToolError, match="at most"):
        call(ctx, action="write", path="big.txt", content="x" * (MAX_WRITE_BYTES + 1))
    assert not (ctx.workspace / "big.txt").exists()
    (ctx.workspace / "folder").mkdir()
    with pytest.raises(ToolError, match="is a directory"):
        call(ctx, action="write", path="folder", content="x")
    (ctx.workspace / "plain").write_text("x")
    with pytest.raises(ToolError, match="is not a directory"):
        call(ctx, action="write", path="plain/child.txt", content="x")


def test_read_errors_say_what_to_do(ctx: ToolContext):
    (ctx.workspace / "folder").mkdir()
    with pytest.raises(ToolError, match=r'is a directory; use file\(action="list"'):
        call(ctx, action="read", path="folder")
    with pytest.raises(ToolError, match="no such file"):
        call(ctx, action="read", path="missing.md")
    (ctx.workspace / "empty.md").write_text("")
    assert "the file is empty" in call(ctx, action="read", path="empty.md").text
    (ctx.workspace / "short.md").write_text("abc")
    assert "past the end" in call(ctx, action="read", path="short.md", offset=10).text


def test_read_binary_file_shows_size_only(ctx: ToolContext):
    (ctx.workspace / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(500))
    result = call(ctx, action="read", path="image.png")
    assert "binary file, 516 bytes" in result.text and "PNG" not in result.text
    assert result.data["binary"] is True
    stat = call(ctx, action="stat", path="image.png")
    assert "binary file; 516 bytes" in stat.text and "chars" not in stat.data


def test_read_invalid_utf8_is_replaced_not_fatal(ctx: ToolContext):
    (ctx.workspace / "latin1.txt").write_bytes("café\n".encode("latin-1"))
    assert body(call(ctx, action="read", path="latin1.txt")) == "caf\ufffd\n"


def test_read_limit_zero_means_default_and_limit_is_capped(ctx: ToolContext):
    (ctx.workspace / "long.txt").write_text("x" * 200_000)
    assert len(body(call(ctx, action="read", path="long.txt", limit=0))) == 12_000
    result = call(ctx, action="read", path="long.txt", limit=10**9)
    assert len(body(result)) == MAX_READ_CHARS and result.data["next_offset"] == MAX_READ_CHARS
    with pytest.raises(ValueError):
        FileArgs(action="read", offset=-1)


def test_body_fence_outgrows_backticks_in_the_content(ctx: ToolContext):
    text = "code:\n```python\nprint(1)\n```\n"
    (ctx.workspace / "c.md").write_text(text)
    result = call(ctx, action="read", path="c.md")
    assert "\n````\n" in result.text and body(result) == text


@pytest.mark.parametrize(
    "text",
    [
        "\n\n".join(
            f"Paragraph {i}. " + "The quick brown fox jumps over the lazy dog. " * 20 for i in range(60)
        ),
        "\n".join(
            f"第{i}段。" + "深度研究智能体需要在长时间的任务中保存笔记和草稿，并按需读回。" * 15
            for i in range(80)
        ),
    ],
    ids=["english", "cjk"],
)
def test_paging_a_saved_long_text_back_by_character_offsets(ctx: ToolContext, text: str):
    shown, cut = clip(text, 4000, ctx.workspace, "pages/page_1.md")
    assert cut
    marker = re.search(r'file\(action="read", path="([^"]+)", offset=(\d+)\)', shown)
    assert marker
    path, offset = marker.group(1), int(marker.group(2))
    pieces = [shown[: shown.index("\n… [truncated")]]
    limit = 7000
    while True:
        result = call(ctx, action="read", path=path, offset=offset, limit=limit)
        piece = body(result)
        assert 0 < len(piece) <= limit
        assert f"characters {offset}–{offset + len(piece)} of {len(text)}" in result.text
        pieces.append(piece)
        if "next_offset" not in result.data:
            assert "end of file" in result.text
            break
        assert f"continue with offset={result.data['next_offset']}" in result.text
        offset = result.data["next_offset"]
    assert "".join(pieces) == text
    assert len(pieces) > 3


def test_read_reports_line_numbers_of_the_window(ctx: ToolContext):
    (ctx.workspace / "lines.txt").write_text("".join(f"line {i}\n" for i in range(1, 101)))
    result = call(ctx, action="read", path="lines.txt", offset=len("line 1\nline 2\n"), limit=14)
    assert body(result) == "line 3\nline 4\n"
    assert "lines 3–4 of 100" in result.text


def test_list_sorts_folders_first_and_marks_them(ctx: ToolContext):
    (ctx.workspace / "b.md").write_text("bb")
    (ctx.workspace / "A.md").write_text("a")
    (ctx.workspace / "zdir").mkdir()
    (ctx.workspace / "adir").mkdir()
    result = call(ctx, action="list")
    rows = result.text.splitlines()
    assert rows[1] == "4 entries (2 folders)" and rows[2] == "name | type | size (bytes)"
    assert rows[3:7] == ["adir/ | dir | -", "zdir/ | dir | -", "A.md | file | 1", "b.md | file | 2"]
    assert result.data == {"action": "list", "path": ".", "entries": 4, "shown": 4}
    single = call(ctx, action="list", path="b.md")
    assert "b.md | file | 2" in single.text and single.data["entries"] == 1
    with pytest.raises(ToolError, match="no such file or directory"):
        call(ctx, action="list", path="nope")


def test_list_is_capped(ctx: ToolContext):
    for i in range(230):
        (ctx.workspace / f"f{i:03d}.txt").write_text("")
    result = call(ctx, action="list")
    assert result.data == {"action": "list", "path": ".", "entries": 230, "shown": 200}
    assert (
        "… 30 more entries not shown" in result.text
        and "f199.txt" in result.text
        and "f200" not in result.text
    )


def test_stat_file_and_folder(ctx: ToolContext):
    (ctx.workspace / "r.md").write_text("日本語\nabc\nlast line without break")
    result = call(ctx, action="stat", path="r.md")
    data = result.data
    assert data["type"] == "file" and data["bytes"] == len("日本語\nabc\nlast line without break".encode())
    assert data["chars"] == 31 and data["lines"] == 3 and data["binary"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", data["modified"])
    assert f"{data['bytes']} bytes, 31 characters, 3 lines; modified {data['modified']}" in result.text
    (ctx.workspace / "d").mkdir()
    (ctx.workspace / "d" / "x").write_text("")
    folder = call(ctx, action="stat", path="d")
    assert folder.data["type"] == "dir" and folder.data["entries"] == 1 and "type: directory" in folder.text
    with pytest.raises(ToolError, match="no such file"):
        call(ctx, action="stat", path="missing")


# -- confinement -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["../x", "a/../../x", "notes/../x", "/etc/passwd", "~/.ssh", "~", "a\x00b"])
@pytest.mark.parametrize("action", ACTIONS)
def test_paths_leaving_the_workspace_are_refused(ctx: ToolContext, action: str, path: str):
    with pytest.raises(PathOutsideWorkspace, match="paths are relative to the workspace"):
        call(ctx, action=action, path=path, content="x", old="a", new="b")
    assert not (ctx.workspace.parent / "x").exists()


@pytest.mark.parametrize("action", ACTIONS)
def test_symlinked_file_pointing_outside_is_refused(ctx: ToolContext, outside: Path, action: str):
    (ctx.workspace / "link.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(PathOutsideWorkspace, match="symbolic link"):
        call(ctx, action=action, path="link.txt", content="pwned", old="TOP SECRET", new="pwned")
    assert (outside / "secret.txt").read_text() == "TOP SECRET\n"


@pytest.mark.parametrize("action", ACTIONS)
def test_symlinked_folder_pointing_outside_is_refused(ctx: ToolContext, outside: Path, action: str):
    (ctx.workspace / "data").symlink_to(outside, target_is_directory=True)
    for path in ("data", "data/secret.txt", "data/new.txt", "data/sub/new.txt"):
        with pytest.raises(PathOutsideWorkspace):
            call(ctx, action=action, path=path, content="pwned", old="TOP SECRET", new="pwned")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "TOP SECRET\n"


@pytest.mark.parametrize("action", ["write", "append", "read", "stat", "patch", "list"])
def test_dangling_symlink_pointing_outside_is_refused(ctx: ToolContext, outside: Path, action: str):
    (ctx.workspace / "dangling.txt").symlink_to(outside / "created-by-model.txt")
    with pytest.raises(PathOutsideWorkspace):
        call(ctx, action=action, path="dangling.txt", content="pwned", old="a", new="b")
    assert not (outside / "created-by-model.txt").exists()


def test_workspace_reached_through_a_symlink_still_works(ctx: ToolContext, tmp_path: Path):
    alias = tmp_path / "alias"
    alias.symlink_to(ctx.workspace, target_is_directory=True)
    linked = ToolContext(workspace=alias, sources=SourceRegistry(), state={})
    call(linked, action="write", path="deep/inside/file.md", content="ok")
    assert (ctx.workspace / "deep/inside/file.md").read_text() == "ok"


def test_symlinks_within_the_workspace_are_followed(ctx: ToolContext):
    (ctx.workspace / "real").mkdir()
    (ctx.workspace / "real" / "a.md").write_text("inside")
    (ctx.workspace / "alias").symlink_to(ctx.workspace / "real", target_is_directory=True)
    assert body(call(ctx, action="read", path="alias/a.md")) == "inside"
    call(ctx, action="append", path="alias/a.md", content=" too")
    assert (ctx.workspace / "real" / "a.md").read_text() == "inside too"
    listing = call(ctx, action="list")
    assert "alias | link | -" in listing.text and "real/ | dir | -" in listing.text


def test_listing_does_not_follow_a_link_out(ctx: ToolContext, outside: Path):
    (ctx.workspace / "out").symlink_to(outside, target_is_directory=True)
    result = call(ctx, action="list")
    assert "out | link | -" in result.text and "secret" not in result.text


# -- patch through the tool --------------------------------------------------------------------------


REPORT = (
    "# Report\n\n## Findings\n\nSales rose 12% in 2024 according to the annual filing.\n\n## Notes\n\nTBD\n"
)


def test_patch_exact(ctx: ToolContext):
    (ctx.workspace / "report.md").write_text(REPORT)
    result = call(ctx, action="patch", path="report.md", old="## Notes\n\nTBD", new="## Notes\n\nDone.")
    assert (ctx.workspace / "report.md").read_text() == REPORT.replace("TBD", "Done.")
    assert (
        "replaced lines 7–9 (matched: exact)" in result.text
        and "the text that was replaced" not in result.text
    )
    assert result.data["matched_by"] == "exact" and result.data["lines"] == [7, 9]
    assert result.data["bytes"] == len(REPORT.replace("TBD", "Done."))


def test_patch_fuzzy_shows_what_it_replaced(ctx: ToolContext):
    (ctx.workspace / "report.md").write_text(REPORT)
    old = "Sales rose 12% in 2024 acording to the anual filing."
    result = call(
        ctx, action="patch", path="report.md", old=old, new="Sales rose 14% in 2024 (annual filing)."
    )
    assert "Sales rose 14% in 2024 (annual filing).\n" in (ctx.workspace / "report.md").read_text()
    assert "matched: fuzzy, similarity 0.9" in result.text
    assert body(result) == "Sales rose 12% in 2024 according to the annual filing."
    assert result.data["matched_by"] == "fuzzy" and 0.85 <= result.data["similarity"] < 1


def test_patch_failures_leave_the_file_alone(ctx: ToolContext):
    path = ctx.workspace / "report.md"
    path.write_text(REPORT + "TBD\n")
    with pytest.raises(ToolError, match="2 times"):
        call(ctx, action="patch", path="report.md", old="TBD", new="x")
    with pytest.raises(ToolError, match="write or append"):
        call(ctx, action="patch", path="report.md", old="", new="x")
    with pytest.raises(ToolError, match="no such file"):
        call(ctx, action="patch", path="other.md", old="a", new="b")
    assert path.read_text() == REPORT + "TBD\n"


def test_patch_keeps_crlf_and_bytes_that_are_not_utf8(ctx: ToolContext):
    path = ctx.workspace / "win.txt"
    path.write_bytes(b"caf\xe9 one\r\ntwo\r\nthree\r\n")
    call(ctx, action="patch", path="win.txt", old="two\nthree\n", new="2\n3\n")
    assert path.read_bytes() == b"caf\xe9 one\r\n2\r\n3\r\n"


def test_patch_keeps_the_file_mode(ctx: ToolContext):
    path = ctx.workspace / "script.sh"
    path.write_text("echo hi\n")
    path.chmod(0o750)
    call(ctx, action="patch", path="script.sh", old="hi", new="hello")
    assert path.read_text() == "echo hello\n" and (path.stat().st_mode & 0o777) == 0o750


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_patch_is_atomic(ctx: ToolContext, monkeypatch: pytest.MonkeyPatch, failing: str):
    path = ctx.workspace / "report.md"
    path.write_text(REPORT)

    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(file_module.os, failing, fail)
    with pytest.raises(ToolError, match="the file is unchanged"):
        call(ctx, action="patch", path="report.md", old="TBD", new="Done.")
    monkeypatch.undo()
    assert path.read_text() == REPORT
    assert os.listdir(ctx.workspace) == ["report.md"]  # the temporary file is gone too


def test_patch_refuses_a_binary_file(ctx: ToolContext):
    (ctx.workspace / "b.bin").write_bytes(b"ab\x00cd")
    with pytest.raises(ToolError, match="binary"):
        call(ctx, action="patch", path="b.bin", old="ab", new="x")


def test_concurrent_patches_of_one_step_all_land(ctx: ToolContext):
    path = ctx.workspace / "report.md"
    path.write_text("".join(f"item {i}: pending\n" for i in range(20)))

    async def patch_all() -> list[ToolResult]:
        calls = [
            run_file(
                FileArgs(action="patch", path="report.md", old=f"item {i}: pending", new=f"item {i}: done"),
                ctx,
            )
            for i in range(20)
        ]
        return await asyncio.gather(*calls)

    results = asyncio.run(patch_all())
    assert all(r.data["matched_by"] == "exact" for r in results)
    assert path.read_text() == "".join(f"item {i}: done\n" for i in range(20))
