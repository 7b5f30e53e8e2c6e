"""How the local index orders hits: one per document, different pages on top, headings over body
text, and queries as people ask them ("time out" finds ``timeout``). Each corpus is a few records
written here, shaped like the debian-docs sections (one record per section, its URL with the
section's anchor)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepresearch.search import SearchHit
from deepresearch.search.authority import AuthorityList, rerank
from deepresearch.search.local import LocalIndex, Ranking, diversify_pages, page_of
from deepresearch.search.passages import build_fts_query

FILLER = (
    "The rest of this paragraph is ordinary prose that pads the record to a realistic length, "
    "so that the ranking sees passages of similar size and nothing else sets them apart."
)


def write_sections(folder: Path, sections: list[tuple[str, str, str]], name: str = "sections.jsonl") -> Path:
    """A JSONL file of ``(url, title, text)`` records, as ``index fetch debian-docs`` writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with path.open("w", encoding="utf-8") as out:
        for number, (url, title, text) in enumerate(sections):
            out.write(json.dumps({"id": str(number), "title": title, "url": url, "text": text}) + "\n")
    return path


TOPICS = [
    "bread",
    "cheese",
    "rivers",
    "castles",
    "violins",
    "glaciers",
    "orchids",
    "tramways",
    "beacons",
    "comets",
]
BACKGROUND = [
    (
        f"https://other.example/{topic}.html",
        f"Other > On {topic}",
        f"You can make a call from Python to read about {topic} and {more}. {FILLER}",
    )
    for topic in TOPICS
    for more in ("history", "care")
]
"""Twenty records for BM25's IDF (in a corpus of two records, a word in both has none); they use words
that are everywhere in a real manual ("you can", "make", "call", "Python") and none of the rarer ones."""


def build(tmp_path: Path, sections: list[tuple[str, str, str]], ranking: Ranking | None = None) -> LocalIndex:
    index = LocalIndex(tmp_path / "index.sqlite", ranking=ranking)
    background = [(f"{url}#{n}", title, text) for n, (url, title, text) in enumerate(BACKGROUND)]
    report = index.add_paths([write_sections(tmp_path / "docs", [*sections, *background])])
    assert report.errors == []
    return index


def search(index: LocalIndex, query: str, limit: int = 10) -> list[SearchHit]:
    return asyncio.run(index.search(query, limit=limit))


MANUAL = "https://docs.example.org/manual/"


def page_sections(page: str, count: int, words: str) -> list[tuple[str, str, str]]:
    """``count`` sections of one page, each with two paragraphs that both mention ``words``."""
    return [
        (
            f"{MANUAL}{page}.html#part-{i}",
            f"Manual > {page} > Part {i}",
            f"{words} {words} in part {i}. {FILLER} {FILLER}\n\n"
            f"{words} again, in a second paragraph. {FILLER} {FILLER}",
        )
        for i in range(count)
    ]


# --- one hit per document, different pages on top


@pytest.fixture
def crowded(tmp_path: Path) -> Iterator[LocalIndex]:
    """Five strong sections of ``walrus.html``, then two weaker pages that mention walruses once."""
    sections = [
        *page_sections("walrus", 5, "walrus tusks"),
        (f"{MANUAL}seals.html", "Manual > Seals", f"A walrus is no seal. {FILLER}"),
        (f"{MANUAL}ice.html#floes", "Manual > Ice > Floes", f"Ice floes carry the odd walrus. {FILLER}"),
    ]
    with build(tmp_path, sections) as index:
        yield index


def test_a_document_gives_one_hit_and_a_page_one_of_the_first_three(crowded: LocalIndex) -> None:
    hits = search(crowded, "walrus tusks")
    urls = [hit.url for hit in hits]
    assert len(urls) == len(set(urls)) == 7  # two matching paragraphs per section, one hit each
    walrus = {f"{MANUAL}walrus.html#part-{i}" for i in range(5)}
    assert urls[0] in walrus
    assert {page_of(url) for url in urls[1:3]} == {f"{MANUAL}seals.html", f"{MANUAL}ice.html"}
    # The page's other sections come after the top three: pushed down, not dropped.
    assert set(urls[3:]) == walrus - {urls[0]}
    assert [hit.rank for hit in hits] == list(range(1, 8))
    assert all(
        hit.content.startswith("walrus tusks walrus tusks in part") for hit in hits if hit.url in walrus
    )


def test_scores_never_rise_down_the_list_so_a_score_sort_keeps_the_order(crowded: LocalIndex) -> None:
    hits = search(crowded, "walrus tusks")
    scores = [hit.score or 0.0 for hit in hits]
    assert scores == sorted(scores, reverse=True) and all(score > 0 for score in scores)
    # authority.rerank orders by score; with no authority to apply it must leave the order alone.
    assert [hit.url for hit in rerank(hits, AuthorityList())] == [hit.url for hit in hits]


