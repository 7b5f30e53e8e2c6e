"""The pairwise judge: which of two reports for the same request is better, overall and on ADR-Bench's
four dimensions, asked of an LLM in both presentation orders.

ADR-Bench (Step-DeepResearch §5.3) compares reports side by side because absolute scores drift
between reviewers while comparisons stay stable. A model reviewer adds its own bias: it tends to
prefer whichever report it reads first (or second). So every pair is judged twice, A as "Report 1"
and then B as "Report 1", and the two readings are combined per dimension: when they agree, that is
the result; when they disagree, the result is a **tie** — a preference that flips with the order is a
preference for a position, not for a report.

The prompt (``bench/prompts/pairwise.j2``) blinds the systems' names, lists the five overall outcomes
and asks for a JSON object: a reason, a preference ("1", "2" or "tie") per dimension and the overall
outcome. A reply that cannot be read is sent back with the reason (``max_invalid_retries`` times);
after that, or after an ``LLMError``, the comparison *fails*: ``overall`` is ``None`` and it is left
out of the statistics, never counted as a tie. Human verdicts imported by ``bench/annotation.py`` take
the same ``PairVerdict`` shape (one reading each), so ``summarize_pairs`` and the Bradley–Terry code
in ``bench/stats.py`` treat both alike. There is no verdict cache yet: comparisons are cheap next to
the runs they compare.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import json_repair
from pydantic import BaseModel, ConfigDict, Field

from deepresearch.bench.stats import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    DIMENSION_TITLES,
    DIMENSIONS,
    WTL,
    Dimension,
    Game,
    Interval,
    PairOutcome,
    Preference,
    Result,
    bootstrap_win_score,
    combine_orders,
    flip,
    preference_result,
    result_of,
    win_tie_loss_by,
)
from deepresearch.errors import ConfigError, LLMError
from deepresearch.judge.verdicts import InvalidJudgeOutput, refusal_in
from deepresearch.llm.messages import Message
from deepresearch.templates import render_prompt

if TYPE_CHECKING:
    from rich.table import Table

    from deepresearch.llm.client import ChatClient

logger = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 4
DEFAULT_MAX_INVALID_RETRIES = 2
Missing = Literal["failed", "loss"]
"""What a task with a report from only one side counts as: a failed comparison, or a loss for the
side without a report."""

_KEYS = ("overall", *DIMENSIONS)


# --- the verdict


class Reading(BaseModel):
    """What one reviewer said about one presentation order, positionally."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    a_position: Literal[1, 2]
    """Where system A's report was shown: 1 (Report 1, the left column) or 2."""
    outcome: PairOutcome
    """``left_better`` means Report 1 was better."""
    dimensions: dict[Dimension, Preference]
    """``left`` means Report 1 was better on that dimension."""
    reason: str = ""


class PairVerdict(BaseModel):
    """The comparison of system A's and system B's reports on one task, from A's side."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    task_id: str
    system_a: str
    system_b: str
    judge: str
    """``llm:<model>`` or ``human:<reviewer>``."""
    overall: Result | None = None
    """A's overall result; ``None`` when the comparison failed."""
    dimensions: dict[Dimension, Result | None] = Field(default_factory=dict)
    """A's result per dimension (the readings combined); all ``None`` when the comparison failed."""
    readings: list[Reading] = Field(default_factory=list)
    failed: bool = False
    error: str | None = None
    cost_usd: float = 0.0

    def results(self) -> dict[str, Result | None]:
        """``overall`` and each dimension: A's result, ``None`` where it failed."""
        return {"overall": self.overall, **{d: self.dimensions.get(d) for d in DIMENSIONS}}

    @property
    def orders_agree(self) -> bool | None:
        """Whether the two presentation orders gave the same overall result (None unless two readings)."""
        if self.failed or len(self.readings) != 2:
            return None
        first, second = (result_of(r.outcome, a_on_left=r.a_position == 1) for r in self.readings)
        return first == second


