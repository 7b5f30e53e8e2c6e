"""Turn per-rubric verdicts into task scores, the benchmark score and its breakdowns.

Pure functions over ``JudgeRecord`` lists: no I/O, so the benchmark, the RL reward and the tests all
compute the same number. One formula, three ways of reading a verdict (``mode``):

    task score = Σ wᵢ·vᵢ / Σ_{wᵢ>0} wᵢ          (ResearchRubrics ``calculate_compliance_score.py``)

Negative rubrics describe flaws and carry negative weights: they enter the numerator only, so a flaw
subtracts and the score can fall below 0 (it is not clamped, as in the official script). ``vᵢ`` is
how far the criterion holds — for a negative rubric, how far the flaw is present:

- ``ternary``: satisfied 1, partially 0.5, not satisfied 0 (ResearchRubrics compliance). A record's
  ``score`` (the mean over its trials, e.g. 2/3) is used when present, so averaged trials count as
  the Step-DeepResearch protocol averages them.
- ``binary``: 1 only for ``satisfied``, for every rubric. ResearchRubrics' released grader asks for
  satisfied / not satisfied and its metric scripts collapse "partially" into "not satisfied" whatever
  the weight's sign; for a flaw that means a *partially* present flaw is not charged. We follow it so
  ``binary`` reproduces the released evaluator. (Charging partial flaws is exactly what ``strict``
  adds; were ``binary`` to do it too, the two modes would be identical.)
- ``strict`` (Step-DeepResearch's RL reward): a positive rubric earns 1 only when fully satisfied; a
  flaw counts 1 when partially *or* fully present — any trace of it is penalised.

Fatal rubrics (ADR-Bench's professional track): when a fatal requirement counts fully against the
report — a positive one valued 0, a negative one whose flaw is valued 1 under the mode's mapping of
the majority verdict — the report is unusable and scores ``min(raw, 0)``: 0, unless the flaws had
already pushed it below 0 (a veto never raises a score).

A rubric whose grading failed (``verdict`` None or ``failed``: the judge erred or refused after its
retries) is counted by ``failures``, and always reported in ``failed_items``:

- ``zero`` (the default, both benchmarks' official accounting): a failed positive rubric is worth 0
  with its weight kept in the denominator (ResearchRubrics scores a failed grading 0; ResearcherBench
  counts it "not covered"). A failed negative rubric is worth 0 too, which by the same formula
  (negatives live in the numerator only) means no penalty. A task whose positive rubrics all fail
  scores 0 and stays in the mean. A failed grading is no evidence of a fatal error, so it never vetoes.
- ``skip`` (the old accounting): failed rubrics leave both numerator and denominator, so the score
  covers only what was graded; a task whose positive rubrics all failed has no score (``ValueError``).
- ``worst`` (the RL reward's): each failed rubric takes the verdict least favourable to the report —
  a requirement not satisfied, a flaw present, a fatal one vetoing — so no judge failure can ever
  raise a score above what any real verdict would have given.

A rubric of weight 0 (one real ResearchRubrics task has one) loads and is counted in ``zero_weight``
but enters no sum in any mode, graded or not. A task with no positive-weight rubric has no defined
score (ResearchRubrics tasks always have positive weight; the official script would return 0) and
raises ``ValueError``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from deepresearch.judge.records import TERNARY_SCORE, JudgeRecord, Verdict
from deepresearch.judge.rubrics import Task

ScoreMode = Literal["ternary", "binary", "strict"]
Failures = Literal["zero", "skip", "worst"]
"""How a failed grading counts: official 0 with its weight kept, left out of both sums, or worst case."""


@dataclass(frozen=True)
class TaskScore:
    task_id: str
    score: float
    """The task's score under ``mode`` (0–1 for a clean report; below 0 when flaws outweigh merits)."""
    positive_weight: float
    """Σ weights of the positive rubrics counted (failed ones too, unless ``failures="skip"``)."""
    earned: float
    """Σ w·v over the graded positive rubrics."""
    penalties: float
    """Σ |w|·v over the negative rubrics counted (a magnitude, ≥ 0)."""
    fatal_hit: bool
    failed_items: int
    """Rubrics of non-zero weight whose grading failed; counted as ``failures`` says."""
    per_axis: dict[str, float | None]
    """Compliance within each axis of this task; None for an axis without graded positive weight."""
    mode: ScoreMode = "ternary"
    raw_score: float = 0.0
    """The score before any fatal veto."""
    fatal_criteria: tuple[str, ...] = ()
    failures: Failures = "zero"
    """How the ``failed_items`` were counted."""
    zero_weight: int = 0
    """Rubrics of weight 0 among the records: loaded and reported, never in a sum."""

    @property
    def flagged(self) -> bool:
        """True when some rubric could not be graded (counted as ``failures`` says)."""
        return self.failed_items > 0


