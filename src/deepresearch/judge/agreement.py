"""How far the judge agrees with human labels, per (task, criterion).

The judge is only worth trusting as far as it matches expert labels (ResearchRubrics reports
macro-F1 of its judge against human verdicts; Step-DeepResearch found "partially" to be where judges
and humans disagree most). Pure functions: labels in, numbers out.

Conventions:
- ``pairs`` are ``(human, judge)`` verdicts; the confusion matrix has human labels as rows and judge
  labels as columns, both in ``LABELS`` order (satisfied, partially, not satisfied — an ordinal scale,
  which linear-weighted kappa uses).
- ``binary`` collapses "partially" into "not satisfied" on both sides, as ResearchRubrics' metric
  scripts do.
- Per-label F1 is 2·TP / (2·TP + FP + FN); it is undefined (None) for a label neither side used, and
  macro-F1 averages the defined ones. ``absent_label_f1=0.0`` counts such a label as 0 instead, which
  reproduces scikit-learn's ``f1_score(labels=…, average="macro", zero_division=0)`` used by
  ResearchRubrics' ``calculate_F1_score.py``; that script averages per task, as ``mean_task_macro_f1``
  does.
- Kappa is None when chance agreement is already perfect (both sides used one label only).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from deepresearch.judge.records import JudgeRecord, Verdict

LABELS: tuple[Verdict, ...] = ("satisfied", "partially", "not_satisfied")
BINARY_LABELS: tuple[Verdict, ...] = ("satisfied", "not_satisfied")

Key = tuple[str, str]
"""(task id, criterion)."""
Pair = tuple[Verdict, Verdict]
"""(human, judge)."""


@dataclass(frozen=True)
class Alignment:
    keys: list[Key]
    pairs: list[Pair]
    missing_judge: list[Key]
    """Human-labelled items the judge has no verdict for (never graded, or grading failed)."""
    unlabelled: list[Key]
    """Judge verdicts with no human label."""


@dataclass(frozen=True)
class Agreement:
    n: int
    labels: tuple[Verdict, ...]
    accuracy: float
    macro_f1: float
    f1: dict[Verdict, float | None]
    kappa: float | None
    linear_kappa: float | None
    """Linear-weighted kappa: a partially/satisfied mix-up costs half a satisfied/not-satisfied one."""
    confusion: list[list[int]]
    """Rows: human label; columns: judge label; both in ``labels`` order."""
    mean_task_macro_f1: float
    """Macro-F1 per task (absent labels counted as 0, like ResearchRubrics), averaged over tasks."""
    missing_judge: int
    unlabelled: int


def to_binary(verdict: Verdict) -> Verdict:
    return "not_satisfied" if verdict == "partially" else verdict


def labels_from_records(records: Iterable[JudgeRecord]) -> dict[Key, Verdict | None]:
    """The judge's verdict per (task, criterion); None where grading failed."""
    labels: dict[Key, Verdict | None] = {}
    for record in records:
        key = (record.task_id, record.criterion)
        if key in labels:
            raise ValueError(f"two judge records for task {key[0]!r}, criterion {key[1]!r}")
        labels[key] = None if record.failed else record.verdict
    return labels


def align(human: Mapping[Key, Verdict], judge: Mapping[Key, Verdict | None]) -> Alignment:
    """Pair the labels both sides gave, in the human labels' order."""
    keys: list[Key] = []
    pairs: list[Pair] = []
    missing: list[Key] = []
    for key, label in human.items():
        verdict = judge.get(key)
        if verdict is None:
            missing.append(key)
        else:
            keys.append(key)
            pairs.append((label, verdict))
    unlabelled = [key for key in judge if key not in human]
    return Alignment(keys=keys, pairs=pairs, missing_judge=missing, unlabelled=unlabelled)


def agreement(
    human: Mapping[Key, Verdict], judge: Mapping[Key, Verdict | None], *, binary: bool = False
) -> Agreement:
    """Every agreement statistic for the items both sides labelled."""
    aligned = align(human, judge)
    labels = BINARY_LABELS if binary else LABELS
    pairs = _collapse(aligned.pairs) if binary else aligned.pairs
    _require(pairs)
    by_task: dict[str, list[Pair]] = defaultdict(list)
    for (task_id, _), pair in zip(aligned.keys, pairs, strict=True):
        by_task[task_id].append(pair)
    task_f1 = [macro_f1(task_pairs, labels, absent_label_f1=0.0) for task_pairs in by_task.values()]
    return Agreement(
        n=len(pairs),
        labels=labels,
        accuracy=accuracy(pairs),
        macro_f1=macro_f1(pairs, labels),
        f1=f1_per_label(pairs, labels),
        kappa=cohen_kappa(pairs, labels),
        linear_kappa=cohen_kappa(pairs, labels, weights="linear"),
        confusion=confusion_matrix(pairs, labels),
        mean_task_macro_f1=sum(task_f1) / len(task_f1),
        missing_judge=len(aligned.missing_judge),
        unlabelled=len(aligned.unlabelled),
    )


def confusion_matrix(pairs: Sequence[Pair], labels: Sequence[Verdict] = LABELS) -> list[list[int]]:
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for human, judge in pairs:
        if human not in index or judge not in index:
            raise ValueError(f"label pair ({human!r}, {judge!r}) is outside {list(labels)}")
        matrix[index[human]][index[judge]] += 1
    return matrix


def accuracy(pairs: Sequence[Pair]) -> float:
    _require(pairs)
    return sum(1 for human, judge in pairs if human == judge) / len(pairs)


def f1_per_label(pairs: Sequence[Pair], labels: Sequence[Verdict] = LABELS) -> dict[Verdict, float | None]:
    matrix = confusion_matrix(pairs, labels)
    scores: dict[Verdict, float | None] = {}
    for i, label in enumerate(labels):
        tp = matrix[i][i]
        fn = sum(matrix[i]) - tp
        fp = sum(row[i] for row in matrix) - tp
        scores[label] = 2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else None
    return scores


def macro_f1(
    pairs: Sequence[Pair], labels: Sequence[Verdict] = LABELS, *, absent_label_f1: float | None = None
) -> float:
    _require(pairs)
    scores = [s if s is not None else absent_label_f1 for s in f1_per_label(pairs, labels).values()]
    defined = [s for s in scores if s is not None]
    return sum(defined) / len(defined)


def cohen_kappa(
    pairs: Sequence[Pair],
    labels: Sequence[Verdict] = LABELS,
    *,
    weights: Literal["none", "linear"] = "none",
) -> float | None:
    """Cohen's kappa, unweighted or with linear disagreement weights |i − j| / (k − 1)."""
    _require(pairs)
    matrix = confusion_matrix(pairs, labels)
    n = len(pairs)
    k = len(labels)
    rows = [sum(row) for row in matrix]
    cols = [sum(row[j] for row in matrix) for j in range(k)]

    def weight(i: int, j: int) -> float:
        if weights == "linear":
            return abs(i - j) / (k - 1)
        return 0.0 if i == j else 1.0

    observed = sum(weight(i, j) * matrix[i][j] for i in range(k) for j in range(k)) / n
    expected = sum(weight(i, j) * rows[i] * cols[j] for i in range(k) for j in range(k)) / (n * n)
    if expected == 0:
        return None
    return 1.0 - observed / expected


def _collapse(pairs: Iterable[Pair]) -> list[Pair]:
    return [(to_binary(human), to_binary(judge)) for human, judge in pairs]


def _require(pairs: Sequence[Pair]) -> None:
    if not pairs:
        raise ValueError("no label pairs to compare")