def verdict_from_readings(
    readings: Sequence[Reading],
    *,
    task_id: str,
    system_a: str,
    system_b: str,
    judge: str,
    cost_usd: float = 0.0,
) -> PairVerdict:
    """Combine readings of one pair: per key, the common result, or a tie when they disagree."""
    if not readings:
        raise ValueError("no readings to combine")
    overall = combine_orders([result_of(r.outcome, a_on_left=r.a_position == 1) for r in readings])
    dimensions: dict[Dimension, Result | None] = {
        d: combine_orders([preference_result(r.dimensions[d], a_on_left=r.a_position == 1) for r in readings])
        for d in DIMENSIONS
    }
    return PairVerdict(
        task_id=task_id,
        system_a=system_a,
        system_b=system_b,
        judge=judge,
        overall=overall,
        dimensions=dimensions,
        readings=list(readings),
        cost_usd=cost_usd,
    )


def failed_verdict(
    *, task_id: str, system_a: str, system_b: str, judge: str, error: str, cost_usd: float = 0.0
) -> PairVerdict:
    """A comparison that produced no result; it counts in ``WTL.failed`` only."""
    return PairVerdict(
        task_id=task_id,
        system_a=system_a,
        system_b=system_b,
        judge=judge,
        dimensions=dict.fromkeys(DIMENSIONS),
        failed=True,
        error=error,
        cost_usd=cost_usd,
    )


def oriented(verdict: PairVerdict, system_a: str) -> PairVerdict:
    """``verdict`` seen from ``system_a``'s side (swapping A and B when needed)."""
    if verdict.system_a == system_a:
        return verdict
    if verdict.system_b != system_a:
        raise ValueError(f"verdict on task {verdict.task_id!r} does not involve system {system_a!r}")
    return verdict.model_copy(
        update={
            "system_a": verdict.system_b,
            "system_b": verdict.system_a,
            "overall": flip(verdict.overall) if verdict.overall else None,
            "dimensions": {d: flip(r) if r else None for d, r in verdict.dimensions.items()},
            "readings": [r.model_copy(update={"a_position": 3 - r.a_position}) for r in verdict.readings],
        }
    )


# --- reading the judge's reply

_OVERALL: dict[str, PairOutcome] = {
    **dict.fromkeys(
        ("report_1_better", "report1_better", "report_1", "report1", "1", "1_better", "left_better", "left"),
        "left_better",
    ),
    **dict.fromkeys(
        (
            "report_2_better",
            "report2_better",
            "report_2",
            "report2",
            "2",
            "2_better",
            "right_better",
            "right",
        ),
        "right_better",
    ),
    **dict.fromkeys(("both_good", "both_are_good", "good"), "both_good"),
    **dict.fromkeys(("both_fair", "both_are_fair", "fair"), "both_fair"),
    **dict.fromkeys(("both_poor", "both_are_poor", "both_bad", "poor", "bad"), "both_poor"),
}
_PREFERENCE: dict[str, Preference] = {
    **dict.fromkeys(("1", "report_1", "report1", "report_1_better", "left", "first"), "left"),
    **dict.fromkeys(("2", "report_2", "report2", "report_2_better", "right", "second"), "right"),
    **dict.fromkeys(("tie", "equal", "same", "neither", "both", "draw", "0", "none"), "tie"),
}
_DIMENSION_NAMES: dict[str, Dimension] = {
    **{d: d for d in DIMENSIONS},
    "completeness": "information_completeness",
    "depth": "content_depth",
    "requirement_fit": "requirement_fitness",
    "fitness": "requirement_fitness",
}


@dataclass(frozen=True)
class Judgment:
    """One reply, positionally: ``left`` is Report 1."""

    outcome: PairOutcome
    dimensions: dict[Dimension, Preference]
    reason: str