def test_without_other_pages_every_section_is_still_returned(tmp_path: Path) -> None:
    with build(tmp_path, page_sections("walrus", 4, "walrus tusks")) as index:
        hits = search(index, "walrus tusks")
    assert sorted(hit.url for hit in hits) == [f"{MANUAL}walrus.html#part-{i}" for i in range(4)]


def test_plain_bm25_order_is_still_available(tmp_path: Path) -> None:
    """``Ranking`` can switch both off (the retrieval benchmark's baseline): then one page fills the top."""
    sections = [
        *page_sections("walrus", 5, "walrus tusks"),
        (f"{MANUAL}seals.html", "Manual > Seals", f"A walrus is no seal. {FILLER}"),
    ]
    plain = Ranking(heading_weight=1.0, per_document=None, distinct_pages=0)
    with build(tmp_path, sections, plain) as index:
        urls = [hit.url for hit in search(index, "walrus tusks", limit=20)]
    assert len(urls) == 11 and len(set(urls)) == 6  # both paragraphs of every section
    assert {page_of(url) for url in urls[:3]} == {f"{MANUAL}walrus.html"}


def test_diversity_widens_the_candidates_when_one_page_floods_them(tmp_path: Path) -> None:
    """The best 40+ passages are sections of one page; the next pages must still reach the top three."""
    sections = [
        *page_sections("flood", 60, "zebra zebra"),
        (f"{MANUAL}other.html#a", "Manual > Other", f"One zebra among many other words. {FILLER}"),
        (f"{MANUAL}third.html", "Manual > Third", f"Another zebra in an unrelated text. {FILLER}"),
    ]
    with build(tmp_path, sections) as index:
        urls = [hit.url for hit in search(index, "zebra", limit=5)]
    assert page_of(urls[0]) == f"{MANUAL}flood.html"
    assert {page_of(url) for url in urls[1:3]} == {f"{MANUAL}other.html", f"{MANUAL}third.html"}
    assert [page_of(url) for url in urls[3:]] == [f"{MANUAL}flood.html"] * 2


def test_records_of_one_local_file_are_not_one_page(tmp_path: Path) -> None:
    """A ``file://…jsonl#id`` fragment names a record, not a section: records are never grouped."""
    folder = tmp_path / "notes"
    folder.mkdir()
    records = [
        {"id": f"n{i}", "title": f"Note {i}", "text": f"Okapi notes, number {i}. {FILLER}"} for i in range(4)
    ]
    (folder / "notes.jsonl").write_text("\n".join(json.dumps(record) for record in records))
    (folder / "zoo.md").write_text(f"# Zoo\n\nThe okapi lives in the zoo too. {FILLER} {FILLER}")
    with LocalIndex(tmp_path / "index.sqlite") as index:
        index.add_paths([folder])
        urls = [hit.url for hit in search(index, "okapi notes")]
    # Grouped as one page, three records would have made way for the zoo page.
    assert sorted(url.rsplit("/", 1)[-1] for url in urls[:4]) == [f"notes.jsonl#n{i}" for i in range(4)]
    assert urls[4].endswith("zoo.md") and len(urls) == 5
    assert page_of(urls[0]) == urls[0]


def test_diversify_pages_reorders_a_list_after_another_ranker() -> None:
    hits = [
        SearchHit(title="", url=url, score=score)
        for url, score in [
            ("https://a.example/p.html#1", 9.0),
            ("https://a.example/p.html#2", 8.0),
            ("https://a.example/p.html", 7.0),
            ("https://b.example/q.html#x", 6.0),
            ("file:///notes.jsonl#1", 5.0),
            ("file:///notes.jsonl#2", 4.0),
        ]
    ]
    ordered = diversify_pages(hits, 3)
    assert [hit.url for hit in ordered] == [
        "https://a.example/p.html#1",
        "https://b.example/q.html#x",
        "file:///notes.jsonl#1",
        "https://a.example/p.html#2",
        "https://a.example/p.html",
        "file:///notes.jsonl#2",
    ]
    assert [hit.rank for hit in ordered] == [1, 2, 3, 4, 5, 6]
    assert [hit.url for hit in diversify_pages(hits, 0)] == [hit.url for hit in hits]


def test_bad_ranking_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="per_document"):
        Ranking(per_document=0)
    with pytest.raises(ValueError, match="distinct_pages"):
        Ranking(distinct_pages=-1)


# --- headings weigh more than body text


