"""Task scores, the benchmark score and the breakdowns, checked against arithmetic done by hand.

The fixture is one ResearchRubrics-style task whose verdicts exercise every rule at once: positive
and negative weights, a partial verdict on each side, and a rubric whose grading failed. Every
expected number below is worked out in the comment above it, from the official formula
Σ wᵢ·vᵢ / Σ_{wᵢ>0} wᵢ, not computed by the code under test.
"""

from __future__ import annotations

from typing import Any

import pytest

from deepresearch.judge.records import JudgeRecord, Verdict
from deepresearch.judge.rubrics import Rubric, Task
from deepresearch.judge.scoring import (
    benchmark_score,
    by_axis,
    by_domain,
    counts_against,
    rubric_value,
    score_tasks,
    task_score,
)


def near(value: float) -> Any:
    """Equal to a hand-computed number to 1e-9, absolute."""
    return pytest.approx(value, rel=0, abs=1e-9)


def rec(
    criterion: str,
    weight: float,
    verdict: Verdict | None,
    *,
    axis: str = "Explicit Criteria",
    task_id: str = "t1",
    fatal: bool = False,
    score: float | None = None,
) -> JudgeRecord:
    return JudgeRecord(
        task_id=task_id,
        criterion=criterion,
        axis=axis,
        weight=weight,
        role="negative" if weight < 0 else "explicit",
        fatal=fatal,
        verdict=verdict,
        score=score,
        failed=verdict is None,
        error="judge timed out" if verdict is None else None,
    )


# Task t1 (weights and verdicts):
#   A  +4 Explicit       satisfied
#   B  +3 Explicit       partially
#   C  +2 Implicit       not_satisfied
#   D  +1 Communication  partially
#   E  -2 References     partially      (flaw partially present)
#   F  -3 Synthesis      not_satisfied  (flaw absent)
#   G  +5 Instruction    grading failed (verdict None)
#   H  -1 Communication  satisfied      (flaw present)
T1 = [
    rec("A", 4, "satisfied"),
    rec("B", 3, "partially"),
    rec("C", 2, "not_satisfied", axis="Implicit Criteria"),
    rec("D", 1, "partially", axis="Communication Quality"),
    rec("E", -2, "partially", axis="References & Citation Quality"),
    rec("F", -3, "not_satisfied", axis="Synthesis of Information"),
    rec("G", 5, None, axis="Instruction Following"),
    rec("H", -1, "satisfied", axis="Communication Quality"),
]


def test_ternary_is_the_official_compliance_formula():
    # denominator: positive weights 4 + 3 + 2 + 1 + 5 = 15 (G failed: worth 0, its weight kept)
    # earned:    4·1 + 3·0.5 + 2·0 + 1·0.5 + 5·0 = 6
    # penalties: 2·0.5 + 3·0 + 1·1 = 2
    # score = (6 − 2) / 15 = 4/15
    score = task_score(T1, mode="ternary")
    assert score.task_id == "t1"
    assert score.positive_weight == 15
    assert score.earned == near(6)
    assert score.penalties == near(2)
    assert score.score == near(4 / 15)
    assert score.failed_items == 1 and score.flagged and score.failures == "zero"
    assert not score.fatal_hit and score.zero_weight == 0
    # skip (the old accounting): G leaves both sums → (6 − 2) / 10 = 0.4
    skipped = task_score(T1, mode="ternary", failures="skip")
    assert skipped.positive_weight == 10 and skipped.score == near(0.4)
    assert skipped.failed_items == 1 and skipped.failures == "skip"


