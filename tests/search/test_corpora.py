"""Ready-made corpora: documentation HTML cut into sections with upstream URLs, built from real ``.deb``s.

The packages are built here with ``dpkg-deb --build`` from the small Sphinx-like and DocBook-like pages
in ``tests/data/debian_docs/`` and handed to the builder through its ``downloader`` parameter, so
``dpkg -x`` really runs and nothing touches the network. The one test that runs ``apt-get download``
is opt-in (``DEEPRESEARCH_APT_TESTS=1``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from deepresearch.errors import ConfigError
from deepresearch.search.corpora import debian_docs, fetch_corpus
from deepresearch.search.corpora.html_sections import split_page
from deepresearch.search.local import LocalIndex

DATA = Path(__file__).resolve().parents[1] / "data" / "debian_docs"
PYTHON_ROOT = "usr/share/doc/python3.11/html"
POSTGRES_ROOT = "usr/share/doc/postgresql-doc-15/html"
PACKAGES = ["python3.11-doc", "postgresql-doc-15"]

needs_dpkg = pytest.mark.skipif(
    shutil.which("dpkg") is None or shutil.which("dpkg-deb") is None, reason="needs dpkg and dpkg-deb"
)


def make_deb(folder: Path, package: str, version: str, files: dict[str, bytes]) -> Path:
    """A real Debian package holding ``files`` (path inside the package → content)."""
    root = folder / f"{package}-{version}-root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: Tests <tests@example.org>\nDescription: documentation for the tests\n"
    )
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    deb = folder / f"{package}_{version}_all.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], check=True, capture_output=True
    )
    return deb


def tree(source: Path, prefix: str) -> dict[str, bytes]:
    return {f"{prefix}/{p.relative_to(source).as_posix()}": p.read_bytes() for p in source.rglob("*.html")}


class Debs:
    """A ``downloader`` that hands out prebuilt packages and counts the calls."""

    def __init__(self, debs: dict[str, Path]) -> None:
        self.debs = debs
        self.calls: list[str] = []

    def __call__(self, package: str, folder: Path) -> Path:
        self.calls.append(package)
        return self.debs[package]


@pytest.fixture
def debs(tmp_path: Path) -> Debs:
    folder = tmp_path / "built"
    folder.mkdir()
    return Debs(
        {
            "python3.11-doc": make_deb(
                folder, "python3.11-doc", "3.11.2-1", tree(DATA / "python", PYTHON_ROOT)
            ),
            "postgresql-doc-15": make_deb(
                folder, "postgresql-doc-15", "15.18-1", tree(DATA / "postgres", POSTGRES_ROOT)
            ),
        }
    )


def read_records(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- splitting one page -------------------------------------------------------------------------


def test_sphinx_page_sections_keep_titles_anchors_code_and_tables() -> None:
    page = split_page((DATA / "python" / "library" / "jobqueue.html").read_bytes(), objects=frozenset({"py"}))
    assert page.title == "jobqueue — Hand work to background workers"
    by_anchor = {section.anchor: section for section in page.sections}
    assert list(by_anchor) == ["", "jobqueue.JobQueue", "worker-pools", "jobqueue.JobQueue.submit"]
    assert by_anchor[""].path == (page.title,)
    assert by_anchor["worker-pools"].path == (page.title, "Worker pools")
    assert by_anchor["jobqueue.JobQueue.submit"].path == (
        page.title,
        "Worker pools",
        "jobqueue.JobQueue.submit",
    )
    assert by_anchor["jobqueue.JobQueue.submit"].text.startswith("`JobQueue.submit(func, *args)`\n\n")

    pools = by_anchor["worker-pools"].text
    # The text after the method description belongs to its section again, code and table included.
    assert "```python3\nimport jobqueue\n\n# three workers share the line\n" in pools
    assert "| Method | Blocks the caller |\n| --- | --- |\n| `submit()` | never |" in pools
    assert "Note\n\nHandles keep a reference" in pools
    # "Retry policies" is too short to stand alone: it joins the section it follows.
    assert pools.endswith("## Retry policies\n\nA job that raises may be tried again.")

    everything = "\n".join(section.text for section in page.sections)
    for navigation in ("Previous topic", "Next topic", "Table of Contents", "Quick search", "previous", "¶"):
        assert navigation not in everything
    assert "Copyright" not in everything
    assert "Contents" not in everything  # the page's local table of contents


def test_sphinx_objects_stay_in_their_section_unless_asked_for() -> None:
    page = split_page((DATA / "python" / "library" / "jobqueue.html").read_bytes())
    assert [section.anchor for section in page.sections] == ["", "worker-pools"]
    assert "`class jobqueue.JobQueue(workers=4)`" in page.sections[0].text
    assert "`JobQueue.submit(func, *args)`" in page.sections[1].text


def test_docbook_page_sections_take_their_div_ids_and_notes_stay_text() -> None:
    page = split_page((DATA / "postgres" / "sql-createindex.html").read_bytes())
    assert page.title == "CREATE INDEX"
    anchors = [section.anchor for section in page.sections]
    assert anchors == ["", "id-1.9.3.69.5", "id-1.9.3.69.6", "SQL-CREATEINDEX-CONCURRENTLY", "id-1.9.3.69.8"]
    top, _, parameters, concurrently, examples = page.sections
    # The synopsis has no id of its own: it stays with the top of the page.
    assert top.text.startswith("CREATE INDEX — define a new index\n\n## Synopsis\n\n```\nCREATE [ UNIQUE ]")
    assert concurrently.path == ("CREATE INDEX", "Parameters", "Building Indexes Concurrently")
    assert "Note\n\nA concurrent build that fails" in concurrently.text  # an h3 inside div.note
    assert "`CONCURRENTLY`\n\nBuilds the index while other sessions" in parameters.text
    assert "```\nCREATE INDEX CONCURRENTLY films_title_idx ON films (title);\n```" in examples.text
    assert "| `CREATE INDEX CONCURRENTLY` | no |" in examples.text
    everything = "\n".join(section.text for section in page.sections)
    assert "Prev" not in everything and "Home" not in everything and "SQL Commands" not in everything


def test_publican_anchor_inside_the_heading_and_markdown_lookalikes_escaped() -> None:
    html = """<html><head><title>6.2. apt Commands</title></head><body>
    <ul class="docnav top"><li class="previous"><a href="a.html"><strong>Prev</strong></a></li></ul>
    <div class="section"><div class="titlepage"><div><div><h2 class="title"><a id="sect.apt-get"></a>6.2. apt
    Commands</h2></div></div></div><div class="para">APT is the package tool of Debian; it fetches packages
    and what they need from the configured sources and installs them in the right order.</div>
    <div class="section"><div class="titlepage"><div><div><h3 class="title"><a id="sect.apt-update"></a>6.2.1.
    Initialization</h3></div></div></div><div class="para">Run the update first.<br/># not a heading<br/>
    ===</div><div class="para">The package lists must be fetched before anything can be
    installed, and fetching them again later picks up new versions.</div></div></div></body></html>"""
    page = split_page(html)
    assert [(s.anchor, s.title) for s in page.sections] == [
        ("", "6.2. apt Commands"),
        ("sect.apt-update", "6.2.1. Initialization"),
    ]
    assert page.sections[1].text.startswith("Run the update first.\n\\# not a heading\n\\===\n\n")
    assert "Prev" not in page.sections[0].text


def test_sections_carry_the_links_whose_text_they_hold_and_records_resolve_them() -> None:
    html = """<html><body><div class="body" role="main">
    <h1>Guide</h1><p>Start with <a href="install.html#steps">the installer</a> and read on; this
    introduction says enough words to stand as a section of its own in the page we split here.</p>
    <h2 id="use">Use</h2><p>Run it as described in <a href="../ref/cli.html">the command reference</a>,
    then <a href="#use">come back</a>; this paragraph also has enough words to stand on its own.</p>
    <p><a href="https://example.org/x">An outside page</a></p>
    </div></body></html>"""
    page = split_page(html, min_words=5, min_page_words=5)
    top, use = page.sections
    assert top.links == (("install.html#steps", "the installer"),)
    assert use.links == (
        ("../ref/cli.html", "the command reference"),
        ("https://example.org/x", "An outside page"),
    )
    package = debian_docs.DocPackage(
        "doc-x", "Doc X", "usr/share/doc/x", "https://docs.example/x/", (), frozenset()
    )
    records = list(debian_docs.page_records(package, "guide/index.html", page.sections))
    assert records[0]["links"] == [
        {"url": "https://docs.example/x/guide/install.html#steps", "text": "the installer"}
    ]
    assert records[1]["links"][0] == {
        "url": "https://docs.example/x/ref/cli.html",
        "text": "the command reference",
    }


def test_pages_that_are_only_navigation_give_nothing() -> None:
    assert split_page(b"").sections == []
    assert split_page("<html><body><nav><a href='x.html'>Next</a></nav></body></html>").sections == []
    index = split_page((DATA / "python" / "genindex.html").read_bytes())
    assert all("JobQueue" not in section.text or section.anchor for section in index.sections)


# --- the debian-docs corpus ---------------------------------------------------------------------


@needs_dpkg
def test_build_indexes_sections_under_their_upstream_urls(tmp_path: Path, debs: Debs) -> None:
    lines: list[str] = []
    with LocalIndex(tmp_path / "index.sqlite") as index:
        report = debian_docs.build(
            index=index, packages=PACKAGES, work_dir=tmp_path / "work", progress=lines.append, downloader=debs
        )
        hits = asyncio.run(
            index.search("an index build that locks writers out of a busy production database", limit=3)
        )
        api = asyncio.run(index.search("JobQueue submit QueueClosed", limit=3))

    assert [part.name for part in report.parts] == PACKAGES
    python, postgres = report.parts
    assert (python.pages, python.sections) == (1, 4)  # genindex.html and _static/ are skipped
    assert (postgres.pages, postgres.sections) == (1, 5)  # bookindex.html is skipped
    assert report.added.added == 9 and report.added.errors == []
    assert not python.reused and python.source == debs.debs["python3.11-doc"]
    assert any("splitting" in line for line in lines) and any("adding to the index" in line for line in lines)
    assert not (tmp_path / "work" / "unpacked").exists()  # unpacked trees go once split

    records = read_records(postgres.records)
    assert {tuple(record) for record in records} == {("id", "title", "url", "text", "links")}
    urls = [record["url"] for record in records]
    assert urls[0] == "https://www.postgresql.org/docs/15/sql-createindex.html"
    assert "https://www.postgresql.org/docs/15/sql-createindex.html#SQL-CREATEINDEX-CONCURRENTLY" in urls
    concurrently = records[
        urls.index("https://www.postgresql.org/docs/15/sql-createindex.html#SQL-CREATEINDEX-CONCURRENTLY")
    ]
    assert (
        concurrently["title"] == "PostgreSQL 15 > CREATE INDEX > Parameters > Building Indexes Concurrently"
    )
    assert concurrently["id"] == "postgresql-doc-15/sql-createindex.html#SQL-CREATEINDEX-CONCURRENTLY"
    python_urls = [record["url"] for record in read_records(python.records)]
    assert python_urls == [
        "https://docs.python.org/3.11/library/jobqueue.html",
        "https://docs.python.org/3.11/library/jobqueue.html#jobqueue.JobQueue",
        "https://docs.python.org/3.11/library/jobqueue.html#worker-pools",
        "https://docs.python.org/3.11/library/jobqueue.html#jobqueue.JobQueue.submit",
    ]

    assert (
        hits[0].url == "https://www.postgresql.org/docs/15/sql-createindex.html#SQL-CREATEINDEX-CONCURRENTLY"
    )
    assert hits[0].title.startswith(
        "PostgreSQL 15 > CREATE INDEX > Parameters > Building Indexes Concurrently"
    )
    assert api[0].url == "https://docs.python.org/3.11/library/jobqueue.html#jobqueue.JobQueue.submit"


@needs_dpkg
def test_rerun_reuses_the_sections_and_adds_nothing(tmp_path: Path, debs: Debs) -> None:
    work = tmp_path / "work"
    with LocalIndex(tmp_path / "index.sqlite") as index:
        first = debian_docs.build(
            index=index, packages=PACKAGES, work_dir=work, progress=None, downloader=debs
        )
        jsonl = first.parts[0].records.read_bytes()
        again = debian_docs.build(
            index=index,
            packages=PACKAGES,
            work_dir=work,
            progress=None,
            downloader=debs,
            dpkg="/nonexistent/dpkg",
        )
        assert all(part.reused for part in again.parts)  # dpkg was not even needed
        assert again.added.added == again.added.replaced == 0
        assert again.added.skipped == first.added.added == 9
        assert again.parts[0].records.read_bytes() == jsonl

        # A new package version that changes one page: only its sections are rewritten.
        files = tree(DATA / "python", PYTHON_ROOT)
        page = f"{PYTHON_ROOT}/library/jobqueue.html"
        files[page] = files[page].replace(
            b"A worker pool owns its threads", b"A worker pool keeps its threads"
        )
        debs.debs["python3.11-doc"] = make_deb(tmp_path, "python3.11-doc", "3.11.2-2", files)
        newer = debian_docs.build(
            index=index, packages=["python3.11-doc"], work_dir=work, progress=None, downloader=debs
        )
        stats = index.stats()
    assert not newer.parts[0].reused
    assert (newer.added.added, newer.added.replaced, newer.added.skipped) == (0, 1, 3)
    assert stats.documents == 9


@needs_dpkg
def test_missing_dpkg_is_a_config_error(tmp_path: Path, debs: Debs) -> None:
    with LocalIndex(tmp_path / "index.sqlite") as index, pytest.raises(ConfigError) as caught:
        debian_docs.build(
            index=index,
            packages=["postgresql-doc-15"],
            work_dir=tmp_path / "work",
            progress=None,
            downloader=debs,
            dpkg=str(tmp_path / "no-such-dpkg"),
        )
    message = str(caught.value)
    assert "no-such-dpkg" in message and "was not found" in message
    assert "Debian" in message and "deepresearch index add" in message


def test_missing_apt_get_is_a_config_error(tmp_path: Path) -> None:
    with (
        LocalIndex(tmp_path / "index.sqlite") as index,
        pytest.raises(ConfigError, match=r"apt-get` was not found"),
    ):
        debian_docs.build(
            index=index,
            packages=["debian-handbook"],
            work_dir=tmp_path / "work",
            progress=None,
            apt_get=str(tmp_path / "apt-get"),
        )
    assert (
        not (tmp_path / "index.sqlite").exists()
        or LocalIndex(tmp_path / "index.sqlite").stats().documents == 0
    )


def test_apt_failure_shows_apts_own_message(tmp_path: Path) -> None:
    fake = tmp_path / "apt-get"
    fake.write_text(
        "#!/bin/sh\necho 'Reading package lists...'\n"
        "echo 'W: Download is performed unsandboxed' >&2\n"
        'echo "E: Unable to locate package $2" >&2\nexit 100\n'
    )
    fake.chmod(0o755)
    with pytest.raises(ConfigError) as caught:
        debian_docs.apt_download("python3.11-doc", tmp_path / "debs", apt_get=str(fake))
    message = str(caught.value)
    assert "failed (exit 100): E: Unable to locate package python3.11-doc" in message
    assert "W: Download" not in message
    assert "apt-cache policy python3.11-doc" in message and "apt-get update" in message


def test_apt_download_reuses_a_package_already_downloaded(tmp_path: Path) -> None:
    folder = tmp_path / "debs"
    folder.mkdir()
    deb = folder / "debian-handbook_11.20220922_all.deb"
    deb.write_bytes(b"!<arch>\n")
    assert debian_docs.apt_download("debian-handbook", folder, apt_get=str(tmp_path / "absent")) == deb


def test_unknown_packages_are_refused_before_anything_is_downloaded(tmp_path: Path) -> None:
    downloads = Debs({})
    with LocalIndex(tmp_path / "index.sqlite") as index, pytest.raises(ConfigError) as caught:
        debian_docs.build(
            index=index,
            packages=["python3.11-doc", "libreoffice-help-en-us"],
            work_dir=tmp_path / "work",
            progress=None,
            downloader=downloads,
        )
    assert "'libreoffice-help-en-us'" in str(caught.value) and "postgresql-doc-" in str(caught.value)
    assert downloads.calls == []


def test_package_names_map_to_upstream_url_prefixes() -> None:
    newer = debian_docs.resolve_package("python3.13-doc")
    assert (newer.doc_root, newer.url_prefix) == (
        "usr/share/doc/python3.13/html",
        "https://docs.python.org/3.13/",
    )
    kernel = debian_docs.resolve_package("linux-doc-6.1")
    assert kernel.url_prefix == "https://www.kernel.org/doc/html/v6.1/" and "translations/*" in kernel.skip
    handbook = debian_docs.resolve_package("debian-handbook")
    assert handbook.doc_root.endswith("/en-US") and handbook.label == "Debian Handbook"
    assert [debian_docs.resolve_package(name).name for name in debian_docs.DEFAULT_PACKAGES] == list(
        debian_docs.DEFAULT_PACKAGES
    )


def test_fetch_corpus_refuses_an_unknown_corpus(tmp_path: Path) -> None:
    with (
        LocalIndex(tmp_path / "index.sqlite") as index,
        pytest.raises(ConfigError, match="available: debian-docs"),
    ):
        fetch_corpus("wikipedia", index=index, packages=None, work_dir=tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("DEEPRESEARCH_APT_TESTS") != "1" or shutil.which("apt-get") is None,
    reason="downloads from the Debian archive; set DEEPRESEARCH_APT_TESTS=1 on a Debian machine",
)
def test_real_apt_get_download(tmp_path: Path) -> None:
    with LocalIndex(tmp_path / "index.sqlite") as index:
        report = fetch_corpus(
            "debian-docs", index=index, packages=["postgresql-doc-15"], work_dir=tmp_path / "work"
        )
        hits = asyncio.run(index.search("build a PostgreSQL index without blocking writes", limit=5))
    assert report.parts[0].sections > 1000
    assert any(hit.url.endswith("sql-createindex.html#SQL-CREATEINDEX-CONCURRENTLY") for hit in hits)
