"""The curation filters: deterministic checks of one agent run, each a pass, a fail or a skip with a reason.

A run is worth training on only if it did the right thing the right way, so every check here looks at
what the run recorded, never asks a model, and gives the same verdict on every machine. Each filter
takes a ``RunView`` (what ``curate.pipeline`` read from the run directory) and returns a ``Verdict``
whose ``reason`` is the word that ``decisions.jsonl`` and ``card.md`` count.

The thresholds are module constants, documented where they are defined:

- **loops**: the share of repeated word n-grams (``LOOP_NGRAM`` words, CJK characters counting as
  words) over all assistant text (content and reasoning) above ``MAX_REPEAT_RATIO``, once there are at least
  ``MIN_LOOP_NGRAMS``; or one tool call (same name and arguments) made ``MAX_IDENTICAL_CALLS`` times.
- **temporal anchoring**: a search query naming a year before the run's start year, when the question
  names none (the model anchored on its training cut-off instead of "now").
- **language mixing**: per paragraph of the report and the assistant's replies, the CJK density
  ``CJK characters / (CJK characters + Latin words)``, after code, inline code, URLs, citation keys and
  markers are removed (and, in Chinese text, capitalised Latin names such as ``SQLite`` or ``BM25``).
  An English run fails on a paragraph above ``EN_MAX_CJK``; a Chinese run on one below ``ZH_MIN_CJK``.
  Paragraphs under ``MIN_LANGUAGE_UNITS`` units are too short to judge.
- **citations**: no key the report cited went unresolved, every key cited in the final answer is a
  source of the run, and at least one citation resolved.
- **correct-and-shortest**: a whole-word, normalised match of an expected answer in the final answer;
  among the correct runs of one question, the fewest steps, then tool calls, wins.
- **error-recovery quota**: runs that hit a tool error and still finished with a cited report are
  kept up to a share of the kept set, chosen by a hash of the run id.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from deepresearch.report import strip_references

Status = Literal["pass", "fail", "skip"]

LOOP_NGRAM = 4
"""Words per n-gram in the repetition ratio."""
MAX_REPEAT_RATIO = 0.3
"""Above this share of repeated n-grams (``1 - distinct / total``) the assistant text is looping; an
ordinary report repeats a few percent of its 4-grams."""
MIN_LOOP_NGRAMS = 30
"""Below this many n-grams the ratio says nothing."""
MAX_IDENTICAL_CALLS = 3
"""The same tool call (name and arguments) this many times is a loop (the agent's repeat guard refuses
the second and takes over at the third)."""
EN_MAX_CJK = 0.2
"""An English run's paragraph with a higher CJK density is mixed."""
ZH_MIN_CJK = 0.5
"""A Chinese run's paragraph with a lower CJK density (names already removed) is mixed."""
MIN_LANGUAGE_UNITS = 6
"""Paragraphs with fewer CJK characters plus Latin words are not judged."""
FILTERS = (
    "finished",
    "format",
    "loops",
    "temporal",
    "language",
    "citations",
    "plan_alignment",
    "correct_and_shortest",
    "error_recovery",
)
"""Every filter's name, in the order they are applied and reported."""

_CJK_CHAR = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
_CJK = re.compile(f"[{_CJK_CHAR}]")
_TOKEN = re.compile(rf"[{_CJK_CHAR}]|[^\W\d_{_CJK_CHAR}]+|\d+")
_LATIN_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_YEAR = re.compile(r"(?<!\d)(19\d{2}|20\d{2})(?!\d)")
_FENCE = re.compile(r"(```|~~~).*?(\1|\Z)", re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_URL = re.compile(r"\b(?:https?|ftp|file)://\S+|\bwww\.\S+", re.I)
_CITATION_MARKUP = re.compile(r"\\cite[a-z]*\{[^{}]*\}|\bweb_[0-9a-f]{8,16}\b|\[\d+(?:\s*[,，]\s*\d+)*\]")
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_CAPITALISED = re.compile(r"\b[A-Z][A-Za-z0-9.+#\-]*")
_PARAGRAPH = re.compile(r"\n\s*\n")
_PUNCTUATION = re.compile(r"[^\w\s]|_", re.U)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


@dataclass(frozen=True)
class Verdict:
    """One filter's word on one run."""

    filter: str
    status: Status
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, **self.detail}


@dataclass(frozen=True)
class Expectation:
    """What a run should have found: accepted answers and, for planning data, the plan."""

    answers: tuple[str, ...] = ()
    plan: tuple[str, ...] = ()
    origin: str = ""
    """Where it came from: ``task`` (the run's ``task.json``) or ``answers`` (the ``--answers`` file)."""