def test_binary_and_strict_read_the_same_verdicts_differently():
    # binary: only "satisfied" is worth 1, on either side.
    #   earned 4·1 (A) = 4; penalties: E partially → 0, F → 0, H satisfied → 1·1 = 1
    #   score = (4 − 1) / 15 = 0.2  (skip: / 10 = 0.3)
    binary = task_score(T1, mode="binary")
    assert (binary.earned, binary.penalties) == (near(4), near(1))
    assert binary.score == near(0.2)
    assert task_score(T1, mode="binary", failures="skip").score == near(0.3)
    # strict: positives as binary; a flaw counts when partially or fully present.
    #   earned 4; penalties: E partially → 2·1 = 2, F → 0, H → 1 = 3
    #   score = (4 − 3) / 15 = 1/15  (skip: / 10 = 0.1)
    strict = task_score(T1, mode="strict")
    assert (strict.earned, strict.penalties) == (near(4), near(3))
    assert strict.score == near(1 / 15)
    assert task_score(T1, mode="strict", failures="skip").score == near(0.1)
    # the failed item is counted the same way in every mode
    assert binary.positive_weight == strict.positive_weight == 15
    assert binary.failed_items == strict.failed_items == 1


def test_binary_mode_does_not_charge_a_partially_present_flaw_but_strict_does():
    records = [rec("req", 2, "satisfied"), rec("flaw", -1, "partially")]
    # ternary (2 − 0.5)/2 = 0.75; binary (2 − 0)/2 = 1.0; strict (2 − 1)/2 = 0.5
    assert task_score(records, mode="ternary").score == near(0.75)
    assert task_score(records, mode="binary").score == near(1.0)
    assert task_score(records, mode="strict").score == near(0.5)
    assert rubric_value("partially", negative=True, mode="binary") == 0.0
    assert rubric_value("partially", negative=True, mode="strict") == 1.0
    assert rubric_value("partially", negative=False, mode="strict") == 0.0


def test_ternary_uses_the_trial_mean_when_the_record_has_one():
    # trials satisfied, satisfied, not_satisfied → score 2/3, majority verdict satisfied.
    # ternary: 3·(2/3) / 3 = 2/3; binary and strict read the verdict: 3·1 / 3 = 1
    records = [rec("req", 3, "satisfied", score=2 / 3)]
    assert task_score(records, mode="ternary").score == near(2 / 3)
    assert task_score(records, mode="binary").score == near(1.0)
    assert task_score(records, mode="strict").score == near(1.0)
    with pytest.raises(ValueError, match="not in 0–1"):
        task_score([rec("req", 3, "satisfied", score=1.5)])


# Task t2 — fatal rubrics:
#   P1 +3 satisfied
#   P2 +2 partially       fatal requirement
#   N1 -4 not_satisfied   fatal flaw (absent)
#   N2 -1 partially
T2 = [
    rec("P1", 3, "satisfied", task_id="t2"),
    rec("P2", 2, "partially", task_id="t2", fatal=True),
    rec("N1", -4, "not_satisfied", task_id="t2", fatal=True),
    rec("N2", -1, "partially", task_id="t2"),
]


def test_fatal_requirement_zeroes_the_task_only_where_the_mode_says_it_is_unmet():
    # ternary: P2 partially is worth 0.5, not 0 → no veto; (3 + 1 − 0.5) / 5 = 0.7
    ternary = task_score(T2, mode="ternary")
    assert ternary.score == near(0.7) and not ternary.fatal_hit
    # binary: P2 partially → 0 → veto. raw (3 + 0 − 0) / 5 = 0.6, score 0
    binary = task_score(T2, mode="binary")
    assert binary.fatal_hit and binary.score == 0.0
    assert binary.raw_score == near(0.6)
    assert binary.fatal_criteria == ("P2",)
    # strict: raw (3 − 1) / 5 = 0.4 (N2 partially charged), P2 → veto → 0
    strict = task_score(T2, mode="strict")
    assert strict.fatal_hit and strict.score == 0.0 and strict.raw_score == near(0.4)


