"""The Checklist-style Judger: grades one report against its task's rubrics with an LLM judge.

One ``JudgeRecord`` per rubric comes out (the contract in ARCHITECTURE.md). How the verdicts are
obtained is what this module decides:

- **Prompts** are Jinja files in ``judge/prompts/`` (``positive.j2`` for requirements, ``negative.j2``
  for flaws, ``batch.j2`` for several rubrics of one polarity in one call, ``chunk_evidence.j2`` and
  ``synthesis.j2`` for reports too long to read at once, ``retry_invalid.j2`` after an unreadable
  reply). Every prompt carries the task prompt, so the judge knows what was asked.
- **Prompt families** (``prompts=``): ``paper`` is the above, the Step-DeepResearch paper's ternary
  prompts with negative-rubric handling, the default for our own tasks and the RL reward. The
  ``official-*`` families follow a benchmark's released evaluator in its inputs and answer format (our
  own wording): ``official-researchrubrics`` asks a binary satisfied / not satisfied question showing
  the criterion with its axis and weight and *not* the task prompt; ``official-researcherbench`` asks
  whether a rubric point, shown with its weight, is covered (yes / no). Their answers read into the same
  verdicts (binary: ``satisfied`` or ``not_satisfied``; a judge that answers "partially" anyway is
  scored by the protocol's mode). Both polarities use the same question there, as the evaluators do: a
  negative weight marks a flaw, and "satisfied" means the report has it. Long reports still go through
  the shared chunk and synthesis prompts.
- **Trials**: ``trials=n`` grades every rubric n times independently. The record's verdict is the
  majority, a tie goes to the middle verdict (``partially``), and its score is the mean ternary score;
  each trial is kept. The paper samples its judge at temperature 0; that is the client's setting, so
  build the client from ``judge_llm_config(config)`` (or set ``temperature=0`` yourself).
- **Unreadable replies** (no JSON, no known verdict, a refusal) are sent back to the model with the
  reason, up to ``max_invalid_retries`` times; then the rubric *fails* (``failed=True``,
  ``verdict=None``, ``error``) — never a silent 0. An ``LLMError`` (the client has already retried with
  backoff) fails the rubrics of that call only; the rest of the report is still graded. A rubric with
  some failed trials keeps the verdict of the others, and ``error`` says how many failed.
- **Batching**: ``batch=k`` grades up to k rubrics of the same polarity in one call; items the reply
  leaves out or garbles are graded one by one.
- **Long reports** (more than ``max_report_tokens``) are split at paragraph boundaries; each part is
  asked for the passages relevant to the rubrics, then one synthesis call decides from them.
- **Concurrency**: at most ``concurrency`` judge calls in flight (a semaphore per event loop).
- **Cache**: with a ``JudgeCache``, each finished trial is stored and a later identical question is
  answered from disk without a request (the key is explained in ``judge/cache.py``).
- **Cost**: ``usage`` of every call goes into the task's tally, the judge's running total, and, split
  evenly between the rubrics a call served, into each record's ``cost_usd``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, partial
from importlib import resources
from typing import Any, Literal, TypeVar

from deepresearch.errors import ConfigError, LLMError
from deepresearch.judge.cache import JudgeCache, cache_key, report_digest
from deepresearch.judge.records import JudgeRecord, Trial
from deepresearch.judge.rubrics import Rubric, Task
from deepresearch.judge.verdicts import (
    ChunkEvidence,
    InvalidJudgeOutput,
    majority,
    parse_batch,
    parse_evidence,
    parse_verdict,
)
from deepresearch.llm.client import ChatClient, LLMConfig
from deepresearch.llm.messages import Completion, Message, Usage
from deepresearch.llm.tokens import count_tokens
from deepresearch.templates import render_prompt

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_REPORT_TOKENS = 100_000
"""Reports longer than this (``o200k_base`` tokens) are read in parts; ResearchRubrics' evaluator
uses 100k-token chunks too. Lower it for judges with small context windows."""
DEFAULT_CONCURRENCY = 8
TEMPLATES = (
    "_context.j2",
    "positive.j2",
    "negative.j2",
    "batch.j2",
    "chunk_evidence.j2",
    "synthesis.j2",
    "retry_invalid.j2",
)
"""The files in ``judge/prompts/`` that every prompt family renders (and whose hash versions the cache)."""
PromptFamily = Literal["paper", "official-researchrubrics", "official-researcherbench"]
PROMPT_FAMILIES: dict[str, tuple[str, str] | None] = {
    "paper": None,
    "official-researchrubrics": ("official_researchrubrics.j2", "official_researchrubrics_batch.j2"),
    "official-researcherbench": ("official_researcherbench.j2", "official_researcherbench_batch.j2"),
}
"""Family → its (single, batch) templates; ``paper`` uses ``positive``/``negative``/``batch.j2``."""
DEFAULT_MAX_INVALID_RETRIES = 2

_SEPARATORS = (
    re.compile(r"\n[ \t]*\n\s*"),
    re.compile(r"\n"),
    re.compile(r"(?<=[.!?。！？;])\s+"),
    re.compile(r"\s+"),
)
"""Where a long report may be cut, best first: paragraphs, lines, sentences, words."""
_NOTHING = re.compile(r"^\W*(nothing|no)\s+(relevant|evidence)", re.IGNORECASE)


# --- prompts


def render(name: str, /, **variables: Any) -> str:
    """Render ``judge/prompts/<name>`` with ``variables``; a missing variable raises."""
    return render_prompt("deepresearch.judge", name, variables, trim_blocks=True)


@cache
def prompt_version(family: str = "paper") -> str:
    """A short hash of the templates ``family`` renders: a changed prompt must not reuse cached verdicts.

    Only ``TEMPLATES`` and the family's own count; other modules' templates in the same folder (rubric
    synthesis) do not. The paper family's hash is what it was before families existed.
    """
    digest = hashlib.sha256()
    folder = resources.files("deepresearch.judge").joinpath("prompts")
    for name in sorted({*TEMPLATES, *(PROMPT_FAMILIES[family] or ())}):
        digest.update(name.encode() + b"\0" + folder.joinpath(name).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def judge_llm_config(config: LLMConfig) -> LLMConfig:
    """``config`` with ``temperature=0``, the judge's sampling setting in the Step-DeepResearch paper."""
    return config.model_copy(update={"temperature": 0.0})


