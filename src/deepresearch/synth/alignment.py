"""How closely an agent run followed a plan: the paper's trajectory-consistency filter, made deterministic.

The planning data (``synth plan``) pairs a task with a plan written in hindsight from a finished
document; a run of our agent on that task is worth keeping only if it followed the plan. No model is
asked: the score must be cheap, reproducible and explainable, because ``synth plan`` and
``deepresearch curate`` both drop runs on it.

**Run steps** are read from the run's events, in order: every todo step the run wrote (the ``todo``
entry of a tool result's ``state``; a step is counted once, when its task text first appears), every
search query and every opened URL (with the page title the run saw for it) of the tool calls in its
model replies, and the sections of a guided run's plan. Tool calls are recognised by their arguments
(``queries``, ``urls``), not by the tool's name.

**Matching** compares token sets. Text is NFKC-normalised and lower-cased; Latin words are cut to a
crude stem (``ranking``, ``ranked``, ``ranks`` → ``rank``); Chinese is split at function characters
(的, 了, 和 …) and read as character bigrams. Function words are always removed; generic research
verbs and nouns (find, search, report, 搜索, 报告 …) are removed too unless nothing else is left, so
"Write the report" still means something. A plan step matches a run step when the Dice overlap of
their token sets, ``2|P∩R| / (|P|+|R|)``, reaches ``MATCH_THRESHOLD`` (0.4) and they share at least
``MIN_SHARED`` (2) tokens, or all of the smaller set when it has fewer. A plan step's match is the
todo step with the highest overlap (the earliest among equals) or, when no todo step reaches the
threshold, the action with the highest overlap: the todo list is the run's own statement of its plan
and of its order, and actions are the evidence for what it never wrote down. (The *first* matching
step would let a generic last step such as "Write a report on X" match the run's first mention of X.)

**Score**::

    coverage = matched plan steps / plan steps
    order    = concordant / (concordant + discordant) over pairs of matched plan steps whose matches
               differ, concordant when the earlier plan step's match comes first (Kendall-tau-like;
               1.0 when no pair can be compared, 0.0 with no match)
    score    = coverage × (ORDER_FLOOR + (1 − ORDER_FLOOR) × order)

so a run that did everything in the reverse order scores ``ORDER_FLOOR`` (0.5, below the default
0.6 cut) and one that did nothing of the plan scores 0.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from deepresearch.events import GuidedCall, LLMCall, ToolResultEvent
from deepresearch.runs import RunDir

MATCH_THRESHOLD = 0.4
"""Least Dice overlap of token sets for a run step to count as doing a plan step."""
MIN_SHARED = 2
"""Least tokens a match must share (fewer when either side has fewer): one common name is not a match."""
ORDER_FLOOR = 0.5
"""The share of the score that coverage earns whatever the order."""

StepKind = Literal["todo", "search", "open", "section"]

_LATIN = re.compile(r"[a-z0-9]+")
_CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
_TODO_ORDER = re.compile(r"(\d+)")
_FUNCTION_WORDS = frozenset(
    str.split(
        """a an the of to in on for and or but with by from at as is are was were be been being it its this
    that these those their there then than into onto over under about via per not no all any each
    which what who whom whose how why when where do does did can could should would will shall may
    might must our we you your they them he she his her i me my so if such also more most other out
    https http www com org net html htm md"""
    )
)
_GENERIC_WORDS = frozenset(
    str.split(
        """find search look identify collect gather review read write summarize summarise analyze
    analyse compare describe explain determine investigate examine check study research report
    information source data step plan using use based draft final result overview detail key main
    relevant"""
    )
)
_ZH_STOP_CHARS = "的了和与及或是在对把被将并等之其这那个些也都而就"
_ZH_SPLIT = re.compile(f"[{_ZH_STOP_CHARS}]")
_ZH_GENERIC = frozenset(
    str.split(
        """搜索 查找 检索 收集 阅读 撰写 报告 分析 总结 资料 信息 确定 了解 研究 调查 整理 比较 查阅 相关 说明
    描述 解释"""
    )
)
_ZH_GENERIC_SPLIT = re.compile("|".join([f"[{_ZH_STOP_CHARS}]", *sorted(_ZH_GENERIC)]))


@dataclass(frozen=True, slots=True)
class RunStep:
    """One thing the run did that a plan step can be matched against."""

    kind: StepKind
    text: str
    step: int
    """The model-call number of the event it came from."""


@dataclass(frozen=True)
class Alignment:
    """A run's agreement with a plan; ``matched[i]`` is the index in ``steps`` of the run step that
    did plan step ``i`` (``None`` when none did), with its overlap in ``similarity[i]`` (the best
    overlap seen when unmatched)."""

    score: float
    coverage: float
    order: float
    matched: list[int | None]
    similarity: list[float] = field(default_factory=list)
    steps: list[RunStep] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Scores, and each plan step's match spelled out, for a ledger line or a record."""
        return {
            "score": round(self.score, 4),
            "coverage": round(self.coverage, 4),
            "order": round(self.order, 4),
            "matched": self.matched,
            "matches": [
                None if index is None else {"kind": self.steps[index].kind, "text": self.steps[index].text}
                for index in self.matched
            ],
            "similarity": [round(value, 4) for value in self.similarity],
        }


