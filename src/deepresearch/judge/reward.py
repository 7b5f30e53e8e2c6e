"""The RL reward: one report graded against its rubrics, folded into one number with the strict mapping.

Step-DeepResearch found that judges (and humans) agree poorly on "partially satisfied", so its reward
removes the middle ground in the direction that is hardest to game:

- a positive rubric pays its weight only when fully ``satisfied``;
- a negative rubric (a flaw, negative weight) is charged when the flaw is present at all, partially
  or fully;
- reward = Σ weight·hit / Σ positive weights (ResearchRubrics' normalisation, negatives kept out of
  the denominator), so it lies in [Σ negative weights / Σ positive weights, 1];
- a ``fatal`` rubric that is unmet (or a fatal flaw that is present) makes the reward 0 (or keeps it
  below 0 when flaws already pushed it there: a veto never raises a reward).

The arithmetic is ``deepresearch.judge.scoring.task_score(records, mode="strict")``, the same code
the benchmark scores with; this module adds the grading and the failure policy.

A report must never gain reward because the judge failed (a policy would learn to make the judge
fail). So a failed grading is never left out of the sums: by default the reward raises
``RewardUnavailable``; with ``on_failure="worst"`` each failed rubric takes the verdict least
favourable to the report — a requirement not satisfied with its weight kept in the denominator (the
benchmarks' official 0), a flaw present, a fatal one vetoing — so the reward is at most what any real
verdict would have given. (Leaving failed rubrics out of both sums, the old ``skip``, could raise the
reward, and a failed flaw counted 0 as the benchmarks do would escape its penalty; neither is offered.)
Rubrics of weight 0 are not sent to the judge. ``reward_sync`` serves training loops that are
not async; it runs the judge on one background event loop that lives as long as the process, so the
judge's HTTP connections stay on one loop — do not also use the same ``Judge`` from another loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from functools import cache
from typing import Any, Literal, TypeVar, get_args

from deepresearch.errors import RewardUnavailable
from deepresearch.judge.grader import Judge
from deepresearch.judge.records import JudgeRecord
from deepresearch.judge.rubrics import Rubric, Task
from deepresearch.judge.scoring import task_score

T = TypeVar("T")

OnFailure = Literal["raise", "worst"]


def strict_reward(records: Sequence[JudgeRecord], *, on_failure: OnFailure = "raise") -> float:
    """The strict, normalised reward of one report's records (``task_score`` in ``strict`` mode)."""
    if on_failure not in get_args(OnFailure):
        raise ValueError(
            f"unknown on_failure {on_failure!r}; use 'raise' or 'worst' (a judge failure must never "
            "raise a reward, so failed rubrics are not skipped)"
        )
    failed = [r for r in records if (r.failed or r.verdict is None) and r.weight != 0]
    if failed and on_failure == "raise":
        names = "; ".join(f"{record.criterion[:60]!r}: {record.error}" for record in failed[:3])
        more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
        raise RewardUnavailable(f"{len(failed)} of {len(records)} rubrics failed to grade: {names}{more}")
    try:
        return task_score(records, mode="strict", failures="worst").score
    except ValueError as exc:  # e.g. no positive rubric: there is no scale
        raise RewardUnavailable(str(exc)) from exc


async def reward(
    report: str,
    rubrics: Sequence[Rubric],
    judge: Judge,
    *,
    task_prompt: str = "",
    task_id: str = "reward",
    on_failure: OnFailure = "raise",
) -> float:
    """Grade ``report`` against ``rubrics`` with ``judge`` and return the strict reward."""
    if not any(rubric.weight > 0 for rubric in rubrics):
        raise ValueError("a reward needs at least one rubric with a positive weight")
    task = Task(task_id=task_id, prompt=task_prompt, rubrics=list(rubrics)).scored()
    return strict_reward(await judge.grade_task(task, report), on_failure=on_failure)


def reward_sync(
    report: str,
    rubrics: Sequence[Rubric],
    judge: Judge,
    *,
    task_prompt: str = "",
    task_id: str = "reward",
    on_failure: OnFailure = "raise",
) -> float:
    """``reward`` for callers without an event loop (it blocks until the judge has answered)."""
    coroutine = reward(
        report, rubrics, judge, task_prompt=task_prompt, task_id=task_id, on_failure=on_failure
    )
    return _run_in_background(coroutine)


@cache
def _background_loop() -> asyncio.AbstractEventLoop:
    """One event loop in a daemon thread, started on first use."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="deepresearch-reward", daemon=True).start()
    return loop


def _run_in_background(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run_coroutine_threadsafe(coroutine, _background_loop()).result()
