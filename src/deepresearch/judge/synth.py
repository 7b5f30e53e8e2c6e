"""Rubric synthesis for RL: tasks with rubrics, written backwards from seeds in two steps, then judged.

Expert rubrics are too costly at RL scale, so they are synthesized ("two-step reverse synthesis"):

1. From a seed (a topic, optionally the text or outline of a high-quality report), a strong model
   writes a *hidden* task summary and 8–20 atomic rubrics, each with a dimension, a weight (±1..5)
   and a role: ``explicit`` (the user will ask for it), ``implicit`` (an expert does it unasked) or
   ``negative`` (a flaw, with a negative weight).
2. From the rubrics alone (not the summary), the model writes the user query, then re-labels every
   rubric's role by reading that query. Any role that changed means the query does not carry the
   rubrics (an explicit requirement left unsaid, an implicit one spelled out): the sample is dropped.
3. An independent judge scores how well summary, query and rubrics agree (0–1) and may veto; a sample
   is kept at or above the threshold.

Model mistakes never raise: a reply that is not valid JSON, or breaks a rule, is asked for once more
with the problems listed, then the seed is discarded with a reason. Only ``LLMError`` (the endpoint
failed after its own retries) leaves a seed undecided, so that a rerun tries it again.

File contract (``synthesize_file``): kept tasks are appended to the output, one ``Task.model_dump()``
per line (the JSONL task format); discarded seeds go to ``<out>.discarded.jsonl`` as ``SynthOutcome``
lines without the task. Both carry the seed id, and a rerun skips every seed found in either file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

import json_repair
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deepresearch.errors import ConfigError, LLMError
from deepresearch.judge.grader import render
from deepresearch.judge.rubrics import Role, Rubric, Task
from deepresearch.llm.client import ChatClient

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.7
"""Lowest judge consistency score (0–1) at which a synthesized task is kept."""
MIN_RUBRICS = 8
MAX_RUBRICS = 20
MAX_WEIGHT = 5.0
"""Largest absolute rubric weight; the smallest is 1."""
MAX_DOCUMENT_CHARS = 24_000
"""A seed document longer than this is cut before it goes into the step-1 prompt."""
TASK_ID_PREFIX = "synth-"
"""A kept task's id is this prefix followed by its seed's id."""
ATTEMPTS = 2
"""Replies asked for per step: the first, and one retry that lists what was wrong with it."""

Reason = Literal[
    "kept",
    "step1_invalid",
    "step2_invalid",
    "role_mismatch",
    "consistency_invalid",
    "low_consistency",
    "judge_rejected",
    "llm_error",
]
"""Why a seed ended as it did; every value but ``kept`` and ``llm_error`` is a discard."""
Step = Literal["step1", "step2", "consistency"]

_ROLES: dict[str, Role] = {"explicit": "explicit", "implicit": "implicit", "negative": "negative"}
_FENCE = re.compile(r"```(?:json)?\s*\n(.*?)```", re.DOTALL)
_T = TypeVar("_T")


class SynthSeed(BaseModel):
    """One line of a seeds file: what a task is synthesized from."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    id: str = Field(min_length=1)
    """Stable identifier; the task id is ``synth-<id>`` and reruns skip seeds already decided."""
    topic: str = Field(min_length=1)
    """The subject of the research task, a phrase or a sentence."""
    domain: str = ""
    """Copied to ``Task.domain`` (e.g. ``finance``, ``law``, ``medicine``)."""
    language: Literal["en", "zh"] = "en"
    """Language of the hidden summary, the rubrics and the query."""
    document: str = ""
    """Text of a high-quality report (or an excerpt) to reverse-engineer the task from."""
    outline: list[str] = Field(default_factory=list)
    """Section headings of such a report, when the text itself is not at hand."""
    source: str = ""
    """Where the document comes from (URL or citation); copied to the task's meta."""


class Attempt(BaseModel):
    """One model reply within a step, and what was wrong with it (empty when it was accepted)."""

    reply: str
    problems: list[str] = Field(default_factory=list)


class SynthOutcome(BaseModel):
    """What became of one seed: the kept task, or why it was discarded, with every raw reply."""

    seed_id: str
    kept: bool
    reason: Reason
    detail: str = ""
    """The judge's reason when kept; otherwise what went wrong (problems, flipped roles, score)."""
    task: Task | None = None
    consistency: float | None = None
    steps: dict[str, list[Attempt]] = Field(default_factory=dict)
    """Raw replies per step (``step1``, ``step2``, ``consistency``), in order."""
    cost_usd: float = 0.0
    synth_model: str = ""
    judge_model: str = ""