def test_fatal_flaw_vetoes_but_never_raises_a_negative_score():
    records = [
        rec("ok", 2, "satisfied", task_id="t3"),
        rec("fatal flaw", -3, "partially", task_id="t3", fatal=True),
    ]
    # ternary: flaw partially present is worth 0.5, not 1 → no veto; (2 − 1.5) / 2 = 0.25
    assert task_score(records, mode="ternary").score == near(0.25)
    # binary: partial flaw worth 0 → no veto; 2 / 2 = 1
    assert task_score(records, mode="binary").score == near(1.0)
    # strict: flaw counts 1 → veto; raw (2 − 3) / 2 = −0.5 is already below 0, so it stays −0.5
    strict = task_score(records, mode="strict")
    assert strict.fatal_hit and strict.score == near(-0.5)
    # fully present fatal flaw in ternary → veto; raw (2 − 3) / 2 = −0.5 → stays −0.5
    present = [records[0], rec("fatal flaw", -3, "satisfied", task_id="t3", fatal=True)]
    assert task_score(present, mode="ternary").fatal_hit
    # a failed fatal rubric cannot veto anything (a failed flaw is no penalty), but the task is flagged
    failed = [records[0], rec("fatal flaw", -3, None, task_id="t3", fatal=True)]
    for failures in ("zero", "skip"):
        result = task_score(failed, mode="strict", failures=failures)
        assert not result.fatal_hit and result.flagged and result.score == near(1.0)
    # worst case: the failed flaw counts as present, so it vetoes: raw (2 − 3) / 2 = −0.5 stays −0.5
    worst = task_score(failed, mode="strict", failures="worst")
    assert worst.fatal_hit and worst.score == near(-0.5) and worst.failed_items == 1


def test_undefined_scores_raise_with_the_task_named():
    with pytest.raises(ValueError, match=r"task 'neg' has no positive-weight rubric"):
        task_score([rec("flaw", -2, "satisfied", task_id="neg")])
    dead = [
        rec("a", 1, None, task_id="dead"),
        rec("b", 2, None, task_id="dead"),
        rec("c", -1, "satisfied", task_id="dead"),
    ]
    with pytest.raises(ValueError, match=r"task 'dead': all 2 positive rubrics failed to grade"):
        task_score(dead, failures="skip")
    # counted the official way the task has a score: (0 − 1) / (1 + 2) = −1/3
    assert task_score(dead).score == near(-1 / 3)
    with pytest.raises(ValueError, match="several tasks"):
        task_score([rec("a", 1, "satisfied"), rec("b", 1, "satisfied", task_id="other")])
    with pytest.raises(ValueError, match="no judge records"):
        task_score([])
    with pytest.raises(ValueError, match="unknown score mode"):
        task_score(T1, mode="lenient")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown failure accounting 'drop'"):
        task_score(T1, failures="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown failure accounting"):
        by_axis(T1, failures="drop")  # type: ignore[arg-type]
    mismatched = JudgeRecord(task_id="t", criterion="x", weight=2, role="negative", verdict="satisfied")
    with pytest.raises(ValueError, match="role 'negative' but weight 2"):
        task_score([mismatched])


def test_per_axis_scores_inside_one_task():
    # Explicit: (4·1 + 3·0.5) / 7 = 5.5/7; Implicit: 0/2 = 0;
    # Communication: (1·0.5 − 1·1) / 1 = −0.5; References, Synthesis: no positive weight → None;
    # Instruction: only the failed G → 0 / 5 = 0 (skipped: no weight left → None)
    per_axis = task_score(T1).per_axis
    assert per_axis["Explicit Criteria"] == near(5.5 / 7)
    assert per_axis["Implicit Criteria"] == 0
    assert per_axis["Communication Quality"] == near(-0.5)
    assert per_axis["References & Citation Quality"] is None
    assert per_axis["Synthesis of Information"] is None
    assert per_axis["Instruction Following"] == 0
    assert task_score(T1, failures="skip").per_axis["Instruction Following"] is None


