"""Links between indexed documents: what counts as a link in HTML, Markdown and JSONL, how the index
keeps them (``m005_links``), and that an index made before links were kept still opens and gets them
when its folder is added again."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from deepresearch.search.loaders import Link, html_links, load_file, markdown_links
from deepresearch.search.local import LinkedDocument, LocalIndex

BODY = "This page explains one part of the system in enough words to be indexed as a real document. " * 3


def page(title: str, links: str) -> str:
    return (
        f"<html><head><title>{title}</title></head><body><h1>{title}</h1><p>{BODY}</p>{links}</body></html>"
    )


def linked_folder(root: Path) -> Path:
    """a.html → b.html, docs/c.md, outside; b.html → a.html; docs/c.md → ../b.html; lonely.html → nothing."""
    (root / "docs").mkdir(parents=True)
    (root / "a.html").write_text(
        page(
            "Alpha",
            '<a href="b.html#setup">Beta setup</a> <a href="docs/c.md">Gamma notes</a>'
            ' <a href="https://example.org/x">outside</a> <a href="mailto:a@b.c">mail</a>',
        )
    )
    (root / "b.html").write_text(page("Beta", '<a href="./a.html">back to Alpha</a>'))
    (root / "docs" / "c.md").write_text(
        f"# Gamma\n\n{BODY}\n\nSee [the beta page](../b.html) and ![x](pic.png)."
    )
    (root / "lonely.html").write_text(page("Lonely", ""))
    return root


def test_html_links_are_resolved_without_fragments_and_without_mail_or_the_page_itself() -> None:
    links = html_links(
        '<a href="b.html#x">B</a><a href="B.html"></a><a href="b.html">again</a><a href="mailto:x@y.z">m</a>'
        '<a href="a.html#top">self</a><a href="/root.html" title="Root page"></a>'
        '<a href="javascript:go()">j</a>'
        '<a href="http://h.org/p?q=1#f">H</a><a href="%E4%B8%AD.html">中文</a>',
        "file:///d/a.html",
    )
    assert links == [
        Link("file:///d/b.html", "B"),
        Link("file:///d/B.html", ""),
        Link("file:///root.html", "Root page"),
        Link("http://h.org/p?q=1", "H"),
        Link("file:///d/%E4%B8%AD.html", "中文"),
    ]
    assert html_links(b"", "file:///d/a.html") == []
    declared = html_links(
        '<head><base href="https://site.org/docs/"></head><a href="x.html">X</a>', "file:///d"
    )
    assert declared == [Link("https://site.org/docs/x.html", "X")]


def test_markdown_links_skip_images_and_keep_titles_out() -> None:
    text = 'See [one](one.md#part), ![pic](pic.png), [two](<two words.md> "Two") and [web](https://w.org/a).'
    assert markdown_links(text, "https://site.org/guide/index.md") == [
        Link("https://site.org/guide/one.md", "one"),
        Link("https://site.org/guide/two words.md", "two"),
        Link("https://w.org/a", "web"),
    ]


def test_documents_carry_links_from_each_format(tmp_path: Path) -> None:
    folder = linked_folder(tmp_path / "site")
    errors: list[str] = []
    (alpha,) = load_file(folder / "a.html", (folder / "a.html").read_bytes(), errors)
    assert [link.url for link in alpha.links] == [
        (folder / "b.html").as_uri(),
        (folder / "docs" / "c.md").as_uri(),
        "https://example.org/x",
    ]
    assert alpha.links[0].text == "Beta setup"
    (gamma,) = load_file(folder / "docs" / "c.md", (folder / "docs" / "c.md").read_bytes(), errors)
    assert gamma.links == [Link((folder / "b.html").as_uri(), "the beta page")]
    records = [
        {
            "id": "1",
            "url": "https://s.org/a/one",
            "text": "One [two](two#x).",
            "links": ["three", {"url": "/4"}],
        },
        {"id": "2", "text": "No links here.", "links": "not a list"},
    ]
    data = "\n".join(json.dumps(record) for record in records).encode()
    one, two = load_file(tmp_path / "r.jsonl", data, errors)
    assert [link.url for link in one.links] == [
        "https://s.org/a/three",
        "https://s.org/4",
        "https://s.org/a/two",
    ]
    assert two.links == [] and errors == []


def test_the_index_answers_which_indexed_documents_a_document_links_to(tmp_path: Path) -> None:
    folder = linked_folder(tmp_path / "site")
    with LocalIndex(tmp_path / "index.sqlite") as index:
        assert index.add_paths([folder]).errors == []
        assert index.has_links()
        a, b, c = ((folder / name).as_uri() for name in ("a.html", "b.html", "docs/c.md"))
        assert index.links_from(a) == [
            LinkedDocument(b, "Beta", "Beta setup"),
            LinkedDocument(c, "Gamma", "Gamma notes"),
        ]
        assert index.links_from(c) == [LinkedDocument(b, "Beta", "the beta page")]
        assert index.links_from((folder / "lonely.html").as_uri()) == []
        assert index.links_from("https://not.indexed/") == []
        starts = index.random_documents(10, seed=3)
        assert sorted(starts) == sorted([a, b, c])  # lonely.html links nowhere, so no walk starts there
        assert index.random_documents(2, seed=3) == starts[:2]
        assert index.random_documents(10, seed=3) == starts
        assert len(index.random_documents(10, seed=3, linked=False)) == 4
        index.remove([c])
        assert index.links_from(a) == [LinkedDocument(b, "Beta", "Beta setup")]
        with sqlite3.connect(index.path) as db:
            assert db.execute(
                "SELECT count(*) FROM links WHERE target = 'https://example.org/x'"
            ).fetchone() == (1,)
            orphans = db.execute(
                "SELECT count(*) FROM links WHERE document_id NOT IN (SELECT id FROM documents)"
            )
            assert orphans.fetchone() == (0,)
        db.close()


def test_an_index_made_before_links_opens_and_gets_links_when_added_again(tmp_path: Path) -> None:
    folder = linked_folder(tmp_path / "site")
    path = tmp_path / "index.sqlite"
    with LocalIndex(path) as index:
        index.add_paths([folder])
    with sqlite3.connect(path) as db:  # back to the schema before m005_links
        db.execute("DROP TABLE links")
        db.execute("DELETE FROM migrations WHERE name = 'm005_links'")
    db.close()
    with LocalIndex(path) as old:
        assert not old.has_links()
        assert old.random_documents(5) == []
        assert [hit.title for hit in asyncio.run(old.search("Beta", limit=3))]
        report = old.add_paths([folder])
        assert report.skipped == 4 and report.added == 0  # nothing re-indexed, only links recorded
        assert old.has_links()
        assert [d.url for d in old.links_from((folder / "b.html").as_uri())] == [(folder / "a.html").as_uri()]
