"""Decide whether a section the model wrote is worth more than the passages it was given.

Measured on the bundled 135M model: asked for paragraphs, it copied the section heading three times;
asked to cite, it wrote keys it was never shown. The schema already makes every citation a real key;
what is left to judge is the text: long enough to say something, not a repetition of itself or of
the heading, not the prompt's own example text, and made mostly of the passages' words (a small
model that drifts from its sources invents). Each paragraph then cites the passages it shares the
most words with, so a citation points at the passage that supports it, not merely at one it was shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from deepresearch.guided.select import Window, terms
from deepresearch.report import PLACEHOLDERS

MIN_TERMS = 8
"""Content words a section needs to say anything."""
MIN_GROUNDING = 0.6
"""Share of a section's distinct content words that must occur in its passages, question or heading."""
MIN_DISTINCT_TRIGRAMS = 0.6
"""Distinct word trigrams over all trigrams, below which the text repeats itself."""
MIN_SUPPORT = 2
"""Content words a paragraph must share with a passage to cite it."""
MIN_BEYOND_TITLES = 4
"""Content words a text needs besides those of the heading and the pages' titles (a small model
asked for a fact often just restates where the passage came from)."""


@dataclass
class Paragraph:
    text: str
    keys: list[str]


def verdict(
    paragraphs: Sequence[Paragraph],
    passages: Sequence[Window],
    *,
    heading: str,
    question: str,
    min_terms: int = MIN_TERMS,
) -> tuple[list[Paragraph], str | None]:
    """The paragraphs to keep, each citing what supports it, and ``None``; or why the section fails."""
    texts = [" ".join(p.text.split()) for p in paragraphs if p.text.strip()]
    if not texts:
        return [], "empty"
    whole = " ".join(texts)
    lowered = whole.lower()
    if any(marker in lowered for marker in PLACEHOLDERS):
        return [], "echoed the prompt"
    words = terms(whole)
    if len(words) < min_terms:
        return [], f"too short ({len(words)} content words)"
    heading_terms = set(terms(heading))
    if any(set(terms(t)) <= heading_terms for t in texts):
        return [], "copied the heading"
    if len({t.lower() for t in texts}) < len(texts) or _repetitive(whole):
        return [], "repeats itself"
    titles = heading_terms.union(*(terms(w.title) for w in passages))
    if len(set(words) - titles) < MIN_BEYOND_TITLES:
        return [], "restates the titles"
    known = set(terms(question)) | heading_terms
    for window in passages:
        known.update(window.bag)
    distinct = set(words)
    grounded = len(distinct & known) / len(distinct)
    if grounded < MIN_GROUNDING:
        return [], f"not grounded in the passages ({grounded:.0%} of its words)"
    kept = []
    for text, paragraph in zip(texts, (p for p in paragraphs if p.text.strip()), strict=True):
        keys = supporting_keys(text, paragraph.keys, passages)
        if keys:
            kept.append(Paragraph(text, keys))
    if not kept:
        return [], "no paragraph is supported by a passage"
    return kept, None


def supporting_keys(text: str, cited: Sequence[str], passages: Sequence[Window]) -> list[str]:
    """The cited keys whose passages share at least half as many words with ``text`` as the best
    passage does (and ``MIN_SUPPORT``); when none does, the best passage's key if it shares that many."""
    mine = set(terms(text))
    shared: dict[str, int] = {}
    for window in passages:
        shared[window.key] = max(shared.get(window.key, 0), len(mine & set(window.bag)))
    best = max(shared, key=lambda k: shared[k], default=None)
    if best is None or shared[best] < MIN_SUPPORT:
        return []
    floor = max(MIN_SUPPORT, shared[best] / 2)
    return [k for k in dict.fromkeys(cited) if shared.get(k, 0) >= floor] or [best]


def _repetitive(text: str) -> bool:
    words = text.lower().split()
    trigrams = list(zip(words, words[1:], words[2:], strict=False))
    if len(trigrams) < 12:
        return False
    return len(set(trigrams)) / len(trigrams) < MIN_DISTINCT_TRIGRAMS
