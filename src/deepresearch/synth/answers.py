"""Whether an agent's answer says the same as a ground-truth answer: the test behind the difficulty
filter (drop what a baseline solves) and reflection (retry what is wrong).

Two stages, cheapest first:

- **A shortcut without the model.** Both answers are normalised (NFKC, so full-width letters, digits
  and punctuation become their half-width forms; case folded; punctuation, whitespace and the English
  articles dropped; ``1,000`` read as ``1000``) into tokens: Latin words and numbers, and runs of CJK
  characters (kept whole: without a segmenter a CJK run has no reliable word boundary inside it, so
  ``北京`` does not match inside ``北京大学``). The same tokens is a match; so is the expected answer as a
  contiguous run of whole tokens inside a *short* given answer that does not hedge or negate (``not``,
  ``or``, ``不``, ``或`` …, unless the expected answer has them too). The shortcut only says yes: when it
  cannot, the model decides.
- **The model.** A JSON verdict (``equivalent`` true or false, and a one-line ``reason``) from our own
  prompt (``answer_match_<lang>.j2``), which accepts other names, units and formats of the same fact.

An agent's answer is its whole report (``RunDir.report()``). ``final_answer`` reads it: the References
section and ``[n]`` markers go; an explicit ``Answer:``/``答案：`` line is the short answer; a report
short enough is its own short answer; a longer one is judged whole by the model, cut to a bound (its
head and its tail, where reports state their conclusion).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from deepresearch.report import strip_references
from deepresearch.runs import RunDir
from deepresearch.synth.context import SynthContext
from deepresearch.synth.engine import Tally
from deepresearch.synth.model import Language, Model, prompt

SHORT_ANSWER_TOKENS = 16
"""A given answer with at most this many tokens may contain the expected one (the shortcut)."""
SHORT_REPORT_CHARS = 400
"""A report (without references) up to this long is taken whole as the answer."""
JUDGED_HEAD_CHARS, JUDGED_TAIL_CHARS = 6000, 2000
"""A longer report is shown to the model as its first and last characters, up to these bounds."""

_CJK = "\u3400-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_ARTICLES = frozenset({"a", "an", "the"})
_HEDGES = frozenset(
    {"not", "no", "never", "neither", "nor", "or", "cannot", "isn", "aren", "wasn", "weren", "doesn"}
    | {"don", "didn", "unknown", "unclear", "maybe", "perhaps", "possibly"}
)
_CJK_HEDGES = "不没非无否或"
_MARKERS = re.compile(r"[ \t]?\[\d+(?:\s*[,，、–-]\s*\d+)*\]")
_ANSWER_TAGS = re.compile(r"</?answer>", re.I)
_ANSWER_LINE = re.compile(
    r"^[\s>*_#-]*(?:final answer|short answer|the answer|answer|最终答案|简短答案|答案)"
    r"[\s*_]*[:：][\s*_]*(.+?)[\s*_]*$",
    re.I | re.M,
)
_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"equivalent": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["equivalent", "reason"],
}

Method = Literal["exact", "contained", "empty", "model"]


@dataclass(frozen=True)
class Match:
    """A verdict on one answer: whether it is equivalent, why, and which stage decided."""

    equivalent: bool
    reason: str
    method: Method

    def to_dict(self) -> dict[str, Any]:
        return {"equivalent": self.equivalent, "reason": self.reason, "method": self.method}


@dataclass(frozen=True)
class FinalAnswer:
    """What a report answers: ``short`` for the shortcut (``None`` when the report has no short answer)
    and ``text`` for the model (the report without references, cut to the bound)."""

    short: str | None
    text: str


def tokens(text: str) -> list[str]:
    """``text`` normalised into comparable tokens (see the module docstring)."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = _THOUSANDS.sub("", folded)
    return [token for token in _TOKEN.findall(folded) if token not in _ARTICLES]


