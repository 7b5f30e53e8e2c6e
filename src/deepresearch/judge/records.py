"""What grading produces: one ``JudgeRecord`` per (task, rubric), the contract in ARCHITECTURE.md.

Verdicts are about the *criterion*: for a negative rubric the criterion describes a flaw, so
``satisfied`` means the flaw is present — which is why its negative weight then subtracts.
A record whose grading failed after retries has ``verdict=None`` and ``failed=True``; the scorer
counts it the way its ``failures`` option says (the benchmarks' official 0 by default) and always
reports how many there were.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from deepresearch.judge.rubrics import Role

Verdict = Literal["satisfied", "partially", "not_satisfied"]
TERNARY_SCORE: dict[Verdict, float] = {"satisfied": 1.0, "partially": 0.5, "not_satisfied": 0.0}


class Trial(BaseModel):
    """One independent grading of one rubric."""

    verdict: Verdict
    score: float
    confidence: float | None = None
    reasoning: str = ""
    evidence: list[str] = Field(default_factory=list)


class JudgeRecord(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    task_id: str
    criterion: str
    axis: str = ""
    weight: float
    role: Role = "explicit"
    fatal: bool = False
    verdict: Verdict | None = None
    """The verdict after ``trials`` (majority; ties go to the middle one); ``None`` when grading failed."""
    score: float | None = None
    """Mean ternary score of the trials (1 / 0.5 / 0), before any weighting."""
    trials: list[Trial] = Field(default_factory=list)
    reasoning: str = ""
    evidence: list[str] = Field(default_factory=list)
    failed: bool = False
    error: str | None = None
    judge_model: str = ""
    cost_usd: float = 0.0
