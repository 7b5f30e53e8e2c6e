"""Which benchmark's rules a grading follows: its score mode, its failure accounting, its prompts.

A benchmark's number depends on how it reads a verdict and counts a failed grading, so each benchmark
has a **protocol** (``PROTOCOLS``): ResearchRubrics grades ternary (its official compliance),
ResearcherBench binary coverage (a point is covered or not: partial credit would inflate it), our own
tasks ternary; all count a failed grading as 0 with its weight kept, as both benchmarks do. A protocol
also names its prompt family: each benchmark's ``official-*`` prompts follow its released evaluator's
inputs (ResearchRubrics: criterion, axis and weight, no task prompt, binary; ResearcherBench: the point
and its weight, covered or not), our own tasks the paper's ternary prompts.

DeepResearch Bench is scored by **RACE**, not per rubric: one comparative call per task against the
benchmark's reference article, ``target / (target + reference)``. Its protocol needs the reference
articles (``reference.jsonl``); ``auto`` picks it for a DRB criteria file when they are given or found
where the benchmark ships them (``drb_companions``), and otherwise grades the criteria as absolute
rubrics under our protocol, saying so, since an absolute compliance is not DRB's number.

``auto`` picks the protocol from the format the task file was read as; an explicit ``mode``,
``failures`` or ``prompts`` (``paper`` or ``official``) still wins over the protocol's, and the summary
says so. RACE has none of the three, so giving one with it is an error rather than silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from deepresearch.errors import ConfigError
from deepresearch.judge.scoring import Failures, ScoreMode

ProtocolName = Literal["auto", "researchrubrics", "researcherbench", "deepresearchbench", "ours"]
PromptsChoice = Literal["paper", "official"]
RACE = "deepresearchbench"


@dataclass(frozen=True)
class Protocol:
    """How one benchmark turns verdicts into its number: the score mode, the failure accounting and
    the judge's prompt family (``grader.PROMPT_FAMILIES``, or ``race`` for the comparative call)."""

    name: str
    mode: ScoreMode
    failures: Failures
    about: str
    prompts: str = "paper"


PROTOCOLS: dict[str, Protocol] = {
    "researchrubrics": Protocol(
        "researchrubrics",
        "ternary",
        "zero",
        "ResearchRubrics' official ternary compliance",
        "official-researchrubrics",
    ),
    "researcherbench": Protocol(
        "researcherbench",
        "binary",
        "zero",
        "ResearcherBench coverage: a point is covered or not",
        "official-researcherbench",
    ),
    RACE: Protocol(
        RACE,
        "ternary",  # unused: RACE scores 0-10 per criterion for both articles
        "zero",  # unused: a failed criterion is renormalised inside its dimension
        "DeepResearch Bench RACE: target/(target+reference), one comparative call per task",
        "race",
    ),
    "ours": Protocol("ours", "ternary", "zero", "our own tasks: ternary compliance"),
}
FORMAT_PROTOCOL = {
    "researchrubrics": "researchrubrics",
    "researcherbench": "researcherbench",
    "native": "ours",
    "drb": RACE,  # with its reference articles; without them, absolute compliance under ``ours``
}


@dataclass(frozen=True)
class AppliedProtocol:
    """The protocol a grading ran under, and what overrode it."""

    name: str
    mode: ScoreMode
    failures: Failures
    chosen: str
    """``auto (<format> task file)`` or ``explicit``, and why when auto could not follow the format."""
    mode_overridden: bool = False
    failures_overridden: bool = False
    prompts: str = "paper"
    """The judge's prompt family."""
    prompts_overridden: bool = False

    @property
    def is_race(self) -> bool:
        return self.name == RACE

    def describe(self) -> str:
        """E.g. ``researcherbench (binary, failures counted as zero), official-researcherbench prompts``."""
        if self.is_race:
            return (
                f"{RACE} (RACE: target/(target+reference) against the reference articles, one comparative "
                "call per task, a failed criterion renormalised inside its dimension)"
            )
        base = PROTOCOLS[self.name]
        mode = f"{self.mode} by --mode instead of {base.mode}" if self.mode_overridden else self.mode
        failures = (
            f"failures counted as {self.failures} by --failures instead of {base.failures}"
            if self.failures_overridden
            else f"failures counted as {self.failures}"
        )
        prompts = (
            f"{self.prompts} prompts by --prompts instead of {base.prompts}"
            if self.prompts_overridden
            else f"{self.prompts} prompts"
        )
        return f"{self.name} ({mode}, {failures}), {prompts}"