def plan_alignment(run: RunDir, plan: Sequence[str]) -> Alignment:
    """How closely ``run`` followed ``plan`` (see the module docstring)."""
    return align(plan, run_steps(run))


def align(plan: Sequence[str], steps: Sequence[RunStep]) -> Alignment:
    """The alignment of ``plan`` with run steps already read (``run_steps``)."""
    step_tokens = [tokens(step.text) for step in steps]
    matched: list[int | None] = []
    similarity: list[float] = []
    for plan_step in plan:
        wanted = tokens(plan_step)
        overlaps = [dice(wanted, have) for have in step_tokens]
        found = _best(overlaps, steps, todo=True)
        if found is None:
            found = _best(overlaps, steps, todo=False)
        matched.append(found)
        similarity.append(overlaps[found] if found is not None else max(overlaps, default=0.0))
    coverage = sum(1 for index in matched if index is not None) / len(plan) if plan else 0.0
    order = order_agreement(matched)
    score = coverage * (ORDER_FLOOR + (1 - ORDER_FLOOR) * order)
    return Alignment(score, coverage, order, matched, similarity, list(steps))


def _best(overlaps: Sequence[float], steps: Sequence[RunStep], *, todo: bool) -> int | None:
    """The index of the todo step (or of the action) with the highest overlap at or above the
    threshold, the earliest among equals; ``None`` when none reaches it."""
    best: int | None = None
    for index, overlap in enumerate(overlaps):
        wanted = (steps[index].kind == "todo") == todo and overlap >= MATCH_THRESHOLD
        if wanted and (best is None or overlap > overlaps[best]):
            best = index
    return best


def order_agreement(matched: Sequence[int | None]) -> float:
    """Share of comparable pairs of matched plan steps that the run did in plan order."""
    positions = [index for index in matched if index is not None]
    if not positions:
        return 0.0
    concordant = discordant = 0
    for i, first in enumerate(positions):
        for second in positions[i + 1 :]:
            if first < second:
                concordant += 1
            elif first > second:
                discordant += 1
    return 1.0 if concordant + discordant == 0 else concordant / (concordant + discordant)


def dice(first: frozenset[str], second: frozenset[str]) -> float:
    """The Dice overlap of two token sets, 0 when they share fewer than ``MIN_SHARED`` tokens (or
    than the smaller set holds)."""
    shared = len(first & second)
    if not shared or shared < min(MIN_SHARED, len(first), len(second)):
        return 0.0
    return 2 * shared / (len(first) + len(second))