@dataclass(frozen=True)
class AxisScore:
    axis: str
    compliance: float | None
    """Σ w·v / Σ w₊ over this axis's graded rubrics, pooled across tasks; None without positive weight."""
    positive_weight: float
    earned: float
    penalties: float
    graded: int
    """Rubrics counted with a verdict: a real one, or under ``failures="worst"`` the worst one."""
    failures: int
    """Rubrics counting fully against the report (unmet requirement, or flaw present) under the mode."""
    failure_rate: float | None
    """failures / graded; None when nothing in the axis was graded."""
    failure_share: float
    """This axis's failures / all failures (ResearchRubrics' aggregate ratio); 0 when there are none."""
    mean_task_failure_share: float | None
    """ResearchRubrics' average ratio: per task, this axis's share of the task's failures, averaged over
    the tasks where the axis had at least one failure (so the axes' values need not sum to 1)."""
    tasks_with_failures: int
    failed_items: int
    """Rubrics of this axis whose grading failed (counted as the ``failures`` option says)."""
    zero_weight: int = 0


@dataclass(frozen=True)
class DomainScore:
    domain: str
    tasks: int
    score: float
    """``benchmark_score`` over the domain's tasks (mean × 100)."""
    flagged: int
    """How many of those tasks had rubrics that failed to grade."""


@dataclass
class _Tally:
    positive_weight: float = 0.0
    earned: float = 0.0
    penalties: float = 0.0
    graded: int = 0
    failures: int = 0
    failed_items: int = 0
    zero_weight: int = 0
    fatal: list[str] = field(default_factory=list)

    def ratio(self) -> float | None:
        return (self.earned - self.penalties) / self.positive_weight if self.positive_weight > 0 else None


def rubric_value(verdict: Verdict, *, negative: bool, mode: ScoreMode = "ternary") -> float:
    """What one verdict is worth before weighting: how far a requirement is met, or a flaw present."""
    if mode == "ternary":
        return TERNARY_SCORE[verdict]
    if mode == "strict" and negative:
        return 0.0 if verdict == "not_satisfied" else 1.0
    return 1.0 if verdict == "satisfied" else 0.0


def counts_against(verdict: Verdict, *, negative: bool, mode: ScoreMode = "ternary") -> bool:
    """True when the rubric fully fails the report: requirement valued 0, or flaw valued 1."""
    value = rubric_value(verdict, negative=negative, mode=mode)
    return value == 1.0 if negative else value == 0.0


def task_score(
    records: Sequence[JudgeRecord], *, mode: ScoreMode = "ternary", failures: Failures = "zero"
) -> TaskScore:
    """Score one task's records (all with the same ``task_id``) under ``mode``; ``failures`` says how."""
    _check_mode(mode, failures)
    if not records:
        raise ValueError("no judge records to score")
    task_id = records[0].task_id
    strays = sorted({r.task_id for r in records if r.task_id != task_id})
    if strays:
        raise ValueError(f"records of several tasks passed to task_score: {task_id!r}, {', '.join(strays)}")
    total = _Tally()
    axes: dict[str, _Tally] = defaultdict(_Tally)
    for record in records:
        _add(total, record, mode, failures)
        _add(axes[record.axis], record, mode, failures)
    if not any(r.weight > 0 for r in records):
        raise ValueError(
            f"task {task_id!r} has no positive-weight rubric, so Σ w·v / Σ w₊ is undefined "
            "(every ResearchRubrics task has positive weight; add at least one requirement)"
        )
    raw = total.ratio()
    if raw is None:
        positives = sum(1 for r in records if r.weight > 0)
        raise ValueError(
            f"task {task_id!r}: all {positives} positive rubrics failed to grade; regrade them before "
            "scoring, or count failures as 0 (failures='zero')"
        )
    return TaskScore(
        task_id=task_id,
        score=min(raw, 0.0) if total.fatal else raw,
        positive_weight=total.positive_weight,
        earned=total.earned,
        penalties=total.penalties,
        fatal_hit=bool(total.fatal),
        failed_items=total.failed_items,
        per_axis={axis: tally.ratio() for axis, tally in axes.items()},
        mode=mode,
        raw_score=raw,
        fatal_criteria=tuple(total.fatal),
        failures=failures,
        zero_weight=total.zero_weight,
    )


def score_tasks(
    records: Iterable[JudgeRecord], *, mode: ScoreMode = "ternary", failures: Failures = "zero"
) -> list[TaskScore]:
    """``task_score`` for every task in ``records``, in order of first appearance."""
    return [task_score(group, mode=mode, failures=failures) for group in group_by_task(records).values()]


def group_by_task(records: Iterable[JudgeRecord]) -> dict[str, list[JudgeRecord]]:
    groups: dict[str, list[JudgeRecord]] = {}
    for record in records:
        groups.setdefault(record.task_id, []).append(record)
    return groups


def benchmark_score(task_scores: Iterable[TaskScore]) -> float:
    """Mean task score × 100, the number ResearchRubrics reports."""
    scores = [t.score for t in task_scores]
    if not scores:
        raise ValueError("no task scores to average")
    return 100.0 * sum(scores) / len(scores)