def choose_protocol(
    protocol: str,
    task_format: str,
    *,
    mode: ScoreMode | None = None,
    failures: Failures | None = None,
    prompts: PromptsChoice | None = None,
    references: Path | None = None,
) -> AppliedProtocol:
    """The protocol for a task file read as ``task_format``; an explicit ``mode``/``failures`` wins, and
    ``prompts`` (``paper``, or ``official``: the protocol's benchmark's own) overrides its prompt family.
    ``references`` is DeepResearch Bench's ``reference.jsonl`` when one was given or found."""
    if protocol not in get_args(ProtocolName):
        raise ConfigError(f"unknown protocol {protocol!r}; use one of {', '.join(get_args(ProtocolName))}")
    if protocol == "auto":
        name = FORMAT_PROTOCOL.get(task_format, "ours")
        chosen = f"auto ({task_format or 'unknown'} task file)"
        if name == RACE and references is None:
            name = "ours"
            chosen = (
                "auto (drb task file without reference.jsonl: absolute compliance on its criteria, not "
                "DeepResearch Bench's RACE; pass --references for RACE)"
            )
        elif name == RACE and (mode or failures or prompts):
            name = "ours"
            chosen = "auto (drb task file graded per criterion because --mode/--failures/--prompts was given)"
    else:
        name, chosen = protocol, "explicit"
    if name == RACE:
        if task_format != "drb":
            raise ConfigError(f"protocol {RACE} (RACE) needs DeepResearch Bench's criteria.jsonl")
        if references is None:
            raise ConfigError(
                f"protocol {RACE} (RACE) compares each report with the benchmark's reference article: "
                "pass --references reference.jsonl"
            )
        if mode or failures or prompts:
            raise ConfigError(
                f"protocol {RACE} (RACE) has no --mode, --failures or --prompts; drop them, or choose "
                "--protocol ours to grade the criteria as absolute rubrics"
            )
        return AppliedProtocol(name=RACE, mode="ternary", failures="zero", chosen=chosen, prompts="race")
    base = PROTOCOLS[name]
    family = base.prompts
    if prompts == "paper":
        family = "paper"
    elif prompts == "official":
        if base.prompts == "paper":
            raise ConfigError(
                f"protocol {name} has no official prompts (only ResearchRubrics and ResearcherBench do); "
                "use --prompts paper or choose --protocol researchrubrics|researcherbench"
            )
    elif prompts is not None:
        raise ConfigError(f"unknown prompts {prompts!r}; use paper or official")
    return AppliedProtocol(
        name=name,
        mode=mode or base.mode,
        failures=failures or base.failures,
        chosen=chosen,
        mode_overridden=mode is not None and mode != base.mode,
        failures_overridden=failures is not None and failures != base.failures,
        prompts=family,
        prompts_overridden=family != base.prompts,
    )


def drb_companions(criteria: Path) -> tuple[Path | None, Path | None]:
    """DeepResearch Bench's ``reference.jsonl`` and ``query.jsonl`` for its ``criteria.jsonl``, where the
    benchmark ships them (``data/criteria_data/``, ``data/test_data/cleaned_data/``,
    ``data/prompt_data/``) or beside it; ``None`` for one that is not there."""
    folder = criteria.parent
    data = folder.parent
    references = _first(folder / "reference.jsonl", data / "test_data" / "cleaned_data" / "reference.jsonl")
    queries = _first(folder / "query.jsonl", data / "prompt_data" / "query.jsonl")
    return references, queries


def _first(*candidates: Path) -> Path | None:
    return next((path for path in candidates if path.is_file()), None)