TITLE_VS_BODY = [
    (
        f"{MANUAL}crossings.html",
        "Manual > Zebra crossings",
        "Road markings where people walk across, with the stripes painted wide and white so that drivers "
        f"see them from afar and slow down well before they reach the kerb. {FILLER}",
    ),
    (f"{MANUAL}markings.html", "Manual > Road markings", f"Paint for lanes, arrows and the zebra. {FILLER}"),
]
"""The heading match sits in a longer record, which plain BM25 holds against it."""


def test_a_heading_match_beats_a_body_only_mention(tmp_path: Path) -> None:
    with build(tmp_path, TITLE_VS_BODY) as index:
        urls = [hit.url for hit in search(index, "zebra")]
    assert urls == [f"{MANUAL}crossings.html", f"{MANUAL}markings.html"]


@pytest.mark.parametrize("heading_weight", [1.0, 0.5])
def test_the_heading_weight_is_what_decides(tmp_path: Path, heading_weight: float) -> None:
    """The same records with equal weights, or the old ones (heading 0.5): the body mention wins."""
    with build(tmp_path, TITLE_VS_BODY, Ranking(heading_weight=heading_weight)) as index:
        urls = [hit.url for hit in search(index, "zebra")]
    assert urls == [f"{MANUAL}markings.html", f"{MANUAL}crossings.html"]


def test_the_module_page_beats_a_release_note_that_narrates_it(tmp_path: Path) -> None:
    """The issue's example in miniature: "subprocess call time out" belongs to the subprocess page."""
    narration = (
        "The new subprocess module can call a program, and call() is a shortcut: you can call it "
        "with a list, and Python waits for the call to complete. The subprocess module makes it easy "
        "to call other programs from Python. "
    )
    sections = [
        (
            "https://docs.python.org/3/whatsnew/2.4.html#pep-324",
            "Python > What's New in Python 2.4 > PEP 324: New subprocess Module",
            narration + FILLER,
        ),
        (
            "https://docs.python.org/3/library/subprocess.html#subprocess.run",
            "Python > subprocess — Subprocess management > subprocess.run",
            "Run the command described by args. The timeout argument is passed to Popen.communicate(); "
            "if the timeout expires, the child process will be killed and waited for. " + FILLER,
        ),
    ]
    question = "How can I make a Python subprocess call time out?"
    with build(tmp_path, sections) as index:
        assert search(index, question)[0].url.startswith("https://docs.python.org/3/library/subprocess.html")
    old = Ranking(heading_weight=0.5, per_document=3, distinct_pages=0, question_words=False, compounds=False)
    with build(tmp_path / "old", sections, old) as index:
        assert "whatsnew" in search(index, question)[0].url


# --- queries as people ask them


def test_question_words_are_dropped_and_particles_join_their_word() -> None:
    fts = build_fts_query("How can I make a Python subprocess call time out?")
    assert fts is not None
    assert fts.terms == ["make", "python", "subprocess", "call", "time", "out", "timeout"]
    assert fts.match.endswith('"out" OR "timeout"')
    joined = build_fts_query("set up a backup: back up, shut down, log in, roll-back")
    assert joined is not None
    assert {"setup", "backup", "shutdown", "login", "rollback"} <= set(joined.terms)


@pytest.mark.parametrize("compounds", [True, False])
def test_a_split_compound_finds_the_word_the_manual_uses(tmp_path: Path, compounds: bool) -> None:
    sections = [
        (
            f"{MANUAL}wait.html",
            "Manual > Children",
            f"Wait for the child; a timeout bounds it. {FILLER}",
        ),
        (f"{MANUAL}clock.html", "Manual > Clocks", f"Wait a moment: the time printed out is local. {FILLER}"),
        # "time" and "out" are common words in a manual, "timeout" is not.
        *(
            (f"{MANUAL}trains.html#{i}", "Manual > Trains", f"Trains set out on time. {FILLER}")
            for i in range(6)
        ),
    ]
    with build(tmp_path, sections, Ranking(compounds=compounds)) as index:
        hits = search(index, "wait time out")
    expected = ["wait.html", "clock.html"] if compounds else ["clock.html", "wait.html"]
    assert [hit.url.rsplit("/", 1)[-1] for hit in hits[:2]] == expected
    if compounds:
        assert "timeout" in hits[0].snippet


def test_only_particles_join() -> None:
    """Joining any two words finds accidents: "IP address" is not the Python module ``ipaddress``."""
    fts = build_fts_query("static IP address for an Ethernet interface")
    assert fts is not None and "ipaddress" not in fts.terms
    fts = build_fts_query("How can I set up a mirror?")
    assert fts is not None and fts.terms == ["set", "up", "mirror", "setup"]


def test_old_query_building_is_still_available() -> None:
    fts = build_fts_query("How can I time out?", question_words=False, compounds=False)
    assert fts is not None and fts.terms == ["can", "i", "time", "out"]