def parse_comparison(text: str) -> Judgment:
    """The judgment in a reply to ``pairwise.j2``; raises ``InvalidJudgeOutput`` saying what is wrong."""
    if not text.strip():
        raise InvalidJudgeOutput("the reply was empty")
    data = _load(text)
    if not isinstance(data, dict):
        if refusal_in(text):
            raise InvalidJudgeOutput("the reply declined to compare the reports")
        raise InvalidJudgeOutput("no JSON object was found in the reply")
    raw_overall = _first(data, ("overall", "outcome", "verdict", "overall_outcome", "overall_judgment"))
    outcome = _OVERALL.get(_label(raw_overall)) if raw_overall is not None else None
    if outcome is None:
        raise InvalidJudgeOutput(
            f'"overall" is {raw_overall!r}, not one of report_1_better, report_2_better, both_good, '
            "both_fair, both_poor"
        )
    found = _dimension_entries(data)
    dimensions: dict[Dimension, Preference] = {}
    for dimension in DIMENSIONS:
        value = found.get(dimension)
        preference = _PREFERENCE.get(_label(value)) if value is not None else None
        if preference is None:
            raise InvalidJudgeOutput(f'"{dimension}" is {value!r}, not "1", "2" or "tie"')
        dimensions[dimension] = preference
    reason = _first(data, ("reason", "reasoning", "justification", "explanation", "rationale"))
    return Judgment(outcome, dimensions, str(reason or "").strip())


def _load(text: str) -> Any:
    try:
        data = json_repair.loads(text)
    except Exception:  # json_repair is lenient but not total; anything it cannot read is no JSON
        return None
    if isinstance(data, list):  # several objects: a model that thinks aloud ends with its answer
        objects = [item for item in data if isinstance(item, dict)]
        return objects[-1] if objects else None
    return data if isinstance(data, dict) and data else None


def _dimension_entries(data: dict[str, Any]) -> dict[Dimension, Any]:
    """Dimension → raw preference, from a ``dimensions`` object or list, or from top-level keys."""
    source: Any = data.get("dimensions", data.get("preferences", data))
    if isinstance(source, list):
        source = {
            str(_first(entry, ("dimension", "name")) or ""): entry
            for entry in source
            if isinstance(entry, dict)
        }
    if not isinstance(source, dict):
        return {}
    found: dict[Dimension, Any] = {}
    for key, value in source.items():
        dimension = _DIMENSION_NAMES.get(_label(key))
        if dimension is None:
            continue
        if isinstance(value, dict):
            value = _first(value, ("preference", "better", "winner", "choice", "verdict"))
        found.setdefault(dimension, value)
    return found


def _first(entry: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((entry[key] for key in keys if entry.get(key) is not None), None)


def _label(value: Any) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(value).strip().lower()).strip("_")


# --- asking the judge


def render(name: str, /, **variables: Any) -> str:
    """Render ``bench/prompts/<name>`` with ``variables``; a missing variable raises."""
    return render_prompt("deepresearch.bench", name, variables, trim_blocks=True)


@dataclass
class _Spend:
    cost_usd: float = 0.0
    calls: int = 0


@dataclass(frozen=True)
class _Ask:
    client: ChatClient
    model_name: str
    max_invalid_retries: int
    limit: asyncio.Semaphore | None
    spend: _Spend = field(default_factory=_Spend)


async def compare(
    task_prompt: str,
    report_a: str,
    report_b: str,
    client: ChatClient,
    *,
    model_name: str | None = None,
    task_id: str = "",
    system_a: str = "A",
    system_b: str = "B",
    max_invalid_retries: int = DEFAULT_MAX_INVALID_RETRIES,
    limit: asyncio.Semaphore | None = None,
) -> PairVerdict:
    """Judge A's report against B's in both orders; see the module docstring for how they combine.

    ``limit`` bounds the judge calls in flight (shared by ``compare_systems``).
    """
    if max_invalid_retries < 0:
        raise ConfigError("max_invalid_retries must be at least 0")
    name = model_name or client.config.model
    ask = _Ask(client, name, max_invalid_retries, limit)
    readings = await asyncio.gather(
        _read(ask, task_prompt, report_a, report_b, a_position=1),
        _read(ask, task_prompt, report_b, report_a, a_position=2),
    )
    judge = f"llm:{name}"
    problems = [
        f"order {'A' if position == 1 else 'B'} first: {reading}"
        for position, reading in ((1, readings[0]), (2, readings[1]))
        if isinstance(reading, str)
    ]
    if problems:
        verdict = failed_verdict(
            task_id=task_id,
            system_a=system_a,
            system_b=system_b,
            judge=judge,
            error="; ".join(problems),
            cost_usd=ask.spend.cost_usd,
        )
    else:
        verdict = verdict_from_readings(
            [r for r in readings if isinstance(r, Reading)],
            task_id=task_id,
            system_a=system_a,
            system_b=system_b,
            judge=judge,
            cost_usd=ask.spend.cost_usd,
        )
    logger.info(
        "pairwise %s: task %s, %s vs %s: %s (%d calls, $%.4f)",
        name,
        task_id,
        system_a,
        system_b,
        verdict.overall or f"failed: {verdict.error}",
        ask.spend.calls,
        ask.spend.cost_usd,
    )
    return verdict


