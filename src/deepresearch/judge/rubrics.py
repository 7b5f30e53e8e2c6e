"""Rubrics and tasks: the data the judge grades against.

A rubric is one checkable criterion with a weight. Positive weights reward what a good report does;
negative weights describe flaws (ResearchRubrics keeps them out of the denominator). ``role`` is the
report's taxonomy: ``explicit`` (asked for in the prompt), ``implicit`` (what an expert expects
anyway) and ``negative`` (a flaw). ``fatal`` marks a professional error that zeroes the whole report
(ADR-Bench's finance/law track). A weight of 0 is allowed because real benchmark data has it (one
ResearchRubrics dev task): such a rubric loads and is counted, but it can never change a score, so
``Task.scored`` leaves it out of what the judge is asked.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Role = Literal["explicit", "implicit", "negative"]


class Rubric(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    criterion: str = Field(min_length=1)
    """What the report must do (or, for a negative rubric, the flaw it must not have)."""
    weight: float
    """Importance; negative for flaws. Zero loads but never counts (it is reported, not graded)."""
    axis: str = ""
    """ResearchRubrics axis, e.g. ``Explicit Criteria``, ``Implicit Criteria``, ``Synthesis of
    Information``, ``References & Citation Quality``, ``Communication Quality``, ``Instruction Following``."""
    role: Role | None = None
    """``explicit``, ``implicit`` or ``negative``; derived from the weight's sign when absent."""
    fatal: bool = False
    """When this flaw is present (or this requirement is unmet), the whole task scores 0."""

    @model_validator(mode="after")
    def _check(self) -> Rubric:
        if self.role is None:
            self.role = "negative" if self.weight < 0 else "explicit"
        if self.weight != 0 and (self.role == "negative") != (self.weight < 0):
            raise ValueError(
                f"role {self.role!r} does not match weight {self.weight}: negative rubrics "
                "carry negative weights and only they do"
            )
        return self

    @property
    def negative(self) -> bool:
        return self.weight < 0


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    task_id: str = Field(min_length=1)
    prompt: str
    rubrics: list[Rubric] = Field(min_length=1)
    domain: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)
    """Anything else the source file carried (ResearchRubrics' complexity tags, DRB's dimension weights)."""

    @property
    def positive_weight(self) -> float:
        return sum(r.weight for r in self.rubrics if r.weight > 0)

    @property
    def zero_weight(self) -> int:
        """How many rubrics have weight 0 (loaded and reported; they count in no score)."""
        return sum(1 for r in self.rubrics if r.weight == 0)

    def scored(self) -> Task:
        """This task without its weight-0 rubrics: what is worth sending to the judge."""
        if not self.zero_weight:
            return self
        return self.model_copy(update={"rubrics": [r for r in self.rubrics if r.weight != 0]})
