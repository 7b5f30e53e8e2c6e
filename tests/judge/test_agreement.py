"""Judge–human agreement against a confusion matrix worked out by hand.

Twenty (task, criterion) items; rows are the human label, columns the judge's:

                 judge S   judge P   judge N    row sum
    human S         5         2         1          8
    human P         1         3         2          6
    human N         0         1         5          6
    col sum         6         6         8         20

Every expected value below is derived from this table in the comment next to it.
"""

from __future__ import annotations

import itertools

import pytest

from deepresearch.judge.agreement import (
    BINARY_LABELS,
    LABELS,
    accuracy,
    agreement,
    align,
    cohen_kappa,
    confusion_matrix,
    f1_per_label,
    labels_from_records,
    macro_f1,
    to_binary,
)
from deepresearch.judge.records import JudgeRecord, Verdict

S, P, N = "satisfied", "partially", "not_satisfied"
CELLS: dict[tuple[Verdict, Verdict], int] = {
    (S, S): 5, (S, P): 2, (S, N): 1,
    (P, S): 1, (P, P): 3, (P, N): 2,
    (N, S): 0, (N, P): 1, (N, N): 5,
}  # fmt: skip
PAIRS: list[tuple[Verdict, Verdict]] = [pair for pair, count in CELLS.items() for _ in range(count)]


def keyed(pairs: list[tuple[Verdict, Verdict]], tasks: int = 1):
    """Spread pairs over ``tasks`` task ids (round robin) as the human and judge label mappings."""
    task_ids = itertools.cycle([f"t{i}" for i in range(tasks)])
    keys = [(next(task_ids), f"criterion {i}") for i in range(len(pairs))]
    human = {key: h for key, (h, _) in zip(keys, pairs, strict=True)}
    judge: dict[tuple[str, str], Verdict | None] = {key: j for key, (_, j) in zip(keys, pairs, strict=True)}
    return human, judge


def test_confusion_matrix_and_accuracy():
    assert confusion_matrix(PAIRS) == [[5, 2, 1], [1, 3, 2], [0, 1, 5]]
    # diagonal 5 + 3 + 5 = 13 of 20
    assert accuracy(PAIRS) == pytest.approx(0.65)


def test_f1_per_label_and_macro():
    # F1 = 2TP / (2TP + FP + FN)
    # S: TP 5, FP 1 + 0 = 1, FN 2 + 1 = 3 → 10/14
    # P: TP 3, FP 2 + 1 = 3, FN 1 + 2 = 3 → 6/12 = 0.5
    # N: TP 5, FP 1 + 2 = 3, FN 0 + 1 = 1 → 10/14
    f1 = f1_per_label(PAIRS)
    assert f1[S] == pytest.approx(10 / 14)
    assert f1[P] == pytest.approx(0.5)
    assert f1[N] == pytest.approx(10 / 14)
    # macro = (10/14 + 7/14 + 10/14) / 3 = 27/42 = 9/14
    assert macro_f1(PAIRS) == pytest.approx(9 / 14)


def test_cohen_kappa_unweighted_and_linear():
    # p_o = 13/20 = 0.65; p_e = (8·6 + 6·6 + 6·8) / 20² = 132/400 = 0.33
    # κ = (0.65 − 0.33) / (1 − 0.33) = 0.32 / 0.67 = 32/67
    assert cohen_kappa(PAIRS) == pytest.approx(32 / 67)
    # linear disagreement weights: 0.5 for one step apart, 1 for S↔N.
    # observed: 0.5·(2 + 1 + 2 + 1) + 1·(1 + 0) = 4
    # expected counts rᵢ·cⱼ/20: S,P 2.4  P,S 1.8  P,N 2.4  N,P 1.8 → 0.5·8.4 = 4.2; S,N 3.2  N,S 1.8 → 5.0
    # κ_w = 1 − 4 / 9.2 = 13/23
    assert cohen_kappa(PAIRS, weights="linear") == pytest.approx(13 / 23)