async def _read(
    ask: _Ask, task_prompt: str, first: str, second: str, *, a_position: Literal[1, 2]
) -> Reading | str:
    """One order's reading, or why it could not be had."""
    prompt = render("pairwise.j2", task_prompt=task_prompt, report_1=first, report_2=second, problem="")
    conversation: list[Message] = [{"role": "user", "content": prompt}]
    attempts = ask.max_invalid_retries + 1
    problem = ""
    for attempt in range(1, attempts + 1):
        try:
            if ask.limit is None:
                completion = await ask.client.complete(conversation)
            else:
                async with ask.limit:
                    completion = await ask.client.complete(conversation)
        except LLMError as exc:
            return f"{type(exc).__name__}: {exc}"
        ask.spend.cost_usd += completion.usage.cost_usd
        ask.spend.calls += 1
        try:
            judgment = parse_comparison(completion.content)
        except InvalidJudgeOutput as exc:
            problem = str(exc)
            logger.info(
                "pairwise %s: unusable reply, attempt %d of %d: %s",
                ask.model_name,
                attempt,
                attempts,
                problem,
            )
            conversation = [
                conversation[0],
                {"role": "assistant", "content": completion.content},
                {"role": "user", "content": render("pairwise.j2", problem=problem)},
            ]
            continue
        return Reading(
            a_position=a_position,
            outcome=judgment.outcome,
            dimensions=judgment.dimensions,
            reason=judgment.reason,
        )
    return f"no usable judge reply after {attempts} attempt(s): {problem}"


async def compare_systems(
    system_a: Mapping[str, str],
    system_b: Mapping[str, str],
    prompts: Mapping[str, str],
    client: ChatClient,
    concurrency: int = DEFAULT_CONCURRENCY,
    *,
    name_a: str = "A",
    name_b: str = "B",
    model_name: str | None = None,
    missing: Missing = "failed",
    max_invalid_retries: int = DEFAULT_MAX_INVALID_RETRIES,
    on_verdict: Callable[[PairVerdict], None] | None = None,
) -> list[PairVerdict]:
    """Compare the two systems' reports (by task id) on every task either has, in ``prompts`` order.

    A task without a prompt fails; a task with one report only fails too, or with ``missing="loss"``
    counts as a loss for the side without a report (a system that crashes on hard tasks must not
    look better for it).
    """
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, not {concurrency}")
    if name_a == name_b:
        raise ConfigError(f"the two systems need different names, both are {name_a!r}")
    order = {task_id: i for i, task_id in enumerate(prompts)}
    task_ids = sorted({*system_a, *system_b}, key=lambda t: (order.get(t, len(order)), t))
    judge = f"llm:{model_name or client.config.model}"
    limit = asyncio.Semaphore(concurrency)

    async def one(task_id: str) -> PairVerdict:
        report_a, report_b = system_a.get(task_id), system_b.get(task_id)
        if task_id not in prompts:
            verdict = failed_verdict(
                task_id=task_id, system_a=name_a, system_b=name_b, judge=judge, error="no task prompt"
            )
        elif report_a is None or report_b is None:
            verdict = _one_sided(task_id, name_a, name_b, judge, has_a=report_a is not None, missing=missing)
        else:
            verdict = await compare(
                prompts[task_id],
                report_a,
                report_b,
                client,
                model_name=model_name,
                task_id=task_id,
                system_a=name_a,
                system_b=name_b,
                max_invalid_retries=max_invalid_retries,
                limit=limit,
            )
        if on_verdict is not None:
            on_verdict(verdict)
        return verdict

    async with asyncio.TaskGroup() as group:
        jobs = [group.create_task(one(task_id)) for task_id in task_ids]
    return [job.result() for job in jobs]