@dataclass
class RunView:
    """What the filters read of one run (``curate.pipeline.read_view`` fills it from the run directory)."""

    path: Path
    run_id: str
    question: str
    language: str = "en"
    status: str = ""
    outcome: str | None = None
    started_year: int | None = None
    steps: int = 0
    report: str | None = None
    final_answer: str = ""
    """The report without its references section: what the correctness check reads."""
    assistant_texts: list[str] = field(default_factory=list)
    """The content of the model's replies (what the language check reads)."""
    reasoning_texts: list[str] = field(default_factory=list)
    """Their reasoning, where the server returned it (a loop shows there first)."""
    tool_calls: list[tuple[str, str]] = field(default_factory=list)
    """The model's own tool calls (name, arguments), not those a guard took for it."""
    tool_errors: int = 0
    search_queries: list[str] = field(default_factory=list)
    cited_keys: list[str] = field(default_factory=list)
    """Keys ``\\cite``-d in the final answer, as the model wrote them."""
    source_keys: frozenset[str] = frozenset()
    citations: dict[str, int] = field(default_factory=dict)
    """The run's citation audit: ``{cited, resolved, unresolved}``."""
    expected: Expectation | None = None

    @property
    def finished(self) -> bool:
        return self.status == "done" and bool(self.report and self.report.strip())

    @property
    def length(self) -> tuple[int, int, str]:
        """What "shortest" orders by: steps, then tool calls, then the id (for a stable tie-break)."""
        return (self.steps, len(self.tool_calls), self.run_id)


# --- per-run filters


def check_finished(view: RunView) -> Verdict:
    if view.finished:
        return Verdict("finished", "pass", "finished")
    return Verdict("finished", "fail", "not_finished", {"run_status": view.status})


def check_loops(
    view: RunView,
    *,
    ngram: int = LOOP_NGRAM,
    max_ratio: float = MAX_REPEAT_RATIO,
    max_identical: int = MAX_IDENTICAL_CALLS,
) -> Verdict:
    """Fails on a tool call repeated ``max_identical`` times, or on replies (content and reasoning)
    that keep saying the same thing."""
    calls = Counter((name, canonical_arguments(arguments)) for name, arguments in view.tool_calls)
    if calls:
        (name, _), count = calls.most_common(1)[0]
        if count >= max_identical:
            return Verdict("loops", "fail", "repeated_tool_call", {"tool": name, "times": count})
    ratio, total = repeat_ratio([*view.assistant_texts, *view.reasoning_texts], ngram)
    if total >= MIN_LOOP_NGRAMS and ratio > max_ratio:
        return Verdict("loops", "fail", "repeated_text", {"ratio": round(ratio, 3), "ngrams": total})
    return Verdict("loops", "pass", "no_loop", {"ratio": round(ratio, 3)})


def canonical_arguments(arguments: str) -> str:
    """The arguments as sorted JSON, so that key order and spacing do not hide a repeat."""
    try:
        return json.dumps(json.loads(arguments), sort_keys=True, ensure_ascii=False)
    except json.JSONDecodeError:
        return arguments.strip()