def test_binary_collapses_partially_into_not_satisfied():
    # binary table (P merged into N):  human S: [5, 3]; human N: [1 + 0, 3 + 2 + 1 + 5] = [1, 11]
    # accuracy (5 + 11)/20 = 0.8
    # F1 S = 10/(10 + 1 + 3) = 5/7; F1 N = 22/(22 + 3 + 1) = 11/13; macro (5/7 + 11/13)/2 = 71/91
    # κ: p_e = (8·6 + 12·14)/400 = 216/400 = 0.54 → (0.8 − 0.54)/(0.46) = 13/23
    human, judge = keyed(PAIRS)
    result = agreement(human, judge, binary=True)
    assert result.labels == BINARY_LABELS
    assert result.confusion == [[5, 3], [1, 11]]
    assert result.accuracy == pytest.approx(0.8)
    assert result.macro_f1 == pytest.approx(71 / 91)
    assert result.kappa == pytest.approx(13 / 23)
    # with two labels linear weights are the unweighted ones
    assert result.linear_kappa == pytest.approx(result.kappa)
    assert to_binary(P) == N and to_binary(S) == S


def test_agreement_reports_every_statistic_and_the_unpaired_items():
    human, judge = keyed(PAIRS)
    judge[("t0", "extra")] = S  # judged but never labelled
    human[("t0", "missing")] = S  # labelled but the judge failed on it
    judge[("t0", "missing")] = None
    result = agreement(human, judge)
    assert result.n == 20 and result.labels == LABELS
    assert result.accuracy == pytest.approx(0.65)
    assert result.macro_f1 == pytest.approx(9 / 14)
    assert result.kappa == pytest.approx(32 / 67)
    assert result.linear_kappa == pytest.approx(13 / 23)
    assert result.missing_judge == 1 and result.unlabelled == 1
    # one task: the per-task mean equals the pooled macro-F1
    assert result.mean_task_macro_f1 == pytest.approx(9 / 14)


def test_absent_labels_and_the_per_task_average():
    # task a: (S,S), (N,N) → P used by neither side: F1 undefined
    #   macro over defined labels = (1 + 1)/2 = 1; counting P as 0 (scikit-learn zero_division=0) = 2/3
    # task b: (S,N), (N,N) → S: TP 0, FN 1 → 0; N: TP 1, FP 1 → 2/3; P undefined → 0
    #   per-task (absent as 0) = (0 + 2/3 + 0)/3 = 2/9
    # mean over tasks = (2/3 + 2/9)/2 = 4/9
    a = [(S, S), (N, N)]
    assert f1_per_label(a)[P] is None
    assert macro_f1(a) == pytest.approx(1.0)
    assert macro_f1(a, absent_label_f1=0.0) == pytest.approx(2 / 3)
    human = {("a", "1"): S, ("a", "2"): N, ("b", "1"): S, ("b", "2"): N}
    judge: dict[tuple[str, str], Verdict | None] = {
        ("a", "1"): S,
        ("a", "2"): N,
        ("b", "1"): N,
        ("b", "2"): N,
    }
    assert agreement(human, judge).mean_task_macro_f1 == pytest.approx(4 / 9)


def test_kappa_is_undefined_when_both_sides_use_one_label():
    assert cohen_kappa([(S, S), (S, S)]) is None
    with pytest.raises(ValueError, match="no label pairs"):
        accuracy([])
    with pytest.raises(ValueError, match="no label pairs"):
        agreement({("t", "c"): S}, {("t", "c"): None})


def test_labels_from_records_and_align():
    records = [
        JudgeRecord(task_id="t", criterion="a", weight=1, verdict="satisfied"),
        JudgeRecord(task_id="t", criterion="b", weight=-1, role="negative", verdict="partially"),
        JudgeRecord(task_id="t", criterion="c", weight=1, verdict=None, failed=True),
    ]
    judge = labels_from_records(records)
    assert judge == {("t", "a"): S, ("t", "b"): P, ("t", "c"): None}
    aligned = align({("t", "a"): S, ("t", "b"): N, ("t", "c"): S}, judge)
    assert aligned.pairs == [(S, S), (N, P)]
    assert aligned.missing_judge == [("t", "c")]
    with pytest.raises(ValueError, match="two judge records"):
        labels_from_records(records + records[:1])