def _one_sided(
    task_id: str, name_a: str, name_b: str, judge: str, *, has_a: bool, missing: Missing
) -> PairVerdict:
    absent = name_b if has_a else name_a
    if missing == "failed":
        return failed_verdict(
            task_id=task_id, system_a=name_a, system_b=name_b, judge=judge, error=f"no report from {absent}"
        )
    result: Result = "win" if has_a else "loss"
    return PairVerdict(
        task_id=task_id,
        system_a=name_a,
        system_b=name_b,
        judge=judge,
        overall=result,
        dimensions=dict.fromkeys(DIMENSIONS, result),
        error=f"no report from {absent}: counted as its loss",
    )


# --- summaries


@dataclass(frozen=True)
class PairSummary:
    """Win/tie/loss of A against B overall and per dimension, with bootstrap intervals of the win score."""

    system_a: str
    system_b: str
    wtl: dict[str, WTL]
    """Keys ``overall`` and the four dimensions."""
    intervals: dict[str, Interval | None]
    """Win score with a bootstrap interval over tasks; None where nothing was compared."""
    order_agreement: float | None
    """Share of two-order verdicts whose orders gave the same overall result; None without any."""
    judges: tuple[str, ...] = ()


def summarize_pairs(
    verdicts: Iterable[PairVerdict],
    *,
    system_a: str | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> PairSummary:
    """Statistics of one pair of systems from A's side (A: ``system_a``, or the first verdict's A)."""
    materialised = list(verdicts)
    if not materialised:
        raise ValueError("no verdicts to summarise")
    a = system_a or materialised[0].system_a
    mine = [oriented(v, a) for v in materialised]
    others = sorted({v.system_b for v in mine})
    if len(others) != 1:
        raise ValueError(
            f"verdicts compare {a!r} with several systems ({', '.join(others)}); summarise each pair"
        )
    rows = [v.results() for v in mine]
    wtl = win_tie_loss_by(rows)
    intervals: dict[str, Interval | None] = {}
    for key in _KEYS:
        results = [row[key] for row in rows if row[key] is not None]
        intervals[key] = (
            bootstrap_win_score(results, resamples=resamples, seed=seed, level=level) if results else None
        )
    agreements = [v.orders_agree for v in mine if v.orders_agree is not None]
    return PairSummary(
        system_a=a,
        system_b=others[0],
        wtl={key: wtl[key] for key in _KEYS},
        intervals=intervals,
        order_agreement=sum(agreements) / len(agreements) if agreements else None,
        judges=tuple(sorted({v.judge for v in mine})),
    )


def games_from_verdicts(verdicts: Iterable[PairVerdict], *, key: str = "overall") -> list[Game]:
    """Bradley–Terry games (``bench/stats.py``) from verdicts on ``key``; failed ones are left out."""
    if key not in _KEYS:
        raise ValueError(f"unknown key {key!r}; use one of {', '.join(_KEYS)}")
    games = []
    for verdict in verdicts:
        result = verdict.results()[key]
        if result is not None:
            games.append(Game(verdict.task_id, verdict.system_a, verdict.system_b, result))
    return games


def summary_table(summary: PairSummary) -> Table:
    """A rich table of ``summary`` for the terminal."""
    from rich.table import Table

    level = next((i.level for i in summary.intervals.values() if i is not None), DEFAULT_LEVEL)
    table = Table(
        "dimension",
        "W",
        "T",
        "L",
        "failed",
        "win score",
        f"{level:.0%} CI",
        title=f"{summary.system_a} vs {summary.system_b}",
    )
    for key in _KEYS:
        counts = summary.wtl[key]
        interval = summary.intervals.get(key)
        table.add_row(
            DIMENSION_TITLES[key],
            str(counts.wins),
            str(counts.ties),
            str(counts.losses),
            str(counts.failed),
            f"{counts.win_score:.1%}" if counts.win_score is not None else "n/a",
            f"{interval.low:.1%}–{interval.high:.1%}" if interval else "n/a",
        )
    return table