def tokens(text: str) -> frozenset[str]:
    """The content tokens of ``text``: stemmed Latin words and Chinese character bigrams, function
    words out, generic research words out unless nothing else remains."""
    normal = unicodedata.normalize("NFKC", text).lower()
    words: list[str] = []
    content: list[str] = []
    for word in _LATIN.findall(normal):
        if word not in _FUNCTION_WORDS:
            stem = _stem(word)
            words.append(stem)
            if word not in _GENERIC_WORDS and stem not in _GENERIC_WORDS:
                content.append(stem)
    for run in _CJK_RUN.findall(normal):
        words += _bigrams(_ZH_SPLIT.split(run))
        content += _bigrams(_ZH_GENERIC_SPLIT.split(run))
    return frozenset(content or words)


def _bigrams(parts: Iterable[str]) -> list[str]:
    grams: list[str] = []
    for part in parts:
        grams += [part] if len(part) == 1 else [part[i : i + 2] for i in range(len(part) - 1)]
    return grams


def _stem(word: str) -> str:
    """Enough of an English stemmer to make ``ranks``, ``ranked`` and ``ranking`` one token."""
    for suffix in ("ing", "ies", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix) and not word.endswith("ss"):
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


def run_steps(run: RunDir) -> list[RunStep]:
    """What ``run`` did, in order: todo steps, search queries, opened pages, guided sections."""
    events = run.events()
    titles = _titles(events)
    steps: list[RunStep] = []
    seen_todo: set[str] = set()
    for event in events:
        if isinstance(event, ToolResultEvent) and event.state and isinstance(event.state.get("todo"), dict):
            for task in _todo_tasks(event.state["todo"]):
                if task.lower() not in seen_todo:
                    seen_todo.add(task.lower())
                    steps.append(RunStep("todo", task, event.step))
        elif isinstance(event, LLMCall):
            steps += _call_steps(event, titles)
        elif isinstance(event, GuidedCall) and event.purpose == "plan":
            for section in event.result.get("sections") or []:
                if isinstance(section, dict):
                    text = " ".join(str(section.get(k) or "") for k in ("heading", "query")).strip()
                    if text:
                        steps.append(RunStep("section", text, event.step))
    return steps


def _todo_tasks(plan: dict[str, Any]) -> list[str]:
    """The task texts of a todo plan, in step-id order (natural: 2 before 10)."""

    def natural(key: str) -> list[Any]:
        return [int(part) if part.isdigit() else part for part in _TODO_ORDER.split(key)]

    tasks = []
    for key in sorted(plan, key=natural):
        item = plan[key]
        if isinstance(item, dict) and str(item.get("task") or "").strip():
            tasks.append(str(item["task"]).strip())
    return tasks


def _call_steps(event: LLMCall, titles: dict[str, str]) -> list[RunStep]:
    steps: list[RunStep] = []
    for call in event.message.get("tool_calls") or []:
        arguments = _arguments(call)
        for query in _strings(arguments.get("queries")):
            steps.append(RunStep("search", query, event.step))
        for url in _strings(arguments.get("urls")):
            steps.append(RunStep("open", titles.get(url) or _url_words(url), event.step))
    return steps


def _url_words(url: str) -> str:
    """What a URL says about its page without a title: the last part of its path, in words."""
    path = urlsplit(url).path.rstrip("/")
    return re.sub(r"[-_.+%]+", " ", path.rsplit("/", 1)[-1]) or urlsplit(url).netloc


def _arguments(call: Any) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    raw = function.get("arguments") if isinstance(function, dict) else None
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw) if isinstance(raw, str) else None
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list):
        return [str(item) for item in value if isinstance(item, str) and item.strip()]
    return []


def _titles(events: Iterable[Any]) -> dict[str, str]:
    """URL → the first title a tool result showed for it."""
    titles: dict[str, str] = {}
    for event in events:
        if isinstance(event, ToolResultEvent):
            for source in event.sources:
                url, title = source.get("url"), source.get("title")
                if isinstance(url, str) and isinstance(title, str) and title:
                    titles.setdefault(url, title)
    return titles
