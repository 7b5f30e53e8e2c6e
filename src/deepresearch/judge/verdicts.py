"""Reading what a judge model wrote: JSON verdicts, batches of them, chunk evidence, and trial majorities.

Judge models answer in many shapes: fenced JSON, JSON after a paragraph of prose, a truncated object,
ResearchRubrics' ``Satisfied`` / ``Partially Satisfied`` / ``Not Satisfied``, our own ``partially``,
a flaw that is ``present`` or ``absent``. Everything here turns such text into ``Trial`` objects or
raises ``InvalidJudgeOutput`` with a short reason that the grader sends back to the model on a retry.
A reply we cannot read is never taken as "not satisfied": that would silently score 0.

Verdict labels are about the *criterion*, so one table serves both polarities: a flaw that is
``present`` makes a negative criterion ``satisfied``, one that is ``absent`` makes it ``not_satisfied``.
All functions are pure.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import json_repair

from deepresearch.judge.records import TERNARY_SCORE, Trial, Verdict

MAX_EVIDENCE_ITEMS = 5
"""Quotes kept per verdict (or per chunk and rubric); more is noise in a record."""
MAX_QUOTE_CHARS = 600

_SATISFIED = (
    "satisfied, fully satisfied, completely satisfied, met, fully met, meets, fulfilled, fully fulfilled, "
    "complete, yes, pass, passed, true, present, fully present, clearly present, flaw present"
)
_PARTIALLY = (
    "partially, partial, partly, partially satisfied, partly satisfied, partially met, partly met, "
    "partially fulfilled, somewhat, partial credit, partially present, partly present, flaw partially present"
)
_NOT_SATISFIED = (
    "not satisfied, unsatisfied, not met, unmet, not fulfilled, unfulfilled, no, fail, failed, false, "
    "absent, not present, flaw absent, flaw not present"
)
_LABELS: dict[str, Verdict] = {
    **dict.fromkeys(_SATISFIED.split(", "), "satisfied"),
    **dict.fromkeys(_PARTIALLY.split(", "), "partially"),
    **dict.fromkeys(_NOT_SATISFIED.split(", "), "not_satisfied"),
}
_SCORES: dict[float, Verdict] = {1.0: "satisfied", 0.5: "partially", 0.0: "not_satisfied"}
_NAMED_CONFIDENCE = {"very high": 0.95, "high": 0.85, "medium": 0.6, "moderate": 0.6, "low": 0.3}
_REFUSAL = re.compile(
    r"\b(?:i\s+(?:can\s*not|cannot|can't|can’t|am\s+unable|'m\s+unable|won't|will\s+not|am\s+not\s+able)"
    r"|unable\s+to\s+(?:evaluate|assess|grade|judge|determine)|as\s+an\s+ai\b)",
    re.IGNORECASE,
)
_VERDICT_LINE = re.compile(r"\bverdict\b\W{0,5}([A-Za-z][A-Za-z _-]{1,40})", re.IGNORECASE)


class InvalidJudgeOutput(ValueError):
    """The judge's reply holds no usable verdict; the message says why, in words fit for the model."""


@dataclass(slots=True)
class ChunkEvidence:
    """What one part of a long report offered for one rubric."""

    part: int
    quotes: list[str] = field(default_factory=list)
    note: str = ""


def normalize_verdict(label: Any) -> Verdict | None:
    """Our verdict for a judge's label (``Partially Satisfied``, ``absent``, ``1``, …), or ``None``."""
    if isinstance(label, bool):
        return "satisfied" if label else "not_satisfied"
    if isinstance(label, int | float):
        return _SCORES.get(float(label))
    if not isinstance(label, str):
        return None
    text = re.sub(r"[^a-z0-9. ]+", " ", label.lower().replace("_", " ").replace("-", " "))
    text = " ".join(text.split()).strip(" .")
    if text in _LABELS:
        return _LABELS[text]
    try:
        return _SCORES.get(float(text))
    except ValueError:
        return None


def parse_verdict(text: str) -> Trial:
    """One verdict from a reply to ``positive.j2`` or ``negative.j2``; raises ``InvalidJudgeOutput``."""
    data = load_json(text)
    objects = _entries(data, ("results", "verdicts", "items"))  # also a one-item batch-style answer
    for candidate in reversed(objects):  # a model that thinks aloud in JSON ends with its answer
        trial = _trial(candidate)
        if trial is not None:
            return trial
    if not objects:
        verdict = _verdict_in_prose(text)
        if verdict is not None:
            return Trial(verdict=verdict, score=TERNARY_SCORE[verdict], reasoning=text.strip()[:2000])
    raise InvalidJudgeOutput(_problem(text, objects))


def parse_batch(text: str, count: int) -> dict[int, Trial]:
    """Verdicts by item index (1-based) from a reply to ``batch.j2`` or ``synthesis.j2``.

    Items the reply left out or garbled are simply absent (the grader asks for them one by one);
    ``InvalidJudgeOutput`` only when no item at all could be read.
    """
    entries = _entries(load_json(text), ("results", "verdicts", "items", "grades"))
    trials: dict[int, Trial] = {}
    for index, entry in _indexed(entries, count):
        trial = _trial(entry)
        if trial is not None and index not in trials:
            trials[index] = trial
    if not trials:
        raise InvalidJudgeOutput(_problem(text, entries, batch=True))
    return trials