def by_axis(
    records: Iterable[JudgeRecord], *, mode: ScoreMode = "ternary", failures: Failures = "zero"
) -> dict[str, AxisScore]:
    """Per-axis compliance (the task formula within the axis, pooled over tasks) and failure breakdown.

    Fatal vetoes are task-level and do not apply here. A failure is a rubric that counts fully against
    the report (``counts_against``); unlike ResearchRubrics' script, which counts every "Not Satisfied"
    label, a negative rubric fails when its flaw is present, not when it is absent. A failed grading
    is counted in ``failed_items``, and among ``failures`` only under ``failures="worst"``.
    """
    _check_mode(mode, failures)
    axes: dict[str, _Tally] = defaultdict(_Tally)
    per_task: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for record in records:
        before = axes[record.axis].failures
        _add(axes[record.axis], record, mode, failures)
        if axes[record.axis].failures > before:
            per_task[record.task_id][record.axis] += 1
    all_failures = sum(t.failures for t in axes.values())
    shares: dict[str, list[float]] = defaultdict(list)
    for counts in per_task.values():
        task_failures = sum(counts.values())
        for axis, count in counts.items():
            shares[axis].append(count / task_failures)
    return {
        axis: AxisScore(
            axis=axis,
            compliance=tally.ratio(),
            positive_weight=tally.positive_weight,
            earned=tally.earned,
            penalties=tally.penalties,
            graded=tally.graded,
            failures=tally.failures,
            failure_rate=tally.failures / tally.graded if tally.graded else None,
            failure_share=tally.failures / all_failures if all_failures else 0.0,
            mean_task_failure_share=sum(shares[axis]) / len(shares[axis]) if shares[axis] else None,
            tasks_with_failures=len(shares[axis]),
            failed_items=tally.failed_items,
            zero_weight=tally.zero_weight,
        )
        for axis, tally in sorted(axes.items())
    }


def by_domain(tasks: Iterable[Task], task_scores: Iterable[TaskScore]) -> dict[str, DomainScore]:
    """The benchmark score per task domain; tasks without a score are not counted."""
    domain_of = {task.task_id: task.domain for task in tasks}
    groups: dict[str, list[TaskScore]] = defaultdict(list)
    unknown: list[str] = []
    for score in task_scores:
        if score.task_id not in domain_of:
            unknown.append(score.task_id)
            continue
        groups[domain_of[score.task_id]].append(score)
    if unknown:
        raise ValueError(f"scores for tasks that are not in the task list: {', '.join(sorted(unknown))}")
    return {
        domain: DomainScore(
            domain=domain,
            tasks=len(scores),
            score=benchmark_score(scores),
            flagged=sum(1 for s in scores if s.flagged),
        )
        for domain, scores in sorted(groups.items())
    }


def _add(tally: _Tally, record: JudgeRecord, mode: ScoreMode, failures: Failures) -> None:
    negative = _is_negative(record)
    if record.weight == 0:
        tally.zero_weight += 1
        return
    verdict = record.verdict
    if record.failed or verdict is None:
        tally.failed_items += 1
        if failures == "skip":
            return
        if failures == "zero":
            if not negative:
                tally.positive_weight += record.weight  # worth 0, weight kept in the denominator
            return
        verdict = "satisfied" if negative else "not_satisfied"  # worst: the least favourable verdict
        tally.graded += 1
        value = rubric_value(verdict, negative=negative, mode=mode)
    else:
        tally.graded += 1
        if mode == "ternary" and record.score is not None:
            if not 0.0 <= record.score <= 1.0:
                raise ValueError(
                    f"task {record.task_id!r}: score {record.score} of {record.criterion!r} is not in 0–1"
                )
            value = record.score
        else:
            value = rubric_value(verdict, negative=negative, mode=mode)
    if negative:
        tally.penalties += -record.weight * value
    else:
        tally.positive_weight += record.weight
        tally.earned += record.weight * value
    if counts_against(verdict, negative=negative, mode=mode):
        tally.failures += 1
        if record.fatal:
            tally.fatal.append(record.criterion)


def _is_negative(record: JudgeRecord) -> bool:
    if record.weight == 0:
        return False  # a zero weight counts nowhere, whatever its role
    if (record.role == "negative") != (record.weight < 0):
        raise ValueError(
            f"task {record.task_id!r}: rubric {record.criterion!r} has role {record.role!r} "
            f"but weight {record.weight}; negative rubrics carry negative weights and only they do"
        )
    return record.weight < 0


def _check_mode(mode: str, failures: str = "zero") -> None:
    if mode not in get_args(ScoreMode):
        raise ValueError(f"unknown score mode {mode!r}; use one of {', '.join(get_args(ScoreMode))}")
    if failures not in get_args(Failures):
        raise ValueError(
            f"unknown failure accounting {failures!r}; use one of {', '.join(get_args(Failures))}"
        )
