"""DeepResearch Bench's RACE score: a report judged against the benchmark's reference article.

RACE is what the DRB leaderboard reports, and it is relative: per task, one comparative judge call
sees the task prompt, the task's criteria grouped by dimension (criterion and explanation, never the
weights) and two articles — the target first, the reference second, as the official grader orders
them — and scores both 0–10 on every criterion. Then, for each side,

    t_d = Σ_c s·cw / Σ_c cw          (criterion weights cw inside dimension d)
    T   = Σ_d dw · t_d                (dimension weights dw)

and the task's RACE is ``T / (T + R)``, per dimension ``t_d / (t_d + r_d)`` (0 when both are 0, as
the official code does). The benchmark is the mean over tasks, overall and per dimension.

Failures are accounted inside their dimension: a criterion with no valid score pair after the one
retry is dropped from its dimension's Σ cw (not from the task's). A dimension with no scored criterion
is dropped and the remaining dimension weights are renormalised (the ratio ``T / (T + R)`` does not
change by that; the side totals stay on the 0–10 scale); such a dimension is listed in
``failed_dimensions`` and gives no per-dimension ratio for the task. A task whose call failed (the
client's own retries exhausted, or no usable reply) has ``overall=None`` and counts as failed in the
summary instead of scoring anything.

The target is cleaned first (``drb.clean_article``: no citation markers, URLs or reference list), as
the official pipeline cleans it with an LLM call before judging. Prompts are ours (``race_en.j2``,
``race_zh.j2``; zh tasks get the zh prompt) and so is the reply shape: one JSON object keyed by
dimension, each a list of ``{criterion: <number>, article_1, article_2}`` (no per-criterion analysis,
no echoed criterion text: the completion stays small). A reply is read tolerantly (``json_repair``
through ``verdicts``); when it is unreadable, or leaves criteria out or scores them outside 0–10, the
judge is asked once more with the reason and the list of what is missing (``race_retry_*.j2``), and
the two replies are merged.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from deepresearch.errors import LLMError
from deepresearch.judge.drb import DrbTask, Language, clean_article
from deepresearch.judge.verdicts import InvalidJudgeOutput, load_json, refusal_in
from deepresearch.llm.client import ChatClient
from deepresearch.llm.messages import Message, Usage
from deepresearch.llm.tokens import count_tokens
from deepresearch.templates import render_prompt

logger = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 8
DEFAULT_MAX_INVALID_RETRIES = 1
"""Further calls after a reply that is unreadable or incomplete (one, as the issue asks)."""
MAX_SCORE = 10.0
_TARGET_KEYS = ("article_1", "article_1_score", "target", "target_score")
_REFERENCE_KEYS = ("article_2", "article_2_score", "reference", "reference_score")
_INDEX_KEYS = ("criterion", "index", "number", "id")

Key = tuple[str, int]
"""(dimension, 1-based criterion number inside it)."""


@dataclass(frozen=True, slots=True)
class CriterionScore:
    dimension: str
    number: int
    criterion: str
    weight: float
    target: float | None = None
    reference: float | None = None

    @property
    def failed(self) -> bool:
        return self.target is None or self.reference is None


@dataclass(slots=True)
class RaceScore:
    """One task's RACE: the ratios, both sides' weighted scores, every criterion, and the cost."""

    task_id: str
    language: Language
    topic: str = ""
    overall: float | None = None
    """``T / (T + R)``; ``None`` when the task failed."""
    dimensions: dict[str, float] = field(default_factory=dict)
    """Dimension → ``t_d / (t_d + r_d)``, for the dimensions that were scored."""
    target: float | None = None
    reference: float | None = None
    target_dimensions: dict[str, float] = field(default_factory=dict)
    reference_dimensions: dict[str, float] = field(default_factory=dict)
    criteria: list[CriterionScore] = field(default_factory=list)
    failed_dimensions: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    calls: int = 0
    error: str | None = None

    @property
    def failed_criteria(self) -> int:
        return sum(score.failed for score in self.criteria)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "language": self.language,
            "topic": self.topic,
            "overall": self.overall,
            "dimensions": self.dimensions,
            "target": self.target,
            "reference": self.reference,
            "target_dimensions": self.target_dimensions,
            "reference_dimensions": self.reference_dimensions,
            "failed_criteria": self.failed_criteria,
            "failed_dimensions": self.failed_dimensions,
            "criteria": [
                {
                    "dimension": c.dimension,
                    "number": c.number,
                    "criterion": c.criterion,
                    "weight": c.weight,
                    "target": c.target,
                    "reference": c.reference,
                }
                for c in self.criteria
            ],
            "usage": self.usage.to_dict(),
            "calls": self.calls,
            "error": self.error,
        }


@dataclass(slots=True)
class RaceSummary:
    """The benchmark: means over the tasks that were scored, with what failed and what it cost."""

    overall: float | None
    dimensions: dict[str, float]
    """Dimension → mean of the per-task ratios over the tasks that scored it."""
    topics: dict[str, float]
    """Topic (``query.jsonl``) → mean overall ratio of its scored tasks."""
    tasks: int
    scored: int
    failed_tasks: list[str]
    failed_criteria: int
    failed_dimensions: int
    """(task, dimension) pairs dropped because none of their criteria was scored."""
    usage: Usage
    calls: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "overall": self.overall,
            "dimensions": self.dimensions,
            "topics": self.topics,
            "tasks": self.tasks,
            "scored": self.scored,
            "failed_tasks": self.failed_tasks,
            "failed_criteria": self.failed_criteria,
            "failed_dimensions": self.failed_dimensions,
            "tokens": {
                "prompt": self.usage.prompt_tokens,
                "completion": self.usage.completion_tokens,
                "total": self.usage.total_tokens,
                "per_task": self.usage.total_tokens / self.tasks if self.tasks else 0.0,
            },
            "cost_usd": round(self.usage.cost_usd, 8),
            "calls": self.calls,
        }


# --- prompts


def render_race_prompt(task: DrbTask, target: str, reference: str, *, language: Language) -> str:
    """The comparative prompt for ``task`` (criteria and explanations, no weights), in ``language``."""
    dimensions = [
        {
            "key": dimension,
            "criteria": [
                {"number": number, "criterion": c.criterion, "explanation": c.explanation}
                for number, c in enumerate(criteria, 1)
            ],
        }
        for dimension, criteria in task.criteria.items()
    ]
    return _render(
        f"race_{language}.j2",
        task_prompt=task.prompt,
        article_1=target,
        article_2=reference,
        dimensions=dimensions,
    )


def race_prompt_tokens(task: DrbTask, target: str, reference: str, *, language: Language) -> int:
    """Tokens (``o200k_base``) of the prompt of one task: the input side of its single judge call."""
    return count_tokens(render_race_prompt(task, target, reference, language=language))


def _render(name: str, /, **variables: Any) -> str:
    return render_prompt("deepresearch.judge", name, variables, trim_blocks=True)


# --- scoring (pure)


def score_race(task: DrbTask, scores: Mapping[Key, tuple[float, float]], *, language: Language) -> RaceScore:
    """The RACE of ``task`` from the judge's (target, reference) scores by criterion; a criterion
    absent from ``scores`` failed (see the module docstring for the accounting)."""
    result = RaceScore(task.task_id, language, task.topic)
    weighted_t = weighted_r = dimension_total = 0.0
    for dimension, criteria in task.criteria.items():
        sum_t = sum_r = sum_w = 0.0
        for number, c in enumerate(criteria, 1):
            pair = scores.get((dimension, number))
            result.criteria.append(
                CriterionScore(dimension, number, c.criterion, c.weight, *(pair or (None, None)))
            )
            if pair is not None:
                sum_t += pair[0] * c.weight
                sum_r += pair[1] * c.weight
                sum_w += c.weight
        if sum_w == 0:
            result.failed_dimensions.append(dimension)
            continue
        t_d, r_d = sum_t / sum_w, sum_r / sum_w
        result.target_dimensions[dimension] = t_d
        result.reference_dimensions[dimension] = r_d
        result.dimensions[dimension] = _ratio(t_d, r_d)
        dw = task.dimension_weight[dimension]
        weighted_t += dw * t_d
        weighted_r += dw * r_d
        dimension_total += dw
    if dimension_total == 0:
        result.error = "no criterion was scored"
        return result
    result.target = weighted_t / dimension_total
    result.reference = weighted_r / dimension_total
    result.overall = _ratio(result.target, result.reference)
    return result


def race_benchmark(scores: Iterable[RaceScore]) -> RaceSummary:
    """The mean RACE over tasks (each task weighs the same), overall and per dimension."""
    scores = list(scores)
    scored = [score for score in scores if score.overall is not None]
    per_dimension: dict[str, list[float]] = {}
    per_topic: dict[str, list[float]] = {}
    for score in scored:
        for dimension, ratio in score.dimensions.items():
            per_dimension.setdefault(dimension, []).append(ratio)
        if score.topic and score.overall is not None:
            per_topic.setdefault(score.topic, []).append(score.overall)
    usage = Usage()
    for score in scores:
        usage.add(score.usage)
    return RaceSummary(
        overall=math.fsum(s.overall for s in scored if s.overall is not None) / len(scored)
        if scored
        else None,
        dimensions={dim: math.fsum(values) / len(values) for dim, values in per_dimension.items()},
        topics={topic: math.fsum(values) / len(values) for topic, values in sorted(per_topic.items())},
        tasks=len(scores),
        scored=len(scored),
        failed_tasks=[score.task_id for score in scores if score.overall is None],
        failed_criteria=sum(score.failed_criteria for score in scores),
        failed_dimensions=sum(len(score.failed_dimensions) for score in scored),
        usage=usage,
        calls=sum(score.calls for score in scores),
    )


def _ratio(target: float, reference: float) -> float:
    return target / (target + reference) if target + reference > 0 else 0.0


# --- reading the judge's reply (pure)


def parse_race_reply(text: str, task: DrbTask) -> tuple[dict[Key, tuple[float, float]], dict[Key, str]]:
    """The valid (target, reference) pairs in a reply, and why each other criterion has none.
    Raises ``InvalidJudgeOutput`` when the reply holds no dimension of ``task`` at all."""
    data = load_json(text)
    if isinstance(data, dict) and isinstance(data.get("scores"), dict):
        data = data["scores"]
    if not isinstance(data, dict):
        if not text.strip():
            raise InvalidJudgeOutput("the reply was empty")
        if refusal_in(text):
            raise InvalidJudgeOutput("the reply declined to score the articles")
        raise InvalidJudgeOutput("no JSON object was found in the reply")
    keys = {_dimension_key(key): value for key, value in data.items()}
    found: dict[Key, tuple[float, float]] = {}
    problems: dict[Key, str] = {}
    matched = 0
    for dimension, criteria in task.criteria.items():
        items = keys.get(_dimension_key(dimension))
        if not isinstance(items, list):
            problems.update(((dimension, n), "missing") for n in range(1, len(criteria) + 1))
            continue
        matched += 1
        by_text = {_normalise(c.criterion): n for n, c in enumerate(criteria, 1)}
        invalid: dict[int, str] = {}
        for position, item in enumerate(items, 1):
            if not isinstance(item, dict):
                continue
            number = _number_of(item, by_text, position if len(items) == len(criteria) else None)
            if number is None or not 1 <= number <= len(criteria) or (dimension, number) in found:
                continue
            pair = _pair(item)
            if isinstance(pair, str):
                invalid[number] = pair
            else:
                found[dimension, number] = pair
                invalid.pop(number, None)
        for number in range(1, len(criteria) + 1):
            if (dimension, number) not in found:
                problems[dimension, number] = invalid.get(number, "missing")
    if matched == 0:
        names = ", ".join(task.criteria)
        raise InvalidJudgeOutput(f"the JSON had none of the dimensions {names}")
    return found, problems


def _dimension_key(name: Any) -> str:
    return re.sub(r"[\s/-]+", "_", str(name).strip().casefold())


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def _number_of(item: dict[str, Any], by_text: dict[str, int], position: int | None) -> int | None:
    for key in _INDEX_KEYS:
        value = item.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            digits = re.fullmatch(r"\s*(?:#|no\.?|criterion)?\s*(\d+)\s*\.?\s*", value, re.IGNORECASE)
            if digits:
                return int(digits.group(1))
            if _normalise(value) in by_text:
                return by_text[_normalise(value)]
    return position


def _pair(item: dict[str, Any]) -> tuple[float, float] | str:
    """(target, reference) scores of one item, or why they are unusable."""
    values: list[float] = []
    for keys in (_TARGET_KEYS, _REFERENCE_KEYS):
        raw = next((item[key] for key in keys if key in item), None)
        score = _score(raw)
        if score is None:
            return f"no score 0–10 for article {len(values) + 1} (got {raw!r})"
        values.append(score)
    return values[0], values[1]


def _score(value: Any) -> float | None:
    if isinstance(value, str):
        try:
            value = float(value.strip().split("/")[0])
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if 0.0 <= number <= MAX_SCORE else None


# --- the judge call


async def race_task(
    client: ChatClient,
    task: DrbTask,
    target: str,
    reference: str,
    *,
    language: Language | None = None,
    clean: bool = True,
    max_invalid_retries: int = DEFAULT_MAX_INVALID_RETRIES,
) -> RaceScore:
    """The RACE of ``target`` on ``task`` against ``reference``, from one comparative judge call (plus
    one retry when the reply is unreadable or incomplete). ``language`` defaults to the task's;
    ``clean`` strips the target's citations and reference list first, as the official pipeline does
    (the benchmark's reference articles come cleaned)."""
    language = language or task.language
    if clean:
        target = clean_article(target)
    prompt = render_race_prompt(task, target, reference, language=language)
    messages: list[Message] = [{"role": "user", "content": prompt}]
    found: dict[Key, tuple[float, float]] = {}
    usage, calls, problem = Usage(), 0, ""
    for attempt in range(max_invalid_retries + 1):
        try:
            completion = await client.complete(messages)
        except LLMError as exc:
            problem = f"{type(exc).__name__}: {exc}"
            break
        usage.add(completion.usage)
        calls += 1
        try:
            pairs, missing = parse_race_reply(completion.content, task)
            problem = ""
        except InvalidJudgeOutput as exc:
            pairs, missing, problem = {}, {}, str(exc)
        for key, pair in pairs.items():
            found.setdefault(key, pair)
        missing = {key: why for key, why in missing.items() if key not in found}
        if not problem and not missing:
            break
        logger.info(
            "race: task %s, attempt %d: %s",
            task.task_id,
            attempt + 1,
            problem or f"{len(missing)} criteria missing or invalid",
        )
        messages = [
            messages[0],
            {"role": "assistant", "content": completion.content},
            {
                "role": "user",
                "content": _render(
                    f"race_retry_{language}.j2",
                    problem=problem,
                    missing=[{"dimension": d, "number": n, "reason": why} for (d, n), why in missing.items()],
                ),
            },
        ]
    result = score_race(task, found, language=language)
    result.usage, result.calls = usage, calls
    if result.overall is None:
        result.error = problem or result.error
    logger.info(
        "race: task %s scored %s, %d of %d criteria failed, %d calls, %d tokens",
        task.task_id,
        "n/a" if result.overall is None else f"{result.overall:.4f}",
        result.failed_criteria,
        len(result.criteria),
        calls,
        usage.total_tokens,
    )
    return result


async def race_many(
    client: ChatClient,
    tasks: Iterable[DrbTask],
    targets: Mapping[str, str],
    references: Mapping[str, str],
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> AsyncIterator[RaceScore]:
    """``race_task`` for every task (at most ``concurrency`` calls in flight), yielding each as it
    finishes; a task without a target report or a reference article yields a failed score saying so."""
    semaphore = asyncio.Semaphore(max(1, concurrency))

    async def one(task: DrbTask) -> RaceScore:
        target, reference = targets.get(task.task_id), references.get(task.task_id)
        if target is None or reference is None:
            failed = score_race(task, {}, language=task.language)
            failed.error = f"no {'report' if target is None else 'reference article'} for task {task.task_id}"
            return failed
        async with semaphore:
            return await race_task(client, task, target, reference)

    jobs = [asyncio.ensure_future(one(task)) for task in tasks]
    try:
        for finished in asyncio.as_completed(jobs):
            yield await finished
    finally:
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
