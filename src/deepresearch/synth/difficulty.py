"""Pipeline 4, the difficulty filter (``synth difficulty``): keep only the questions a baseline cannot
answer, so that the deep-search data is not padded with what a model already solves.

Input: JSONL questions with ground truth (``{"id" or "task_id", "question" or "prompt", "answer"}``,
what ``synth kg`` and ``synth walk`` write). For each, the baseline (the settings' model, ``--model``
and ``--base-url``) runs through our own agent (``ctx.run_agent``: a real run directory under
``<out>.runs/``, reused when a rerun finds it finished, so no agent run is paid twice), and its report
is judged against the answer (``synth.answers``: exact-match shortcut, then the judge model, which is
the ``judge_*`` endpoint when ``judge_model`` is set).

Verdicts: solved → dropped (``solved_by_baseline``, the verdict in the ledger); not solved → kept as
the input line plus ``baseline_answer``, ``baseline_run`` and ``baseline_verdict``. A baseline run
that ends without a report, or fails for a reason other than the endpoint, cannot have solved the
question: it is kept, with ``baseline_status`` saying what happened. An endpoint failure (``LLMError``)
leaves the item undecided for a rerun; a judge that gives no usable verdict drops it
(``judge_unusable``), and a line without a question or an answer is ``missing_question_or_answer``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deepresearch.config import Settings
from deepresearch.errors import ConfigError, DeepResearchError, LLMError
from deepresearch.runs import RunDir
from deepresearch.synth.answers import (
    answers_match,
    expected_of,
    final_answer,
    judge_models,
    question_of,
    report_of,
)
from deepresearch.synth.context import SynthContext, open_context
from deepresearch.synth.engine import Outcome, Summary, Tally, load_items, run_items
from deepresearch.synth.model import BadReply, Model, language_of

logger = logging.getLogger(__name__)


async def synth_difficulty(
    settings: Settings,
    *,
    questions: Path,
    out: Path,
    concurrency: int = 2,
    progress: bool = True,
) -> Summary:
    """Run the baseline agent on every question in ``questions`` and write the unsolved ones to ``out``."""
    items, problems = load_items(questions, id_field="task_id")
    for problem in problems:
        logger.warning("synth difficulty: skipping %s", problem)
    async with open_context(settings, out) as ctx, judge_models(ctx) as judge:

        async def step(item: dict[str, Any], tally: Tally) -> Outcome:
            return await filter_question(ctx, judge, item, tally)

        return await run_items(
            items,
            step,
            out,
            concurrency=concurrency,
            label="difficulty",
            progress=progress,
            total=len(items),
        )


async def filter_question(
    ctx: SynthContext, judge: Callable[[Tally], Model], item: dict[str, Any], tally: Tally
) -> Outcome:
    """One question: the baseline's run, then the verdict on its answer."""
    question, expected = question_of(item), expected_of(item)
    if not question or not expected:
        return Outcome.drop("missing_question_or_answer")
    try:
        run = await ctx.run_agent(str(item["id"]), question, tally)
    except (LLMError, ConfigError):
        raise  # the endpoint or the setup failed, not the baseline: undecided, a rerun tries again
    except DeepResearchError as exc:
        error = " ".join(f"{type(exc).__name__}: {exc}".split())
        path = ctx.run_dir(str(item["id"]))
        return Outcome.keep(unsolved(item, "", path, status="failed", error=error), baseline="failed")
    report = report_of(run)
    if report is None:
        status = "no_report" if run.finished else run.status
        return Outcome.keep(unsolved(item, "", run.path, status=status), baseline=status)
    try:
        match = await answers_match(judge(tally), question, expected, report, language_of(question))
    except BadReply as exc:
        return Outcome.drop("judge_unusable", problem=str(exc), baseline_run=str(run.path))
    if match.equivalent:
        return Outcome.drop("solved_by_baseline", verdict=match.to_dict(), baseline_run=str(run.path))
    answer = final_answer(report)
    record = unsolved(item, answer.short or answer.text, run.path, status="answered")
    record["baseline_verdict"] = match.to_dict()
    return Outcome.keep(record, verdict=match.to_dict())


def unsolved(
    item: dict[str, Any], answer: str, run: Path | RunDir, *, status: str, error: str | None = None
) -> dict[str, Any]:
    """The kept record: the input line, what the baseline answered and where its run is."""
    path = run.path if isinstance(run, RunDir) else run
    record = {**item, "baseline_answer": answer, "baseline_run": str(path), "baseline_status": status}
    if error:
        record["baseline_error"] = error
    return record
