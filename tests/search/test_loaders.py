"""Loading the user's files: which paths count as roots, what documents each format yields, and the
fence around reading ``file://`` URLs on the fly — without an index in between."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from deepresearch.errors import URLBlocked
from deepresearch.search.loaders import (
    SUPPORTED_SUFFIXES,
    file_url_path,
    iter_files,
    load_file,
    read_file_url,
    root_of,
)
from tests.fakes.web_server import SJIS_TEXT


def test_roots_are_folders_and_supported_files(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("# Notes")
    (tmp_path / "photo.png").write_bytes(b"\x89PNG")
    assert root_of(tmp_path) == tmp_path.resolve()
    assert root_of(str(tmp_path / "notes.md")) == (tmp_path / "notes.md").resolve()
    assert root_of(tmp_path / "photo.png") is None
    assert root_of(tmp_path / "missing") is None
    assert {".docx", ".pptx", ".xlsx", ".csv", ".tsv", ".json"} <= SUPPORTED_SUFFIXES


def test_iter_files_skips_hidden_entries_and_reports_problems(tmp_path: Path) -> None:
    for name in ("a.md", ".hidden.md", ".git/config.md", "sub/b.docx", "sub/c.bin"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    errors: list[str] = []
    found = list(iter_files([tmp_path, tmp_path / "a.md", tmp_path / "sub" / "c.bin"], errors))
    assert found == [(tmp_path / "a.md").resolve(), (tmp_path / "sub" / "b.docx").resolve()]
    assert len(errors) == 1 and "unsupported file type" in errors[0]


def test_formats_become_documents_with_their_markup(tmp_path: Path) -> None:
    errors: list[str] = []
    (data,) = load_file(tmp_path / "config.json", b'{"name":"x","items":[1]}', errors)
    assert (data.markup, data.content_type, data.title) == ("text", "application/json", "config.json")
    assert data.text.startswith('{\n  "name": "x"')
    (table,) = load_file(tmp_path / "t.tsv", b"k\tv\nx\t1\n", errors)
    assert table.markup == "markdown" and table.text.startswith("| k | v |")
    (japanese,) = load_file(tmp_path / "tenki.md", f"# 天気\n\n{SJIS_TEXT}".encode("shift_jis"), errors)
    assert japanese.title == "天気" and SJIS_TEXT in japanese.text
    assert load_file(tmp_path / "empty.html", b"<html><body></body></html>", errors) == []
    assert errors == [
        f"{tmp_path / 'empty.html'}: no readable text at {(tmp_path / 'empty.html').as_uri()}: "
        "the page has no readable text (it may need JavaScript, or be a login or consent wall)"
    ]


def test_slides_and_sheets_with_the_office_extra(tmp_path: Path) -> None:
    pytest.importorskip("markitdown", reason="needs the office extra: pip install 'deepresearch[office]'")
    openpyxl = pytest.importorskip("openpyxl")
    workbook = openpyxl.Workbook()
    workbook.active.title = "Budget"
    workbook.active.append(["Team", "Cost"])
    workbook.active.append(["Search", 1200])
    buffer = io.BytesIO()
    workbook.save(buffer)
    errors: list[str] = []
    (sheet,) = load_file(tmp_path / "budget.xlsx", buffer.getvalue(), errors)
    assert errors == [] and sheet.markup == "markdown" and sheet.title == "Budget"
    assert "| Search | 1200 |" in sheet.text


def test_read_file_url_stays_inside_the_roots(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "in.md").write_text("# Inside\n\ntext")
    (tmp_path / "out.md").write_text("# Outside\n\ntext")
    single = tmp_path / "single.txt"
    single.write_text("A single file root")
    roots = [root.resolve(), single.resolve()]
    assert read_file_url((root / "in.md").as_uri(), roots).title == "Inside"
    assert read_file_url(single.as_uri(), roots).text == "A single file root"
    assert read_file_url("file://localhost" + str(root / "in.md"), roots).title == "Inside"
    for url in ((tmp_path / "out.md").as_uri(), "file:relative/in.md", root.as_uri() + "-sibling/x.md"):
        with pytest.raises(URLBlocked):
            read_file_url(url, roots)
    assert file_url_path("file:///a%20b/c.md#frag") == Path("/a b/c.md")