@dataclass(slots=True)
class SynthReport:
    """Totals of one ``synthesize_file`` run (seeds skipped as already done are not re-counted)."""

    kept: int = 0
    discarded: dict[str, int] = field(default_factory=dict)
    """Discards of this run by reason."""
    failed: int = 0
    """Seeds whose model calls failed (``llm_error``); written nowhere, so a rerun tries them again."""
    skipped: int = 0
    """Seeds already present in the output or the discarded file."""
    cost_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class _Draft:
    summary: str
    rubrics: dict[str, Rubric]
    """By id (``R1``…), in the order the model wrote them."""


@dataclass(frozen=True, slots=True)
class _Query:
    query: str
    roles: dict[str, Role]


@dataclass(frozen=True, slots=True)
class _Verdict:
    score: float
    reason: str
    keep: bool | None


# --- one seed


async def synthesize(
    seed: SynthSeed,
    client: ChatClient,
    *,
    judge_client: ChatClient | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> SynthOutcome:
    """Synthesize one task from ``seed``; the judge is ``judge_client`` (or ``client`` itself)."""
    judge = judge_client or client
    calls = _Calls(seed, client.config.model, judge.config.model)
    try:
        return await _synthesize(seed, client, judge, threshold, calls)
    except LLMError as exc:
        logger.warning("synth %s: model call failed: %s", seed.id, exc)
        return calls.outcome("llm_error", str(exc))


async def _synthesize(
    seed: SynthSeed, client: ChatClient, judge: ChatClient, threshold: float, calls: _Calls
) -> SynthOutcome:
    document = seed.document.strip()
    step1_vars = {
        "seed": seed,
        "document": document[:MAX_DOCUMENT_CHARS],
        "document_truncated": len(document) > MAX_DOCUMENT_CHARS,
        "min_rubrics": MIN_RUBRICS,
        "max_rubrics": MAX_RUBRICS,
        "max_weight": int(MAX_WEIGHT),
    }
    draft, problems = await calls.ask(client, "step1", "synth_step1.j2", step1_vars, _parse_draft)
    if draft is None:
        return calls.outcome("step1_invalid", "; ".join(problems))

    listed = _listed(draft.rubrics)
    step2_vars = {"rubrics": listed, "language": seed.language}
    parse_query = _query_parser(list(draft.rubrics))
    query, problems = await calls.ask(client, "step2", "synth_step2.j2", step2_vars, parse_query)
    if query is None:
        return calls.outcome("step2_invalid", "; ".join(problems))
    flips = [
        f"{rubric_id} ({_clip(rubric.criterion)!r}): {rubric.role} in step 1, {relabelled} in step 2"
        for rubric_id, rubric in draft.rubrics.items()
        if (relabelled := query.roles[rubric_id]) != rubric.role
    ]
    if flips:
        return calls.outcome("role_mismatch", "; ".join(flips))

    judge_vars = {"summary": draft.summary, "query": query.query, "rubrics": listed}
    verdict, problems = await calls.ask(
        judge, "consistency", "synth_consistency.j2", judge_vars, _parse_verdict
    )
    if verdict is None:
        return calls.outcome("consistency_invalid", "; ".join(problems))
    if verdict.score < threshold:
        detail = f"score {verdict.score:.2f} below {threshold:.2f}: {verdict.reason}"
        return calls.outcome("low_consistency", detail, consistency=verdict.score)
    if verdict.keep is False:
        detail = f"score {verdict.score:.2f} but the judge would discard it: {verdict.reason}"
        return calls.outcome("judge_rejected", detail, consistency=verdict.score)

    meta: dict[str, Any] = {
        "seed_id": seed.id,
        "hidden_summary": draft.summary,
        "consistency": verdict.score,
        "consistency_reason": verdict.reason,
        "synth_model": calls.synth_model,
        "judge_model": calls.judge_model,
        "language": seed.language,
    }
    if seed.source:
        meta["source"] = seed.source
    task = Task(
        task_id=TASK_ID_PREFIX + seed.id,
        prompt=query.query,
        rubrics=list(draft.rubrics.values()),
        domain=seed.domain,
        meta=meta,
    )
    return calls.outcome("kept", verdict.reason, consistency=verdict.score, task=task)


class _Calls:
    """The model calls made for one seed: raw replies per step and their summed cost."""

    def __init__(self, seed: SynthSeed, synth_model: str, judge_model: str) -> None:
        self.seed = seed
        self.synth_model = synth_model
        self.judge_model = judge_model
        self.steps: dict[str, list[Attempt]] = {}
        self.cost_usd = 0.0

    async def ask(
        self,
        client: ChatClient,
        step: Step,
        template: str,
        variables: dict[str, Any],
        parse: Callable[[dict[str, Any]], tuple[_T | None, list[str]]],
    ) -> tuple[_T | None, list[str]]:
        """The parsed reply of ``step``, retried once with its problems; ``(None, problems)`` at last."""
        problems: list[str] = []
        for _ in range(ATTEMPTS):
            prompt = render(template, problems=problems, **variables)
            completion = await client.complete([{"role": "user", "content": prompt}])
            self.cost_usd += completion.usage.cost_usd
            data = _json_object(completion.content)
            value: _T | None = None
            if completion.finish_reason == "length":
                problems = ["the reply was cut off by the output token limit; keep it shorter"]
            elif data is None:
                problems = ["the reply holds no JSON object"]
            else:
                value, problems = parse(data)
            self.steps.setdefault(step, []).append(Attempt(reply=completion.content, problems=problems))
            if not problems:
                return value, []
            logger.debug("synth %s: %s reply rejected: %s", self.seed.id, step, problems)
        return None, problems

    def outcome(
        self, reason: Reason, detail: str, *, consistency: float | None = None, task: Task | None = None
    ) -> SynthOutcome:
        return SynthOutcome(
            seed_id=self.seed.id,
            kept=reason == "kept",
            reason=reason,
            detail=detail,
            task=task,
            consistency=consistency,
            steps=self.steps,
            cost_usd=self.cost_usd,
            synth_model=self.synth_model,
            judge_model=self.judge_model,
        )


# --- parsing the replies (pure)


def _parse_draft(data: dict[str, Any]) -> tuple[_Draft | None, list[str]]:
    problems: list[str] = []
    summary = data.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        problems.append("`summary` must be a non-empty string")
    items = data.get("rubrics")
    if not isinstance(items, list):
        return None, [*problems, "`rubrics` must be a list of objects"]
    if not MIN_RUBRICS <= len(items) <= MAX_RUBRICS:
        problems.append(f"write between {MIN_RUBRICS} and {MAX_RUBRICS} rubrics, not {len(items)}")
    rubrics: dict[str, Rubric] = {}
    seen: set[str] = set()
    for number, item in enumerate(items, start=1):
        rubric, errors = _rubric(number, item)
        problems += errors
        if rubric is None:
            continue
        key = " ".join(rubric.criterion.lower().split())
        if key in seen:
            problems.append(f"rubric {number} repeats an earlier criterion")
        seen.add(key)
        rubrics[f"R{number}"] = rubric
    roles = {rubric.role for rubric in rubrics.values()}
    for role in ("explicit", "implicit"):
        if rubrics and role not in roles:
            problems.append(f"no rubric has the role {role!r}; a task needs both explicit and implicit ones")
    if problems:
        return None, problems
    assert isinstance(summary, str)
    return _Draft(summary=summary.strip(), rubrics=rubrics), []


def _rubric(number: int, item: Any) -> tuple[Rubric | None, list[str]]:
    where = f"rubric {number}"
    if not isinstance(item, dict):
        return None, [f"{where} is not an object"]
    problems: list[str] = []
    criterion = item.get("criterion")
    if not isinstance(criterion, str) or not criterion.strip():
        problems.append(f"{where}: `criterion` must be a non-empty string")
    dimension = item.get("dimension", item.get("axis"))
    if not isinstance(dimension, str) or not dimension.strip():
        problems.append(f"{where}: `dimension` must be a non-empty string")
    weight = _number(item.get("weight"))
    if weight is None or not 1 <= abs(weight) <= MAX_WEIGHT:
        problems.append(
            f"{where}: `weight` must be a number from 1 to {MAX_WEIGHT:g} or from -1 to -{MAX_WEIGHT:g}, "
            f"not {item.get('weight')!r}"
        )
    role = _role(item.get("role"))
    if role is None:
        problems.append(f"{where}: `role` must be explicit, implicit or negative, not {item.get('role')!r}")
    elif weight is not None and (role == "negative") != (weight < 0):
        problems.append(
            f"{where}: role {role!r} with weight {weight:g}; negative rubrics describe a flaw and carry "
            "a negative weight, and only they do"
        )
    fatal = item.get("fatal", False)
    if not isinstance(fatal, bool):
        problems.append(f"{where}: `fatal` must be true or false")
    if problems:
        return None, problems
    assert isinstance(criterion, str) and isinstance(dimension, str) and weight is not None
    try:
        rubric = Rubric(
            criterion=criterion.strip(), axis=dimension.strip(), weight=weight, role=role, fatal=fatal
        )
    except ValidationError as exc:  # the checks above should make this unreachable
        return None, [f"{where}: {_compact(exc)}"]
    return rubric, []


def _query_parser(ids: list[str]) -> Callable[[dict[str, Any]], tuple[_Query | None, list[str]]]:
    def parse(data: dict[str, Any]) -> tuple[_Query | None, list[str]]:
        problems: list[str] = []
        query = data.get("query")
        if not isinstance(query, str) or not query.strip():
            problems.append("`query` must be a non-empty string")
        labels = data.get("roles")
        if isinstance(labels, dict):  # {"R1": "explicit"} or {"R1": {"role": …}}
            labels = [{"id": key, **(v if isinstance(v, dict) else {"role": v})} for key, v in labels.items()]
        if not isinstance(labels, list):
            return None, [*problems, "`roles` must be a list with one entry per rubric"]
        roles: dict[str, Role] = {}
        for label in labels:
            if not isinstance(label, dict):
                problems.append("every entry of `roles` must be an object with `id` and `role`")
                continue
            rubric_id, role = _rubric_id(label.get("id")), _role(label.get("role"))
            if rubric_id not in ids:
                problems.append(f"`roles` names an unknown rubric {label.get('id')!r}")
            elif rubric_id in roles:
                problems.append(f"`roles` labels {rubric_id} twice")
            elif role is None:
                problems.append(
                    f"{rubric_id}: role must be explicit, implicit or negative, not {label.get('role')!r}"
                )
            else:
                roles[rubric_id] = role
        missing = [rubric_id for rubric_id in ids if rubric_id not in roles]
        if missing:
            problems.append(f"no valid role for {', '.join(missing)}")
        if problems:
            return None, problems
        assert isinstance(query, str)
        return _Query(query=query.strip(), roles=roles), []

    return parse


def _parse_verdict(data: dict[str, Any]) -> tuple[_Verdict | None, list[str]]:
    problems: list[str] = []
    score = _number(data.get("score"))
    if score is None or not 0 <= score <= 1:
        problems.append(f"`score` must be a number from 0 to 1, not {data.get('score')!r}")
    reason = data.get("reason", "")
    if not isinstance(reason, str):
        problems.append("`reason` must be a string")
    keep = data.get("keep")
    if keep is not None and not isinstance(keep, bool):
        problems.append("`keep` must be true or false")
    if problems:
        return None, problems
    assert score is not None and isinstance(reason, str)
    return _Verdict(score=score, reason=reason.strip(), keep=keep), []


def _json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in a reply: bare, fenced, or after some prose; repaired when broken."""
    stripped = text.strip()
    candidates = [stripped, *(block.strip() for block in _FENCE.findall(text))]
    start = stripped.find("{")
    if start > 0:
        candidates.append(stripped[start:])
    for candidate in candidates:
        if not candidate.startswith("{"):
            continue
        try:
            value = json.JSONDecoder().raw_decode(candidate)[0]
        except ValueError:
            try:
                value = json_repair.loads(candidate)
            except (ValueError, RecursionError):  # nesting too deep for the repairer
                continue
        if isinstance(value, dict) and value:
            return value
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _role(value: Any) -> Role | None:
    return _ROLES.get(value.strip().lower()) if isinstance(value, str) else None


def _rubric_id(value: Any) -> str:
    """``R3`` from ``"R3"``, ``"r3"``, ``"3"`` or ``3``."""
    text = str(value).strip().upper()
    return f"R{text}" if text.isdigit() else text


def _listed(rubrics: dict[str, Rubric]) -> list[dict[str, Any]]:
    """The rubrics as the step-2 and judge prompts show them."""
    return [
        {
            "id": rubric_id,
            "criterion": rubric.criterion,
            "dimension": rubric.axis,
            "weight": f"{rubric.weight:+g}",
            "role": rubric.role,
            "fatal": rubric.fatal,
        }
        for rubric_id, rubric in rubrics.items()
    ]


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _compact(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())


# --- seeds and files


def sample_seeds_path() -> Path:
    """The five example seeds shipped with the package (``judge/data/synth_seeds.jsonl``)."""
    return Path(str(resources.files("deepresearch.judge").joinpath("data", "synth_seeds.jsonl")))


def load_seeds(path: Path) -> list[SynthSeed]:
    """Read a seeds file (JSONL, one ``SynthSeed`` per line); a bad line or a repeated id raises."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read seeds file {path}: {exc}") from exc
    seeds: list[SynthSeed] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            seed = SynthSeed.model_validate_json(line)
        except ValidationError as exc:
            raise ConfigError(f"{path}:{number}: not a valid seed: {_compact(exc)}") from exc
        if seed.id in seen:
            raise ConfigError(f"{path}:{number}: seed id {seed.id!r} appears twice")
        seen.add(seed.id)
        seeds.append(seed)
    return seeds