def test_benchmark_score_is_the_mean_times_100():
    # t1 ternary 4/15, t2 ternary 0.7 → (4/15 + 0.7) / 2 × 100 = 48.333…
    scores = score_tasks(T1 + T2)
    assert [s.task_id for s in scores] == ["t1", "t2"]
    assert benchmark_score(scores) == near((4 / 15 + 0.7) / 2 * 100)
    # skip: t1 0.4 → (0.4 + 0.7) / 2 × 100 = 55
    assert benchmark_score(score_tasks(T1 + T2, failures="skip")) == near(55.0)
    # strict: t1 1/15, t2 0 (veto) → 100/30; skip: t1 0.1 → 5
    assert benchmark_score(score_tasks(T1 + T2, mode="strict")) == near(100 / 30)
    assert benchmark_score(score_tasks(T1 + T2, mode="strict", failures="skip")) == near(5.0)
    with pytest.raises(ValueError):
        benchmark_score([])


def test_by_axis_compliance_and_failure_breakdown():
    axes = by_axis(T1, mode="ternary")
    explicit = axes["Explicit Criteria"]
    assert explicit.compliance == near(5.5 / 7) and explicit.graded == 2 and explicit.failures == 0
    # ternary failures: C (requirement not satisfied) and H (flaw fully present); E is only partial
    assert axes["Implicit Criteria"].failures == 1
    communication = axes["Communication Quality"]
    assert communication.failures == 1 and communication.failure_rate == near(0.5)
    assert communication.failure_share == near(0.5)
    assert axes["References & Citation Quality"].compliance is None
    assert axes["References & Citation Quality"].penalties == near(1.0)  # 2·0.5
    instruction = axes["Instruction Following"]
    assert instruction.graded == 0 and instruction.failed_items == 1 and instruction.failure_rate is None
    # G's weight stays in the axis' denominator: 0 / 5; skipped, there is nothing left to divide by
    assert instruction.compliance == 0 and instruction.positive_weight == 5
    skipped = by_axis(T1, failures="skip")["Instruction Following"]
    assert skipped.compliance is None and skipped.positive_weight == 0 and skipped.failed_items == 1
    # worst case: G is read as not satisfied, so it is graded and counts among the axis' failures
    worst = by_axis(T1, failures="worst")["Instruction Following"]
    assert (worst.graded, worst.failures, worst.failure_rate, worst.compliance) == (1, 1, 1.0, 0.0)
    # strict failures: B, C, D, E, H = 5
    # → shares Explicit 1/5, Implicit 1/5, Communication 2/5, References 1/5
    strict = by_axis(T1, mode="strict")
    assert strict["Explicit Criteria"].failure_share == near(0.2)
    assert strict["Communication Quality"].failure_share == near(0.4)
    assert strict["References & Citation Quality"].failure_share == near(0.2)
    assert strict["Synthesis of Information"].failure_share == 0.0
    assert sum(a.failure_share for a in strict.values()) == near(1.0)


def test_mean_task_failure_share_follows_researchrubrics_average_ratio():
    # task x fails in a, a, b → shares a 2/3, b 1/3; task y fails in a → a 1.
    # average over the tasks where the axis failed: a (2/3 + 1)/2 = 5/6 over 2 tasks; b 1/3 over 1 task
    # aggregate: a 3/4, b 1/4
    records = [
        rec("x1", 1, "not_satisfied", task_id="x", axis="a"),
        rec("x2", 1, "not_satisfied", task_id="x", axis="a"),
        rec("x3", 1, "not_satisfied", task_id="x", axis="b"),
        rec("x4", 1, "satisfied", task_id="x", axis="b"),
        rec("y1", 1, "not_satisfied", task_id="y", axis="a"),
    ]
    axes = by_axis(records)
    assert axes["a"].mean_task_failure_share == near(5 / 6) and axes["a"].tasks_with_failures == 2
    assert axes["b"].mean_task_failure_share == near(1 / 3) and axes["b"].tasks_with_failures == 1
    assert axes["a"].failure_share == near(0.75)
    assert axes["b"].failure_rate == near(0.5)  # 1 of 2 graded


