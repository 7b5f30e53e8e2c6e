"""Authority-aware re-ranking: the pattern rules, the user file, the ordering guarantee, the wrapper."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from deepresearch.errors import ConfigError
from deepresearch.search import DocumentStore, SearchBackend, SearchHit
from deepresearch.search.authority import (
    DEFAULT_MARGIN,
    AuthorityList,
    AuthorityRanked,
    parse_authority_yaml,
    parse_pattern,
    relevance,
    rerank,
)
from deepresearch.search.local import LocalIndex

# A small list of our own, so ordering tests do not move when the shipped list is edited.
SMALL_LIST = """
categories:
  government: {weight: 1.0, domains: ["*.gov", "*.gov.*"]}
  docs: {weight: 0.8, domains: [docs.python.org]}
  reference: {weight: 0.3, domains: [wikipedia.org]}
demote: [contentfarm.example, spam.example]
"""


@pytest.fixture(scope="module")
def small() -> AuthorityList:
    return AuthorityList(parse_authority_yaml(SMALL_LIST, "small.yaml"))


@pytest.fixture(scope="module")
def shipped() -> AuthorityList:
    return AuthorityList.load()


def hit(url: str, score: float | None = None, rank: int = 0) -> SearchHit:
    return SearchHit(title=url, url=url, score=score, rank=rank)


def urls(hits: list[SearchHit]) -> list[str]:
    return [h.url for h in hits]


# --- the shipped list and the pattern rules


def test_shipped_list_loads_with_every_category(shipped: AuthorityList) -> None:
    categories = {rule.category for rule in shipped.rules}
    assert {
        "government",
        "intergovernmental",
        "standards",
        "journals_and_preprints",
        "official_docs",
        "reference",
        "demote",
    } <= categories
    assert len(shipped.rules) > 250
    assert all(-1.0 <= rule.weight <= 1.0 for rule in shipped.rules)
    assert sum(1 for rule in shipped.rules if rule.category == "demote") >= 30
    assert all(rule.source.endswith("authority.yaml") for rule in shipped.rules)
    weights = {rule.category: rule.weight for rule in shipped.rules}
    assert weights["reference"] < weights["journals_and_preprints"] < weights["government"]


@pytest.mark.parametrize(
    ("url", "category"),
    [
        ("https://www.nasa.gov/missions", "government"),  # *.gov
        ("https://www.gov.uk/guidance", "government"),  # *.gov.* with a country code
        ("https://gov.uk", "government"),  # the leading *. also matches the bare domain
        ("https://data.gov.au/dataset/x", "government"),
        ("https://www.bmwk.bund.de/x", "government"),
        ("https://www.who.int/news", "intergovernmental"),
        ("https://www.oecd.org/en/data.html", "intergovernmental"),
        ("https://datatracker.ietf.org/doc/rfc9309/", "standards"),
        ("https://www.nist.gov/publications", "standards"),  # nist.gov beats *.gov
        ("https://pubmed.ncbi.nlm.nih.gov/123/", "journals_and_preprints"),
        ("https://arxiv.org/abs/2401.00001", "journals_and_preprints"),
        ("https://docs.python.org/3/library/sqlite3.html", "official_docs"),
        ("https://www.postgresql.org/docs/16/indexes.html", "official_docs"),  # host + path rule
        ("https://en.wikipedia.org/wiki/Okapi_BM25", "reference"),
        ("https://dictionary.cambridge.org/dictionary/english/x", "reference"),  # beats cambridge.org
        ("https://www.cambridge.org/core/journals/x", "journals_and_preprints"),
        ("https://www.ox.ac.uk/research", "academic"),
        ("https://www.ehow.com/how_123.html", "demote"),
        ("HTTPS://WWW.EHOW.COM.:443/x", "demote"),  # case, trailing dot and port do not matter
    ],
)
def test_shipped_list_classifies(shipped: AuthorityList, url: str, category: str) -> None:
    rule = shipped.match(url)
    assert rule is not None and rule.category == category, (url, rule)
    assert shipped.weight(url) == rule.weight
    assert (rule.weight < 0) == (category == "demote")


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/page",
        "https://www.postgresql.org/about/",  # the docs rule has a path prefix
        "https://www.postgresql.org/docsearch",  # …that matches whole path segments only
        "https://gov.io/x",  # .io is sold as a generic name: not a country here
        "https://portal.gov.co.example.net/",  # gov.co inside another domain
        "https://notgov.uk/",  # a label is matched whole
        "file:///home/me/notes.md",
        "https://127.0.0.1:8000/",
        "not a url",
        "",
    ],
)
def test_unlisted_urls_weigh_nothing(shipped: AuthorityList, url: str) -> None:
    assert shipped.match(url) is None
    assert shipped.weight(url) == 0.0


def test_exact_host_rules_do_not_cover_subdomains() -> None:
    authority = AuthorityList(
        parse_authority_yaml(
            "categories:\n"
            "  a: {weight: 0.5, domains: [example.org]}\n"
            "  b: {weight: 0.9, domains: ['=www.example.org']}",
            "t.yaml",
        )
    )
    assert authority.weight("https://www.example.org/") == 0.9  # exact beats domain at equal labels
    assert authority.weight("https://a.www.example.org/") == 0.5
    assert authority.weight("https://example.org/") == 0.5


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("example.org", ("domain", ("example", "org"), "")),
        ("*.example.org", ("domain", ("example", "org"), "")),
        ("=Docs.Example.org", ("exact", ("docs", "example", "org"), "")),
        ("*.gov.*", ("country", ("gov",), "")),
        ("postgresql.org/docs/", ("domain", ("postgresql", "org"), "/docs")),
    ],
)
def test_parse_pattern(pattern: str, expected: tuple[str, tuple[str, ...], str]) -> None:
    assert parse_pattern(pattern) == expected


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("gov.*.uk", "'*' may only stand first"),
        ("*", "'*' may only stand first"),
        ("exa mple.org", "not a valid host label"),
        ("example..org", "not a valid host label"),
        ("-bad.org", "not a valid host label"),
    ],
)
def test_bad_patterns_are_config_errors(pattern: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        parse_pattern(pattern)


# --- the user file


def test_user_file_adds_domains_demotions_and_overrides(tmp_path: Path) -> None:
    user = tmp_path / "authority.yaml"
    user.write_text(
        "categories:\n"
        "  company_wiki:\n"
        "    weight: 0.9\n"
        "    domains: [wiki.corp.example]\n"
        "  official_docs:\n"  # a shipped category: domains added, weight inherited
        "    domains: [docs.internal.example]\n"
        "  reference:\n"  # a new weight for a whole shipped category
        "    weight: 0.1\n"
        "  neutral:\n"  # re-listing a shipped pattern overrides it (same specificity, read later)
        "    weight: 0\n"
        "    domains: [pinterest.com]\n"
        "demote:\n"
        "  - seo-listicles.example\n"
        "  - docs.python.org/2\n",  # more specific than the shipped python.org
        encoding="utf-8",
    )
    authority = AuthorityList.load(user)
    assert authority.weight("https://wiki.corp.example/page") == 0.9
    assert authority.weight("https://docs.internal.example/x") == 0.8
    assert authority.weight("https://en.wikipedia.org/wiki/X") == 0.1
    assert authority.weight("https://www.pinterest.com/pin/1") == 0.0
    assert authority.weight("https://blog.seo-listicles.example/top-10") == -1.0
    assert authority.weight("https://docs.python.org/2/library/os.html") == -1.0
    assert authority.weight("https://docs.python.org/3/library/os.html") == 0.8
    rule = authority.match("https://seo-listicles.example/")
    assert rule is not None and rule.source == str(user)
    # The shipped list is untouched for the next caller.
    assert AuthorityList.load().weight("https://en.wikipedia.org/wiki/X") == 0.3


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("categories:\n  a: {weight: 1, domains: [x.org]\n", "not valid YAML \\(line 3, column 1"),
        ("categories: [x.org]\n", "'categories' must map names"),
        ("- x.org\n", "expected a mapping"),
        ("sites: [x.org]\n", "unknown key\\(s\\) sites"),
        (
            "categories:\n  a: {weight: 2, domains: [x.org]}\n",
            "category 'a': weight must be a number between",
        ),
        ("categories:\n  a: {weight: yes, domains: [x.org]}\n", "weight must be a number"),
        ("categories:\n  new: {domains: [x.org]}\n", "category 'new': a new category needs a 'weight'"),
        ("categories:\n  a: {weight: 1, domains: x.org}\n", "expected a list of domain patterns"),
        ("categories:\n  a: {weight: 1, sites: [x.org]}\n", "unknown key\\(s\\) sites"),
        ("categories:\n  a: {weight: 1, domains: [gov.*.uk]}\n", "bad pattern 'gov.\\*.uk'"),
        ("demote: [x.org, 3]\n", "demote: 3 is not a domain pattern"),
        ("categories:\n  a: {weight: 1, domains: [x.org]}\ndemote: [X.org]\n", "already listed under a"),
        ("categories:\n  demote: {weight: -1, domains: [x.org]}\n", "reserved"),
    ],
)
def test_malformed_user_file_names_the_file_and_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    user = tmp_path / "my-authority.yaml"
    user.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=problem) as caught:
        AuthorityList.load(user)
    assert str(user) in str(caught.value)


def test_missing_user_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it") as caught:
        AuthorityList.load(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(caught.value)


def test_empty_user_file_changes_nothing(tmp_path: Path, shipped: AuthorityList) -> None:
    user = tmp_path / "empty.yaml"
    user.write_text("# nothing yet\n", encoding="utf-8")
    assert len(AuthorityList.load(user).rules) == len(shipped.rules)


# --- relevance and ordering


def test_relevance_from_scores_is_relative_to_the_best_hit() -> None:
    hits = [hit("a", 8.0), hit("b", 6.0), hit("c", 2.0)]
    assert relevance(hits) == [1.0, 0.75, 0.25]
    assert relevance([hit("a", 3.0), hit("b", 3.0)]) == [1.0, 1.0]
    # Negative scores: the lowest becomes 0.
    assert relevance([hit("a", -1.0), hit("b", -3.0), hit("c", -5.0)]) == [1.0, 0.5, 0.0]
    assert relevance([]) == []


def test_relevance_falls_back_to_position_when_any_score_is_missing() -> None:
    expected = [1.0, 0.6309, 0.5, 0.4307]
    rank_only = [hit("a"), hit("b"), hit("c"), hit("d")]
    assert [round(r, 4) for r in relevance(rank_only)] == expected
    mixed = [hit("a", 9.0), hit("b"), hit("c", 1.0), hit("d", float("nan"))]
    assert [round(r, 4) for r in relevance(mixed)] == expected


def test_close_relevance_authority_wins(small: AuthorityList) -> None:
    hits = [hit("https://blog.example.com/a", 10.0), hit("https://www.energy.gov/a", 9.6)]
    ranked = rerank(hits, small)
    assert urls(ranked) == ["https://www.energy.gov/a", "https://blog.example.com/a"]
    assert [h.rank for h in ranked] == [1, 2]
    assert [h.score for h in ranked] == [9.6, 10.0]  # scores are kept
    assert [h.rank for h in hits] == [0, 0]  # the input is not changed


def test_big_gap_relevance_wins(small: AuthorityList) -> None:
    hits = [hit("https://blog.example.com/a", 10.0), hit("https://www.energy.gov/a", 7.0)]
    assert urls(rerank(hits, small)) == urls(hits)


def test_demoted_farm_sinks_within_its_band_but_not_below_a_clearly_worse_hit(small: AuthorityList) -> None:
    hits = [
        hit("https://www.contentfarm.example/answer", 10.0),
        hit("https://blog.example.com/close", 9.6),
        hit("https://forum.example.net/worse", 7.0),
    ]
    assert urls(rerank(hits, small)) == [
        "https://blog.example.com/close",
        "https://www.contentfarm.example/answer",
        "https://forum.example.net/worse",
    ]


def test_graded_weights_decide_between_authoritative_hits(small: AuthorityList) -> None:
    hits = [
        hit("https://en.wikipedia.org/wiki/X", 10.0),  # 0.3
        hit("https://docs.python.org/3/x", 9.8),  # 0.8
        hit("https://www.gov.uk/x", 9.7),  # 1.0
    ]
    assert urls(rerank(hits, small)) == [
        "https://www.gov.uk/x",
        "https://docs.python.org/3/x",
        "https://en.wikipedia.org/wiki/X",
    ]


def test_rank_only_hits_keep_the_top_and_reorder_the_tail(small: AuthorityList) -> None:
    hits = [
        hit("https://spam.example/1", rank=1),
        hit("https://www.nasa.gov/2", rank=2),
        hit("https://a.example.com/3", rank=3),
        hit("https://b.example.com/4", rank=4),
        hit("https://www.gov.uk/5", rank=5),
    ]
    # Relevance 1, .63, .5, .43, .39: the government hit at 2 cannot pass the farm at 1 (gap .37),
    # the one at 5 passes the neutral hit at 4 (gap .044 < .1) but not the one at 3 (gap .11).
    assert urls(rerank(hits, small)) == [
        "https://spam.example/1",
        "https://www.nasa.gov/2",
        "https://a.example.com/3",
        "https://www.gov.uk/5",
        "https://b.example.com/4",
    ]


def test_zero_margin_or_no_authority_keeps_the_relevance_order(small: AuthorityList) -> None:
    hits = [
        hit("https://spam.example/1", 5.0),
        hit("https://www.nasa.gov/2", 5.0),
        hit("https://x.org/3", 4.0),
    ]
    assert urls(rerank(hits, small, margin=0.0)) == urls(hits)  # ties keep the input order
    assert urls(rerank(hits, AuthorityList())) == urls(hits)
    assert rerank([], small) == []
    with pytest.raises(ValueError, match="margin"):
        rerank(hits, small, margin=-0.1)


def test_never_lifts_a_hit_over_one_more_relevant_by_margin_or_more(small: AuthorityList) -> None:
    hosts = ["www.nasa.gov", "docs.python.org", "en.wikipedia.org", "x.example.com", "spam.example"]
    generator = random.Random(7)
    moved = 0
    for trial in range(300):
        n = generator.randint(2, 25)
        with_scores = trial % 2 == 0
        hits = [
            hit(
                f"https://{generator.choice(hosts)}/{i}",
                round(generator.uniform(0, 20), 2) if with_scores else None,
            )
            for i in range(n)
        ]
        margin = generator.choice([0.05, DEFAULT_MARGIN, 0.5])
        rel = dict(zip(urls(hits), relevance(hits), strict=True))
        ranked = rerank(hits, small, margin=margin)
        assert sorted(urls(ranked)) == sorted(urls(hits))
        assert [h.rank for h in ranked] == list(range(1, n + 1))
        for upper in range(n):
            for lower in range(upper + 1, n):
                a, b = ranked[upper].url, ranked[lower].url
                assert rel[b] - rel[a] < margin, (a, b, rel[a], rel[b], margin)
                moved += rel[b] > rel[a]
    assert moved > 0  # authority did reorder something


# --- the wrapper


class FakeProvider:
    """A web-provider-like backend: rank-only hits, an async ``aclose``."""

    name = "fake"

    def __init__(self, hits: list[SearchHit]) -> None:
        self.hits = hits
        self.limits: list[int] = []
        self.closed = False

    async def search(self, query: str, *, limit: int = 10) -> list[SearchHit]:
        self.limits.append(limit)
        return self.hits[:limit]

    async def aclose(self) -> None:
        self.closed = True


def test_authority_ranked_wraps_a_provider(small: AuthorityList) -> None:
    provider = FakeProvider(
        [
            hit("https://a.example.com/1", rank=1),
            hit("https://b.example.com/2", rank=2),
            hit("https://spam.example/3", rank=3),
            hit("https://www.nasa.gov/4", rank=4),
        ]
    )
    wrapped = AuthorityRanked(provider, small)
    assert isinstance(wrapped, SearchBackend) and wrapped.name == "fake"
    ranked = asyncio.run(wrapped.search("q", limit=4))
    assert urls(ranked) == [
        "https://a.example.com/1",
        "https://b.example.com/2",
        "https://www.nasa.gov/4",
        "https://spam.example/3",
    ]
    assert provider.limits == [4]  # no deeper query for a tie-break
    assert asyncio.run(wrapped.get_document("https://a.example.com/1")) is None
    asyncio.run(wrapped.aclose())
    assert provider.closed


def test_authority_ranked_over_the_local_index(shared_index: LocalIndex, shipped: AuthorityList) -> None:
    wrapped = AuthorityRanked(shared_index, shipped)
    assert isinstance(wrapped, DocumentStore) and wrapped.name == "local"
    plain = asyncio.run(shared_index.search("robots exclusion crawler rules", limit=8))
    ranked = asyncio.run(wrapped.search("robots exclusion crawler rules", limit=8))
    # Local files and notes.example.org are on no list: the BM25 order stands.
    assert urls(ranked) == urls(plain) and [h.rank for h in ranked] == list(range(1, len(plain) + 1))
    page = asyncio.run(wrapped.get_document(ranked[0].url))
    assert page is not None and page.text


class SyncClosing:
    """A backend with a synchronous ``close`` beside the protocol's ``aclose``, like the local index."""

    name = "sync"

    def __init__(self) -> None:
        self.closed: list[str] = []

    async def search(self, query: str, *, limit: int = 10) -> list[SearchHit]:
        return []

    def close(self) -> None:
        self.closed.append("close")

    async def aclose(self) -> None:
        self.close()


def test_authority_ranked_forwards_both_closes(small: AuthorityList) -> None:
    backend = SyncClosing()
    wrapped = AuthorityRanked(backend, small)
    assert asyncio.run(wrapped.search("q")) == []
    wrapped.close()
    asyncio.run(wrapped.aclose())  # the protocol's aclose reaches the wrapped backend
    assert backend.closed == ["close", "close"]
    AuthorityRanked(FakeProvider([]), small).close()  # nothing synchronous to close: no error