def repeat_ratio(texts: Sequence[str], n: int = LOOP_NGRAM) -> tuple[float, int]:
    """``(1 - distinct / total, total)`` over the word n-grams of ``texts`` (each text on its own)."""
    grams: Counter[tuple[str, ...]] = Counter()
    for text in texts:
        words = [w.lower() for w in _TOKEN.findall(text)]
        grams.update(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    total = sum(grams.values())
    if not total:
        return 0.0, 0
    return 1 - len(grams) / total, total


def check_temporal(view: RunView) -> Verdict:
    """Fails when a search query adds a past year to a question that names none."""
    if _YEAR.search(view.question):
        return Verdict("temporal", "skip", "question_names_a_year")
    if view.started_year is None:
        return Verdict("temporal", "skip", "no_start_time")
    for query in view.search_queries:
        stale = [int(y) for y in _YEAR.findall(query) if int(y) < view.started_year]
        if stale:
            return Verdict("temporal", "fail", "stale_year_query", {"query": query, "year": stale[0]})
    return Verdict("temporal", "pass", "no_stale_year", {"queries": len(view.search_queries)})


def check_language(
    view: RunView, *, en_max_cjk: float = EN_MAX_CJK, zh_min_cjk: float = ZH_MIN_CJK
) -> Verdict:
    """Fails on the first paragraph whose CJK density departs from the question's language."""
    texts = [strip_references(view.report or ""), *view.assistant_texts]
    for text in texts:
        for paragraph in paragraphs(text):
            density, units = cjk_density(paragraph, view.language)
            if units < MIN_LANGUAGE_UNITS:
                continue
            if (view.language == "zh" and density < zh_min_cjk) or (
                view.language != "zh" and density > en_max_cjk
            ):
                excerpt = paragraph.strip()[:120]
                detail = {"density": round(density, 3), "paragraph": excerpt, "language": view.language}
                return Verdict("language", "fail", "language_mixing", detail)
    return Verdict("language", "pass", "one_language", {"language": view.language})


def paragraphs(text: str) -> list[str]:
    """The text's paragraphs with code blocks removed (code is in no natural language)."""
    return [p for p in _PARAGRAPH.split(_FENCE.sub("\n\n", text)) if p.strip()]


def cjk_density(paragraph: str, language: str) -> tuple[float, int]:
    """``(CJK chars / (CJK chars + Latin words), CJK chars + Latin words)`` of the paragraph's prose."""
    text = _INLINE_CODE.sub(" ", paragraph)
    text = _URL.sub(" ", text)
    text = _CITATION_MARKUP.sub(" ", text)
    text = _TAG.sub(" ", text)
    cjk = len(_CJK.findall(text))
    if language == "zh":
        text = _CAPITALISED.sub(" ", text)  # names (SQLite, BM25, Okapi) are no mixing in Chinese prose
    words = len(_LATIN_WORD.findall(text))
    units = cjk + words
    return (cjk / units if units else 0.0), units


def check_citations(view: RunView) -> Verdict:
    """Fails on a citation that resolves to no source of the run, or on a report that cites nothing."""
    unknown = [key for key in view.cited_keys if key not in view.source_keys]
    unresolved = int(view.citations.get("unresolved", 0) or 0)
    if unresolved or unknown:
        return Verdict(
            "citations",
            "fail",
            "unresolved_citation",
            {"unresolved": max(unresolved, len(unknown)), "keys": unknown},
        )
    if not int(view.citations.get("resolved", 0) or 0):
        return Verdict("citations", "fail", "uncited")
    return Verdict("citations", "pass", "all_resolved", {"resolved": view.citations.get("resolved", 0)})


def check_plan(plan: Sequence[str], score: float | None, *, min_alignment: float) -> Verdict:
    """``score`` is the run's alignment with ``plan``; ``None`` when no scorer could be loaded."""
    if not plan:
        return Verdict("plan_alignment", "skip", "no_plan")
    if score is None:
        return Verdict("plan_alignment", "skip", "no_alignment_module")
    detail = {"score": round(score, 3), "min": min_alignment}
    if score < min_alignment:
        return Verdict("plan_alignment", "fail", "plan_deviation", detail)
    return Verdict("plan_alignment", "pass", "aligned", detail)


# --- correctness and the choice of the shortest


def normalise_answer(text: str) -> str:
    """Lower case, NFKC, no punctuation, citations or articles, single spaces: the exact-match form."""
    text = _CITATION_MARKUP.sub(" ", unicodedata.normalize("NFKC", text)).casefold()
    text = _PUNCTUATION.sub(" ", text)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_matches(expected: Sequence[str], final_answer: str) -> bool:
    """Whether one expected answer appears in ``final_answer`` as a whole-word phrase (as a substring
    for CJK answers, which have no word boundaries)."""
    said = normalise_answer(final_answer)
    for answer in expected:
        wanted = normalise_answer(answer)
        if not wanted:
            continue
        if _CJK.search(wanted):
            if wanted.replace(" ", "") in said.replace(" ", ""):
                return True
        elif f" {wanted} " in f" {said} ":
            return True
    return False


def check_correct(view: RunView) -> Verdict:
    """Whether the final answer holds an expected answer; runs without one are not judged."""
    if view.expected is None or not view.expected.answers:
        return Verdict("correct_and_shortest", "skip", "no_expected_answer")
    detail = {"expected_from": view.expected.origin}
    if answer_matches(view.expected.answers, view.final_answer):
        return Verdict("correct_and_shortest", "pass", "correct", detail)
    return Verdict("correct_and_shortest", "fail", "incorrect_answer", detail)


def question_key(question: str) -> str:
    """Runs of one question share this: case, punctuation and spacing do not matter."""
    return normalise_answer(question) or question.strip()


def shortest(views: Sequence[RunView]) -> RunView:
    """The run of ``views`` with the fewest steps, then tool calls (ties broken by run id)."""
    return min(views, key=lambda view: view.length)


# --- the error-recovery quota


def error_quota_size(clean: int, quota: float) -> int:
    """How many error-recovery runs may join ``clean`` kept runs so that they make at most ``quota``
    of the kept set: the largest ``k`` with ``k <= quota * (clean + k)``."""
    if quota <= 0:
        return 0
    if quota >= 1:
        return sys.maxsize  # every one of them
    return math.floor(quota * clean / (1 - quota) + 1e-9)


def quota_order(run_id: str) -> str:
    """A fixed, order-independent rank for the quota's choice (not the alphabet, not the input order)."""
    return hashlib.sha256(run_id.encode("utf-8")).hexdigest()


@dataclass
class Decision:
    """Every filter's verdict on one run, and whether it is kept (no filter failed)."""

    path: Path
    run_id: str
    language: str = ""
    verdicts: dict[str, Verdict] = field(default_factory=dict)

    def add(self, verdict: Verdict) -> None:
        self.verdicts[verdict.filter] = verdict

    @property
    def kept(self) -> bool:
        return not any(verdict.failed for verdict in self.verdicts.values())

    @property
    def reasons(self) -> list[str]:
        """Why the run was dropped, in filter order (empty when it is kept)."""
        return [
            self.verdicts[name].reason
            for name in FILTERS
            if name in self.verdicts and self.verdicts[name].failed
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": str(self.path),
            "run_id": self.run_id,
            "kept": self.kept,
            "reasons": self.reasons,
            "filters": {name: self.verdicts[name].to_dict() for name in FILTERS if name in self.verdicts},
        }