def test_by_domain_groups_task_scores():
    def task(task_id: str, domain: str) -> Task:
        return Task(task_id=task_id, prompt="p", rubrics=[Rubric(criterion="c", weight=1)], domain=domain)

    tasks = [task("t1", "STEM"), task("t2", "STEM"), task("t3", "Law")]
    scores = score_tasks(T1 + T2 + [rec("only", 1, "satisfied", task_id="t3")])
    domains = by_domain(tasks, scores)
    # STEM: (4/15 + 0.7)/2 × 100 with t1 flagged; Law: 1.0 × 100
    assert domains["STEM"].score == near((4 / 15 + 0.7) / 2 * 100) and domains["STEM"].tasks == 2
    assert domains["STEM"].flagged == 1
    assert domains["Law"].score == near(100.0)
    with pytest.raises(ValueError, match="not in the task list: t2"):
        by_domain(tasks[:1], scores[:2])


def test_counts_against_matches_the_value_mapping():
    assert counts_against("not_satisfied", negative=False)
    assert not counts_against("partially", negative=False)
    assert counts_against("partially", negative=False, mode="binary")
    assert counts_against("satisfied", negative=True)
    assert not counts_against("partially", negative=True, mode="binary")
    assert counts_against("partially", negative=True, mode="strict")
    assert not counts_against("not_satisfied", negative=True, mode="strict")


# --- failed gradings, counted the official way (issue 14, item 2)


def test_the_hand_case_a_failed_grading_halves_the_score():
    # two requirements of weight 1: one satisfied, one whose grading failed.
    # official (ResearchRubrics: a failed grading scores 0, weight kept): 1 / (1 + 1) = 0.5
    # old accounting (out of both sums): 1 / 1 = 1.0
    records = [rec("met", 1, "satisfied", task_id="h"), rec("lost", 1, None, task_id="h")]
    for mode in ("ternary", "binary", "strict"):
        official = task_score(records, mode=mode)
        assert official.score == near(0.5) and official.positive_weight == 2 and official.failed_items == 1
        skipped = task_score(records, mode=mode, failures="skip")
        assert skipped.score == near(1.0) and skipped.positive_weight == 1 and skipped.failed_items == 1


def test_a_task_whose_positive_rubrics_all_fail_scores_0_and_stays_in_the_mean():
    # task "ok": 3 satisfied of 3 → 1.0; task "dead": both requirements failed, its flaw absent → 0 / 5 = 0
    # benchmark: (1.0 + 0) / 2 × 100 = 50 (skipping, "dead" has no score and would vanish from the mean)
    records = [
        rec("a", 3, "satisfied", task_id="ok"),
        rec("b", 2, None, task_id="dead"),
        rec("c", 3, None, task_id="dead"),
        rec("d", -1, "not_satisfied", task_id="dead"),
    ]
    for mode in ("ternary", "binary", "strict"):
        scores = score_tasks(records, mode=mode)
        assert [(s.task_id, s.score, s.failed_items) for s in scores] == [("ok", 1.0, 0), ("dead", 0.0, 2)]
        assert benchmark_score(scores) == near(50.0)
        with pytest.raises(ValueError, match="'dead': all 2 positive rubrics failed"):
            score_tasks(records, mode=mode, failures="skip")