def parse_evidence(text: str, count: int, *, part: int) -> dict[int, ChunkEvidence]:
    """Evidence by item index from a reply to ``chunk_evidence.j2``.

    An item the reply left out found nothing in this part; a reply with no readable structure at all
    raises ``InvalidJudgeOutput`` (it must not pass for "nothing relevant").
    """
    data = load_json(text)
    if not isinstance(data, dict | list) or (isinstance(data, dict) and not data):
        raise InvalidJudgeOutput(_problem(text, []))
    if (
        isinstance(data, dict)
        and not any(key in data for key in ("evidence", "items", "results"))
        and not any(_as_index(key) is not None for key in data)
    ):
        raise InvalidJudgeOutput('the reply has no "evidence" list')
    found: dict[int, ChunkEvidence] = {}
    for index, entry in _indexed(_entries(data, ("evidence", "items", "results")), count):
        quotes = _quotes(entry.get("quotes", entry.get("evidence", entry.get("passages"))))
        note = str(entry.get("note") or entry.get("summary") or "").strip()
        found.setdefault(index, ChunkEvidence(part=part, quotes=quotes, note=note[:MAX_QUOTE_CHARS]))
    return found


def majority(verdicts: Iterable[Verdict]) -> Verdict:
    """The most frequent verdict; a tie (2 vs 2, or 1/1/1) goes to the middle one, ``partially``."""
    counts = Counter(verdicts).most_common()
    if not counts:
        raise ValueError("no verdicts to combine")
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return "partially"
    return counts[0][0]


def refusal_in(text: str) -> bool:
    """Whether ``text`` reads like a refusal to grade ("I can't evaluate …")."""
    return bool(_REFUSAL.search(text))


# --- helpers


def load_json(text: str) -> Any:
    """The JSON in ``text`` (fences, prose and truncation tolerated), or ``""`` when there is none."""
    if not text.strip():
        return ""
    try:
        return json_repair.loads(text)
    except Exception:  # json_repair is lenient but not total; anything it cannot read is no JSON
        return ""


def _verdict_in_prose(text: str) -> Verdict | None:
    """A bare label (``Partially Satisfied``), or the label after ``Verdict:`` in a reply with no JSON."""
    if len(text.strip()) <= 40:
        bare = normalize_verdict(text)
        if bare is not None:
            return bare
    line = _VERDICT_LINE.search(text)
    words = line.group(1).split() if line else []
    for length in range(min(len(words), 4), 0, -1):
        verdict = normalize_verdict(" ".join(words[:length]))
        if verdict is not None:
            return verdict
    return None


def _trial(entry: dict[str, Any]) -> Trial | None:
    verdict = None
    for key in ("verdict", "label", "rating", "result", "judgment", "judgement"):
        if key in entry:
            verdict = normalize_verdict(entry[key])
            break
    if verdict is None and "verdict" not in entry:
        verdict = normalize_verdict(entry.get("score"))
    if verdict is None:
        return None
    reasoning = entry.get("reasoning") or entry.get("explanation") or entry.get("rationale") or ""
    return Trial(
        verdict=verdict,
        score=TERNARY_SCORE[verdict],
        confidence=_confidence(entry.get("confidence")),
        reasoning=str(reasoning).strip(),
        evidence=_quotes(entry.get("evidence", entry.get("quotes"))),
    )


def _entries(data: Any, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    """The list of item objects in a batch-style reply: under one of ``keys``, a bare list, or a
    mapping from index to object."""
    if isinstance(data, dict):
        for key in keys:
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            keyed = [
                {"index": key, **value}
                for key, value in data.items()
                if isinstance(value, dict) and _as_index(key) is not None
            ]
            data = keyed or [data]
    if not isinstance(data, list):
        return []
    return [entry for entry in data if isinstance(entry, dict)]


def _indexed(entries: list[dict[str, Any]], count: int) -> list[tuple[int, dict[str, Any]]]:
    """(index, entry) for entries that name an index in 1..count; when none names one and there are
    exactly ``count`` entries, their order is the index."""
    named = [
        (_as_index(_first(entry, ("index", "id", "item", "criterion_index"))), entry) for entry in entries
    ]
    if all(index is None for index, _ in named) and len(entries) == count:
        return list(enumerate(entries, start=1))
    return [(index, entry) for index, entry in named if index is not None and 1 <= index <= count]


def _first(entry: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((entry[key] for key in keys if key in entry), None)


def _as_index(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(?:item|criterion|#)?\s*(\d+)\s*", value, re.IGNORECASE)
        return int(match.group(1)) if match else None
    return None


def _confidence(value: Any) -> float | None:
    if isinstance(value, str):
        named = _NAMED_CONFIDENCE.get(value.strip().lower())
        if named is not None:
            return named
        try:
            value = float(value.strip().rstrip("%"))
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    if 1.0 < number <= 100.0:
        number /= 100.0  # a percentage
    return min(max(number, 0.0), 1.0) if number == number else None


def _quotes(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    quotes = []
    for item in value:
        if isinstance(item, dict):
            item = _first(item, ("quote", "text", "passage"))
        if isinstance(item, str) and item.strip():
            quotes.append(item.strip()[:MAX_QUOTE_CHARS])
    return quotes[:MAX_EVIDENCE_ITEMS]


def _problem(text: str, found: list[Any], *, batch: bool = False) -> str:
    """Why a reply was unusable, phrased for the retry prompt and the failed record."""
    if not text.strip():
        return "the reply was empty"
    if refusal_in(text):
        return f"the reply declined to grade ({_excerpt(text)})"
    if not found:
        return f"no JSON object was found in the reply ({_excerpt(text)})"
    if batch:
        return "no item had a readable index and verdict"
    return "the JSON had no recognisable verdict"


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return repr(flat[:120] + ("…" if len(flat) > 120 else ""))