# --- long reports


def split_report(text: str, max_tokens: int, *, count: Callable[[str], int] = count_tokens) -> list[str]:
    """``text`` in consecutive parts of at most about ``max_tokens`` tokens, cut at paragraph breaks
    (lines, sentences, then words only for a paragraph too long by itself)."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    chunks: list[str] = []
    current, size = "", 0
    for piece, tokens in _pieces(text.strip(), max_tokens, count, 0):
        if current and size + tokens > max_tokens:
            chunks.append(current.strip())
            current, size = "", 0
        current += piece
        size += tokens
    if current.strip():
        chunks.append(current.strip())
    return chunks


def _pieces(text: str, max_tokens: int, count: Callable[[str], int], level: int) -> list[tuple[str, int]]:
    """``text`` as (piece, tokens) that each fit, separators kept, so joining them gives ``text`` back."""
    tokens = count(text)
    if tokens <= max_tokens:
        return [(text, tokens)] if text else []
    if level == len(_SEPARATORS):  # one unbroken run longer than a chunk: cut it by characters
        width = max(1, len(text) * max_tokens // (tokens + 1))
        return [(text[i : i + width], count(text[i : i + width])) for i in range(0, len(text), width)]
    parts, start = [], 0
    for match in _SEPARATORS[level].finditer(text):
        if match.end() > start:
            parts.append(text[start : match.end()])
            start = match.end()
    parts.append(text[start:])
    if len(parts) == 1:
        return _pieces(text, max_tokens, count, level + 1)
    return [piece for part in parts for piece in _pieces(part, max_tokens, count, level + 1)]


# --- results


@dataclass(slots=True)
class TaskGrades:
    """The records of one task's report and what grading it cost."""

    task_id: str
    records: list[JudgeRecord]
    usage: Usage = field(default_factory=Usage)
    calls: int = 0
    """Judge requests made (cache hits make none)."""