def test_a_failed_negative_rubric_is_no_penalty_except_in_the_worst_case():
    # negatives live in the numerator only, so a failed flaw worth 0 subtracts nothing:
    #   zero and skip: (2·1 + 2·0.5) / 4 = 0.75 in ternary; binary and strict 2 / 4 = 0.5
    #   worst (the RL reward's): the flaw counts as present: ternary (3 − 3) / 4 = 0; strict (2 − 3) / 4
    records = [rec("r1", 2, "satisfied"), rec("r2", 2, "partially"), rec("flaw", -3, None)]
    assert task_score(records).score == near(0.75)
    assert task_score(records, failures="skip").score == near(0.75)
    assert task_score(records, mode="binary").score == near(0.5)
    assert task_score(records, failures="worst").score == near(0.0)
    worst = task_score(records, mode="strict", failures="worst")
    assert worst.score == near(-0.25) and worst.penalties == near(3) and worst.failed_items == 1


def test_researcherbench_coverage_counts_a_failed_point_as_not_covered():
    # ResearcherBench: coverage = Σ w·covered / Σ w over the points, binary; a failed grading is
    # "not covered". Points 3 covered, 2 failed, 1 partially (not covered in binary):
    #   official 3 / (3 + 2 + 1) = 0.5; skipping the failure 3 / 4 = 0.75
    records = [
        rec("p1", 3, "satisfied", axis="Coverage"),
        rec("p2", 2, None, axis="Coverage"),
        rec("p3", 1, "partially", axis="Coverage"),
    ]
    assert task_score(records, mode="binary").score == near(0.5)
    assert task_score(records, mode="binary", failures="skip").score == near(0.75)
    assert by_axis(records, mode="binary")["Coverage"].compliance == near(0.5)
    assert by_axis(records, mode="binary", failures="skip")["Coverage"].compliance == near(0.75)


def test_weight_0_rubrics_count_nowhere_and_are_reported():
    # weights 4 satisfied, 1 not satisfied, −2 partially, and three of weight 0 (one failed, one with the
    # negative role, one satisfied) → the zero weights change nothing:
    #   ternary (4 − 1) / 5 = 0.6; binary 4 / 5 = 0.8; strict (4 − 2) / 5 = 0.4 — in every accounting
    records = [
        rec("a", 4, "satisfied"),
        rec("b", 1, "not_satisfied", axis="Implicit Criteria"),
        rec("c", -2, "partially"),
        rec("z1", 0, "satisfied", axis="Implicit Criteria"),
        rec("z2", 0, None),
        JudgeRecord(
            task_id="t1",
            criterion="z3",
            axis="Explicit Criteria",
            weight=0,
            role="negative",
            verdict="satisfied",
        ),
    ]
    expected = {"ternary": 0.6, "binary": 0.8, "strict": 0.4}
    for mode, value in expected.items():
        for failures in ("zero", "skip", "worst"):
            score = task_score(records, mode=mode, failures=failures)
            assert score.score == near(value), (mode, failures)
            assert score.positive_weight == 5 and score.zero_weight == 3 and score.failed_items == 0
    axes = by_axis(records)
    assert axes["Implicit Criteria"].zero_weight == 1 and axes["Implicit Criteria"].graded == 1
    assert axes["Explicit Criteria"].zero_weight == 2 and axes["Explicit Criteria"].failed_items == 0
    # a task of zero weights and flaws only has no scale
    with pytest.raises(ValueError, match="no positive-weight rubric"):
        task_score([rec("z", 0, "satisfied"), rec("f", -1, "satisfied")])


def test_a_failed_grading_never_scores_above_a_real_verdict_in_the_worst_case():
    # worst case reads each failed rubric as its least favourable verdict, so in every mode a failure
    # scores no higher than any verdict the judge could have given
    base = [rec("a", 3, "satisfied"), rec("b", 2, "partially"), rec("flaw", -1, "partially")]
    verdicts: list[Verdict] = ["satisfied", "partially", "not_satisfied"]
    for mode in ("ternary", "binary", "strict"):
        for weight in (2, -2):
            failed = task_score([*base, rec("x", weight, None)], mode=mode, failures="worst").score
            graded = [task_score([*base, rec("x", weight, v)], mode=mode).score for v in verdicts]
            assert failed == near(min(graded)), (mode, weight)
