"""Choose the passages a section is written from: BM25 over overlapping windows of the pages read.

Why windows of the pages and not the index's own passages: pages may come from the web (no index),
and a small model's prompt holds three or four passages, so each must be short and centred on what
the section asks. Windows are whole sentences, about ``WINDOW_WORDS`` long, starting every
``STRIDE_WORDS``; the page title counts once in every window, so a window of the right page beats
a stray mention elsewhere.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from deepresearch.search.passages import CJK_RUN_RE, cjk_grams, split_sentences

WINDOW_WORDS = 90
STRIDE_WORDS = 45
K1, B = 1.2, 0.75
_WORD = re.compile(r"\w+")
_FENCE = re.compile(r"^(`{3,}|~{3,})")
_RULE = re.compile(r"^[-|: ]{3,}$")
_HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*$")
STOPWORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "in",
        "into",
        "is",
        "it",
        "its",
        "may",
        "my",
        "not",
        "of",
        "on",
        "or",
        "should",
        "so",
        "than",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "this",
        "to",
        "use",
        "used",
        "using",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "without",
        "you",
        "your",
    }
)


def terms(text: str) -> list[str]:
    """Lower-cased content words with a light plural folding, CJK runs as bigrams; stopwords dropped."""
    found: list[str] = []
    for token in _WORD.findall(text.lower()):
        position = 0
        for run in CJK_RUN_RE.finditer(token):
            found.extend(_fold(w) for w in token[position : run.start()].split("_") if w)
            found.extend(cjk_grams(run.group()))
            position = run.end()
        found.extend(_fold(w) for w in token[position:].split("_") if w)
    return [t for t in found if t not in STOPWORDS and (not t.isdigit() or len(t) > 3)]


def _fold(word: str) -> str:
    """A crude stemmer, the same on both sides of a match: plurals, ``-ing``, ``-ed``."""
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed") and not word.endswith("eed"):
        return word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("xes", "ches", "shes", "sses")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


@dataclass(frozen=True)
class Window:
    """A run of whole sentences from one page the run read."""

    key: str
    """The page's citation key."""
    title: str
    start: int
    """Word offset of the window in its page (windows of one page overlap when their ranges do)."""
    end: int
    text: str
    bag: Counter[str] = field(compare=False, repr=False, default_factory=Counter)

    def overlaps(self, other: Window) -> bool:
        return self.key == other.key and self.start < other.end and other.start < self.end


def windows(
    key: str, title: str, text: str, *, size: int = WINDOW_WORDS, stride: int = STRIDE_WORDS
) -> list[Window]:
    """``text`` cut into overlapping windows of whole sentences (a long sentence is a window alone)."""
    sentences = [s for block in blocks(text) for s in split_sentences(block)]
    lengths = [len(s.split()) for s in sentences]
    offsets = [0]
    for n in lengths:
        offsets.append(offsets[-1] + n)
    title_terms = terms(title)
    found: list[Window] = []
    i = 0
    while i < len(sentences):
        j = i + 1
        while j < len(sentences) and offsets[j + 1] - offsets[i] <= size:
            j += 1
        body = " ".join(sentences[i:j])
        found.append(Window(key, title, offsets[i], offsets[j], body, Counter(terms(body) + title_terms)))
        if j >= len(sentences):
            break
        following = i + 1  # the next window starts about ``stride`` words on, always before this one ends
        while following < j - 1 and offsets[following] - offsets[i] < stride:
            following += 1
        i = following
    return found


def blocks(text: str) -> list[str]:
    """The page's paragraphs as single lines: headings without their ``#``, code without its fences,
    table rows without their bars, so a passage reads as text in a prompt or a quotation."""
    found: list[str] = []
    current: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or _FENCE.match(line) or _RULE.match(line):
            if current:
                found.append(" ".join(current))
                current = []
            continue
        heading = _HEADING.match(line)
        if heading:
            if current:
                found.append(" ".join(current))
                current = []
            found.append(heading.group(1).strip())
            continue
        current.append(" ".join(line.strip("|").replace(" | ", "; ").split()))
    if current:
        found.append(" ".join(current))
    return [b for b in found if b]


def select(
    pool: Sequence[Window],
    query: str,
    k: int,
    *,
    per_source: int = 2,
    prior: Mapping[str, float] | None = None,
) -> list[Window]:
    """The ``k`` best windows for ``query`` by BM25 over ``pool``: at most ``per_source`` from one page,
    never two that overlap, none that shares no term with the query. ``prior`` multiplies the scores
    of a page's windows (the search engine's own ranking of the pages, say)."""
    wanted = set(terms(query))
    if not pool or not wanted or k < 1:
        return []
    weight = prior or {}
    scores = [score * weight.get(w.key, 1.0) for w, score in zip(pool, bm25(pool, wanted), strict=True)]
    ranked = sorted(
        ((score, -i, w) for i, (w, score) in enumerate(zip(pool, scores, strict=True))), reverse=True
    )
    chosen: list[Window] = []
    taken: Counter[str] = Counter()
    for score, _, window in ranked:
        if score <= 0 or len(chosen) >= k:
            break
        if taken[window.key] >= per_source or any(window.overlaps(c) for c in chosen):
            continue
        chosen.append(window)
        taken[window.key] += 1
    return chosen


def bm25(pool: Sequence[Window], wanted: Iterable[str]) -> list[float]:
    """Okapi BM25 of each window for the query terms ``wanted`` (document frequencies over ``pool``)."""
    wanted = list(dict.fromkeys(wanted))
    n = len(pool)
    lengths = [sum(w.bag.values()) for w in pool]
    average = sum(lengths) / n if n else 0.0
    df = {t: sum(1 for w in pool if t in w.bag) for t in wanted}
    idf = {t: math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in wanted}
    scores = []
    for window, length in zip(pool, lengths, strict=True):
        norm = K1 * (1 - B + B * length / average) if average else K1
        scores.append(
            sum(idf[t] * window.bag[t] * (K1 + 1) / (window.bag[t] + norm) for t in wanted if window.bag[t])
        )
    return scores