class _Unusable(Exception):
    """The judge's replies stayed unreadable after every retry; the message says why."""


@dataclass(frozen=True, slots=True)
class _Item:
    position: int
    """Index of the rubric in ``task.rubrics``."""
    rubric: Rubric


@dataclass(slots=True)
class _Grading:
    """One report being graded: its inputs and its cost tally."""

    task: Task
    report: str
    report_sha256: str
    chunks: list[str] | None
    method: str
    usage: Usage = field(default_factory=Usage)
    calls: int = 0
    costs: dict[int, float] = field(default_factory=dict)


Outcome = Trial | str
"""A trial, or why it failed."""


class Judge:
    """Grades reports against rubrics with one judge model; see the module docstring."""

    def __init__(
        self,
        client: ChatClient,
        *,
        model_name: str | None = None,
        trials: int = 1,
        batch: int = 1,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_report_tokens: int = DEFAULT_MAX_REPORT_TOKENS,
        chunk_tokens: int | None = None,
        cache: JudgeCache | None = None,
        max_invalid_retries: int = DEFAULT_MAX_INVALID_RETRIES,
        prompts: str = "paper",
    ) -> None:
        if prompts not in PROMPT_FAMILIES:
            raise ConfigError(f"unknown prompt family {prompts!r}; use one of {', '.join(PROMPT_FAMILIES)}")
        for name, value, least in (
            ("trials", trials, 1),
            ("batch", batch, 1),
            ("concurrency", concurrency, 1),
            ("max_report_tokens", max_report_tokens, 1),
            ("max_invalid_retries", max_invalid_retries, 0),
        ):
            if value < least:
                raise ConfigError(f"judge {name} must be at least {least}, not {value}")
        self.client = client
        self.model_name = model_name or client.config.model
        """Recorded in every ``JudgeRecord`` and part of every cache key."""
        self.trials = trials
        self.batch = batch
        self.concurrency = concurrency
        self.max_report_tokens = max_report_tokens
        self.chunk_tokens = chunk_tokens or max_report_tokens
        """Tokens per part of a long report (default: ``max_report_tokens``)."""
        self.cache = cache
        self.max_invalid_retries = max_invalid_retries
        self.prompts = prompts
        """The prompt family (``PROMPT_FAMILIES``); part of every cache key."""
        self.usage = Usage()
        """Everything this judge has spent so far, over all tasks."""
        self.calls = 0
        self._semaphore: asyncio.Semaphore | None = None
        self._semaphore_loop: asyncio.AbstractEventLoop | None = None

    # --- public API

    async def grade_task(self, task: Task, report: str) -> list[JudgeRecord]:
        """One record per rubric of ``task``, in rubric order."""
        return (await self.grade(task, report)).records

    async def grade(self, task: Task, report: str) -> TaskGrades:
        """The records of ``task`` with the usage and number of calls grading them took."""
        long = count_tokens(report) > self.max_report_tokens
        chunks = split_report(report, self.chunk_tokens) if long else None
        method = f"chunked:{self.chunk_tokens}" if chunks else "batch" if self.batch > 1 else "single"
        grading = _Grading(task, report, report_digest(report), chunks, method)
        items = [_Item(position, rubric) for position, rubric in enumerate(task.rubrics)]
        per_trial = await asyncio.gather(*(self._grade_trial(grading, items, t) for t in range(self.trials)))
        records = [
            self._record(task, item, [outcomes[item.position] for outcomes in per_trial], grading)
            for item in items
        ]
        failed = sum(record.failed for record in records)
        logger.info(
            "judge %s: task %s graded (%s%s), %d rubrics, %d failed, %d calls, $%.4f",
            self.model_name,
            task.task_id,
            method,
            f", {len(chunks)} parts" if chunks else "",
            len(records),
            failed,
            grading.calls,
            grading.usage.cost_usd,
        )
        return TaskGrades(task.task_id, records, grading.usage, grading.calls)

    async def grade_many(
        self, tasks: Iterable[Task], reports: Mapping[str, str]
    ) -> AsyncIterator[TaskGrades]:
        """Grade every task's report (``reports`` by task id), yielding each task as it finishes.

        A task without a report yields failed records saying so. ``self.usage`` is the running total.
        """
        jobs: list[asyncio.Future[TaskGrades]] = []
        for task in tasks:
            report = reports.get(task.task_id)
            if report is None:
                jobs.append(asyncio.ensure_future(self._no_report(task)))
            else:
                jobs.append(asyncio.ensure_future(self.grade(task, report)))
        try:
            for finished in asyncio.as_completed(jobs):
                yield await finished
        finally:
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)

    # --- one trial of every rubric

    async def _grade_trial(self, grading: _Grading, items: list[_Item], trial: int) -> dict[int, Outcome]:
        cached = await asyncio.gather(*(self._cached(grading, item, trial) for item in items))
        outcomes: dict[int, Outcome] = {
            item.position: hit for item, hit in zip(items, cached, strict=True) if hit is not None
        }
        todo = [item for item, hit in zip(items, cached, strict=True) if hit is None]
        groups = [
            same[start : start + self.batch]
            for same in ([i for i in todo if not i.rubric.negative], [i for i in todo if i.rubric.negative])
            for start in range(0, len(same), self.batch)
        ]
        for result in await asyncio.gather(*(self._grade_group(grading, group, trial) for group in groups)):
            outcomes.update(result)
        return outcomes

    async def _grade_group(self, grading: _Grading, group: list[_Item], trial: int) -> dict[int, Outcome]:
        if grading.chunks is not None:
            return await self._grade_chunked(grading, group, trial)
        if len(group) == 1:
            return {group[0].position: await self._grade_single(grading, group[0], trial)}
        negative = group[0].rubric.negative
        official = PROMPT_FAMILIES[self.prompts]
        prompt = render(
            official[1] if official else "batch.j2",
            task_prompt=grading.task.prompt,
            report=grading.report,
            negative=negative,
            criteria=[
                {
                    "index": i,
                    "criterion": item.rubric.criterion,
                    "axis": item.rubric.axis,
                    "weight": _weight(item.rubric.weight),
                }
                for i, item in enumerate(group, 1)
            ],
        )
        parse = partial(parse_batch, count=len(group))
        try:
            found = await self._ask(grading, [_user(prompt)], parse, group)
        except LLMError as exc:
            return dict.fromkeys((item.position for item in group), _describe(exc))
        except _Unusable as exc:
            logger.info("judge %s: batch reply unusable (%s); grading one by one", self.model_name, exc)
            found = {}
        outcomes: dict[int, Outcome] = {}
        for index, item in enumerate(group, 1):
            if index in found:
                outcomes[item.position] = found[index]
                await self._store(grading, item, trial, found[index], "batch")
        missing = [item for index, item in enumerate(group, 1) if index not in found]
        singles = await asyncio.gather(*(self._grade_single(grading, item, trial) for item in missing))
        outcomes.update({item.position: outcome for item, outcome in zip(missing, singles, strict=True)})
        return outcomes

    async def _grade_single(self, grading: _Grading, item: _Item, trial: int) -> Outcome:
        official = PROMPT_FAMILIES[self.prompts]
        prompt = render(
            official[0] if official else "negative.j2" if item.rubric.negative else "positive.j2",
            task_prompt=grading.task.prompt,
            report=grading.report,
            criterion=item.rubric.criterion,
            axis=item.rubric.axis,
            weight=_weight(item.rubric.weight),
        )
        try:
            result = await self._ask(grading, [_user(prompt)], parse_verdict, [item])
        except (LLMError, _Unusable) as exc:
            return _describe(exc)
        await self._store(grading, item, trial, result, "single")
        return result

    async def _grade_chunked(self, grading: _Grading, group: list[_Item], trial: int) -> dict[int, Outcome]:
        """Evidence from every part of the report, then one synthesis call for the group."""
        chunks = grading.chunks or []
        criteria = [
            {"index": i, "criterion": item.rubric.criterion, "negative": item.rubric.negative}
            for i, item in enumerate(group, 1)
        ]
        asks = [
            self._ask(
                grading,
                [
                    _user(
                        render(
                            "chunk_evidence.j2",
                            task_prompt=grading.task.prompt,
                            chunk=chunk,
                            part=part,
                            parts=len(chunks),
                            criteria=criteria,
                        )
                    )
                ],
                partial(parse_evidence, count=len(group), part=part),
                group,
            )
            for part, chunk in enumerate(chunks, 1)
        ]
        try:
            per_part = await _all(asks)
        except (LLMError, _Unusable) as exc:
            return dict.fromkeys((item.position for item in group), _describe(exc))
        evidence = {
            index: [found[index] for found in per_part if index in found and _relevant(found[index])]
            for index in range(1, len(group) + 1)
        }
        outcomes: dict[int, Outcome] = {}
        try:
            decided = await self._synthesise(grading, group, list(range(1, len(group) + 1)), evidence)
        except LLMError as exc:
            return dict.fromkeys((item.position for item in group), _describe(exc))
        except _Unusable:
            decided = {}
        for index in range(1, len(group) + 1):
            item = group[index - 1]
            outcome: Outcome | None = decided.get(index)
            if outcome is None:  # left out of the group's answer: ask for this rubric alone
                try:
                    outcome = (await self._synthesise(grading, group, [index], evidence))[index]
                except (LLMError, _Unusable) as exc:
                    outcome = _describe(exc)
            if isinstance(outcome, Trial):
                await self._store(grading, item, trial, outcome, grading.method)
            outcomes[item.position] = outcome
        return outcomes

    async def _synthesise(
        self,
        grading: _Grading,
        group: list[_Item],
        indices: list[int],
        evidence: dict[int, list[ChunkEvidence]],
    ) -> dict[int, Trial]:
        """Verdicts for ``group`` items ``indices`` (1-based, renumbered 1.. in the prompt) from evidence."""
        criteria = [
            {
                "index": number,
                "criterion": group[index - 1].rubric.criterion,
                "negative": group[index - 1].rubric.negative,
                "evidence": evidence[index],
            }
            for number, index in enumerate(indices, 1)
        ]
        prompt = render(
            "synthesis.j2",
            task_prompt=grading.task.prompt,
            parts=len(grading.chunks or []),
            criteria=criteria,
        )
        served = [group[index - 1] for index in indices]
        found = await self._ask(grading, [_user(prompt)], partial(parse_batch, count=len(indices)), served)
        return {indices[number - 1]: trial for number, trial in found.items()}

    # --- calls

    async def _ask(
        self, grading: _Grading, messages: list[Message], parse: Callable[[str], T], served: list[_Item]
    ) -> T:
        """``parse`` of the judge's reply; an unreadable reply goes back to the judge with the reason."""
        attempts = self.max_invalid_retries + 1
        conversation = messages
        problem = ""
        for attempt in range(1, attempts + 1):
            completion = await self._complete(grading, conversation, served)
            try:
                return parse(completion.content)
            except InvalidJudgeOutput as exc:
                problem = str(exc)
            logger.info(
                "judge %s: unusable reply on task %s, attempt %d of %d: %s",
                self.model_name,
                grading.task.task_id,
                attempt,
                attempts,
                problem,
            )
            conversation = [
                *messages,
                {"role": "assistant", "content": completion.content},
                _user(render("retry_invalid.j2", problem=problem)),
            ]
        raise _Unusable(f"no usable judge reply after {attempts} attempt(s): {problem}")

    async def _complete(self, grading: _Grading, messages: list[Message], served: list[_Item]) -> Completion:
        async with self._limit():
            completion = await self.client.complete(messages)
        usage = completion.usage
        grading.usage.add(usage)
        grading.calls += 1
        self.usage.add(usage)
        self.calls += 1
        share = usage.cost_usd / len(served)
        for item in served:
            grading.costs[item.position] = grading.costs.get(item.position, 0.0) + share
        return completion

    def _limit(self) -> asyncio.Semaphore:
        """The concurrency semaphore of the running loop (a new loop, e.g. another ``asyncio.run``,
        gets a new one: a semaphore cannot cross loops)."""
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._semaphore_loop is not loop:
            self._semaphore = asyncio.Semaphore(self.concurrency)
            self._semaphore_loop = loop
        return self._semaphore

    # --- cache

    def _key(self, grading: _Grading, item: _Item, trial: int, method: str) -> str:
        return cache_key(
            judge_model=self.model_name,
            temperature=self.client.config.temperature,
            prompt_version=prompt_version(self.prompts),
            prompt_family=self.prompts,
            method=method,
            criterion=item.rubric.criterion,
            negative=item.rubric.negative,
            task_prompt=grading.task.prompt,
            report_sha256=grading.report_sha256,
            trial_index=trial,
        )

    async def _cached(self, grading: _Grading, item: _Item, trial: int) -> Trial | None:
        if self.cache is None:
            return None
        # a batch run falls back to single calls for some rubrics, and stores them as such
        methods = [grading.method, "single"] if grading.method == "batch" else [grading.method]
        for method in methods:
            hit = await self.cache.get(self._key(grading, item, trial, method))
            if hit is not None:
                return hit
        return None

    async def _store(self, grading: _Grading, item: _Item, trial: int, result: Trial, method: str) -> None:
        if self.cache is None:
            return
        await self.cache.put(
            self._key(grading, item, trial, method),
            result,
            judge_model=self.model_name,
            prompt_version=prompt_version(self.prompts),
            method=method,
            criterion=item.rubric.criterion,
            report_sha256=grading.report_sha256,
            trial_index=trial,
        )

    # --- records

    def _record(self, task: Task, item: _Item, outcomes: list[Outcome], grading: _Grading) -> JudgeRecord:
        rubric = item.rubric
        base = JudgeRecord(
            task_id=task.task_id,
            criterion=rubric.criterion,
            axis=rubric.axis,
            weight=rubric.weight,
            role=rubric.role or ("negative" if rubric.negative else "explicit"),
            fatal=rubric.fatal,
            judge_model=self.model_name,
            cost_usd=grading.costs.get(item.position, 0.0),
        )
        trials = [outcome for outcome in outcomes if isinstance(outcome, Trial)]
        errors = list(dict.fromkeys(outcome for outcome in outcomes if isinstance(outcome, str)))
        if not trials:
            return base.model_copy(update={"failed": True, "error": "; ".join(errors)})
        verdict = majority(trial.verdict for trial in trials)
        lead = next((trial for trial in trials if trial.verdict == verdict), trials[0])
        failed_trials = len(outcomes) - len(trials)
        return base.model_copy(
            update={
                "verdict": verdict,
                "score": sum(trial.score for trial in trials) / len(trials),
                "trials": trials,
                "reasoning": lead.reasoning,
                "evidence": lead.evidence,
                "error": f"{failed_trials} of {len(outcomes)} trials failed: {errors[0]}" if errors else None,
            }
        )

    async def _no_report(self, task: Task) -> TaskGrades:
        error = f"no report for task {task.task_id}"
        records = [
            self._record(task, _Item(position, rubric), [error], _Grading(task, "", "", None, "none"))
            for position, rubric in enumerate(task.rubrics)
        ]
        return TaskGrades(task.task_id, records)


def _user(content: str) -> Message:
    return {"role": "user", "content": content}


def _weight(weight: float) -> str:
    """A weight as a rubric writes it: ``3``, ``-1``, ``0.5``."""
    return f"{weight:g}"


def _describe(exc: Exception) -> str:
    return str(exc) if isinstance(exc, _Unusable) else f"{type(exc).__name__}: {exc}"


def _relevant(found: ChunkEvidence) -> bool:
    return bool(found.quotes) or bool(found.note and not _NOTHING.match(found.note))


async def _all(awaitables: Sequence[Awaitable[T]]) -> list[T]:
    """Every result, in order; the first failure cancels the others (no point paying for them)."""
    jobs = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        return await asyncio.gather(*jobs)
    except BaseException:
        for job in jobs:
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        raise