def discarded_path(out_path: Path) -> Path:
    """Where ``synthesize_file`` writes the discarded seeds of ``out_path``."""
    return out_path.with_suffix(".discarded.jsonl")


async def synthesize_file(
    seeds_path: Path,
    out_path: Path,
    client: ChatClient,
    *,
    judge_client: ChatClient | None = None,
    concurrency: int = 4,
    threshold: float = DEFAULT_THRESHOLD,
) -> SynthReport:
    """Synthesize a task for every seed not yet decided; append kept and discarded ones as they end."""
    if concurrency < 1:
        raise ConfigError(f"concurrency must be at least 1, not {concurrency}")
    seeds = load_seeds(seeds_path)
    rejects = discarded_path(out_path)
    done = _decided_seeds(out_path) | _decided_seeds(rejects)
    todo = [seed for seed in seeds if seed.id not in done]
    report = SynthReport(skipped=len(seeds) - len(todo))
    logger.info("synth: %d seeds, %d already done, %d to go", len(seeds), report.skipped, len(todo))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    slots = asyncio.Semaphore(concurrency)

    async def one(seed: SynthSeed) -> None:
        async with slots:
            outcome = await synthesize(seed, client, judge_client=judge_client, threshold=threshold)
        report.cost_usd += outcome.cost_usd
        if outcome.task is not None:
            report.kept += 1
            _append(out_path, outcome.task.model_dump_json())
        elif outcome.reason == "llm_error":
            report.failed += 1
        else:
            report.discarded[outcome.reason] = report.discarded.get(outcome.reason, 0) + 1
            _append(rejects, outcome.model_dump_json(exclude={"task"}))
        logger.info("synth %s: %s %s", seed.id, outcome.reason, _clip(outcome.detail, 200))

    async with asyncio.TaskGroup() as group:
        for seed in todo:
            group.create_task(one(seed))
    return report


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.write(line + "\n")


def _decided_seeds(path: Path) -> set[str]:
    """Seed ids found in an output or discarded file; a torn last line (a crash mid-write) is cut off."""
    if not path.exists():
        return set()
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    tail = lines[-1]
    if tail.strip():  # no final newline: a hand-edited file, or a write cut short by a crash
        try:
            json.loads(tail)
        except ValueError:
            logger.warning("%s: dropping an unfinished last line; its seed will be redone", path)
            with path.open("r+b") as file:
                file.truncate(len(text.encode()) - len(tail.encode()))
            lines.pop()
        else:
            _append(path, "")  # so the next record starts on a line of its own
    ids: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{path}:{number}: not JSON ({exc}); fix or remove the line") from exc
        seed_id = _seed_id(record)
        if seed_id:
            ids.add(seed_id)
    return ids


def _seed_id(record: Any) -> str | None:
    if not isinstance(record, dict):
        return None
    if isinstance(record.get("seed_id"), str):
        return str(record["seed_id"])
    meta = record.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("seed_id"), str):
        return str(meta["seed_id"])
    task_id = record.get("task_id")
    if isinstance(task_id, str) and task_id.startswith(TASK_ID_PREFIX):
        return task_id[len(TASK_ID_PREFIX) :]
    return None