def final_answer(report: str) -> FinalAnswer:
    """The answer a report gives: its ``Answer:`` line or, for a short report, the report itself."""
    text = _ANSWER_TAGS.sub("", _MARKERS.sub("", strip_references(report))).strip()
    lines = _ANSWER_LINE.findall(text)
    if lines:
        short: str | None = lines[-1].strip()
    else:
        short = text if len(text) <= SHORT_REPORT_CHARS else None
    if len(text) > JUDGED_HEAD_CHARS + JUDGED_TAIL_CHARS:
        text = f"{text[:JUDGED_HEAD_CHARS]}\n\n[…]\n\n{text[-JUDGED_TAIL_CHARS:]}"
    return FinalAnswer(short=short, text=text)


def shortcut(expected: str, given: str) -> Match | None:
    """A verdict without the model, or ``None`` when only the model can tell."""
    want, got = tokens(expected), tokens(given)
    if not want:
        return None
    if not got:
        return Match(False, "the answer is empty", "empty")
    if want == got:
        return Match(True, "the same answer once normalised", "exact")
    if len(got) <= SHORT_ANSWER_TOKENS and not _hedges(got, want) and _contains(got, want):
        return Match(True, "the short answer contains the expected one as whole words", "contained")
    return None


async def answers_match(model: Model, question: str, expected: str, given: str, language: Language) -> Match:
    """Whether ``given`` (a short answer or a whole report) is equivalent to ``expected``; raises
    ``BadReply`` when the model gives no usable verdict and ``LLMError`` when its endpoint fails."""
    answer = final_answer(given)
    if not answer.text:
        return Match(False, "the answer is empty", "empty")
    if answer.short is not None:
        quick = shortcut(expected, answer.short)
        if quick is not None and quick.equivalent:
            return quick
    verdict = await model.json(
        prompt(
            "answer_match",
            language,
            question=question,
            expected=expected,
            given=answer.text,
            is_report=answer.short is None,
        ),
        _SCHEMA,
        check=_check_verdict,
    )
    return Match(_as_bool(verdict["equivalent"]), str(verdict.get("reason") or "").strip(), "model")


def question_of(item: Mapping[str, Any]) -> str:
    """The question of an input line: ``question``, else ``prompt`` (as benchmark task files name it)."""
    return str(item.get("question") or item.get("prompt") or "").strip()


def expected_of(item: Mapping[str, Any]) -> str:
    """The ground-truth answer of an input line; a list of accepted forms is shown joined."""
    answer = item.get("answer")
    if isinstance(answer, list):
        return " / ".join(str(a).strip() for a in answer if str(a).strip())
    return "" if answer is None else str(answer).strip()


def report_of(run: RunDir) -> str | None:
    """The answer a finished run gave (its report), or ``None`` when it gave none: not finished, or
    finished with the fallback evidence list (outcome ``empty``) instead of a report."""
    if not run.finished or run.meta.outcome == "empty":
        return None
    report = run.report()
    return report if report and report.strip() else None


@asynccontextmanager
async def judge_models(ctx: SynthContext) -> AsyncIterator[Callable[[Tally], Model]]:
    """Models for the equivalence verdicts, at temperature 0: the judge's endpoint when
    ``judge_model`` is set (the baseline under test should not grade itself), else the pipeline's."""
    if not ctx.settings.judge_model:
        yield lambda tally: ctx.model(tally, temperature=0.0)
        return
    from deepresearch.llm.client import ChatClient
    from deepresearch.services import llm_config

    client = ChatClient(llm_config(ctx.settings, "judge").model_copy(update={"temperature": 0.0}))
    try:
        yield lambda tally: Model(client, tally, temperature=0.0)
    finally:
        await client.aclose()


def _contains(haystack: list[str], needle: list[str]) -> bool:
    size = len(needle)
    return any(haystack[i : i + size] == needle for i in range(len(haystack) - size + 1))


def _hedges(got: list[str], want: list[str]) -> bool:
    """Whether the given answer negates or hedges in words the expected answer does not use."""
    if (set(got) - set(want)) & _HEDGES:
        return True
    expected_chars = set("".join(want))
    return any(char in _CJK_HEDGES and char not in expected_chars for token in got for char in token)


def _as_bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() == "true"


def _check_verdict(data: dict[str, Any]) -> list[str]:
    value = data.get("equivalent")
    if isinstance(value, bool) or (isinstance(value, str) and value.strip().lower() in {"true", "false"}):
        return []
    return ['"equivalent" must be true or false']
