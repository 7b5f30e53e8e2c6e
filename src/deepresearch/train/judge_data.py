"""`train judge-data`: a strong judge's verdicts as chat samples for distilling a small judge.

The teacher's output of ``deepresearch judge grade`` holds what a sample needs, but not all in one
place: the per-rubric records (verdict, reasoning, evidence, trials) name the task and the criterion,
the task file holds the task prompt and the rubric's polarity, axis and weight, and the report comes
from the same ``--reports`` the teacher read. The judge cache cannot be used instead: its entries are
keyed by hashes and keep neither the task prompt nor the report's text.

A sample's user turn is *exactly* what our grader sends the judge for that rubric. Rather than render
the templates again (and drift when the grader changes), each rubric is graded by the real ``Judge``
through a ``ChatClient`` whose transport answers in-process: the request body it sends is the prompt,
and the teacher's reply it gets back is read by the grader's own verdict parser. A reply that does not
read back as the teacher's verdict is skipped, so every assistant turn is one the grader would accept.
Samples are single-rubric prompts, what ``judge grade`` sends with ``--batch 1`` (its default); reports
too long for one call (the grader would read them in chunks) are skipped and counted.

The split is by task, so the evaluation file's tasks are unseen in training. Output (``out`` folder):
``train.jsonl`` and ``eval.jsonl`` in the ``{"messages", "tools", "meta"}`` format `train sft` reads,
and ``summary.json``. ``teacher_agreement`` compares a student's records with the teacher's.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError

from deepresearch.errors import ConfigError
from deepresearch.judge.agreement import Agreement, agreement, labels_from_records
from deepresearch.judge.commands import write_json
from deepresearch.judge.grader import DEFAULT_MAX_REPORT_TOKENS, PROMPT_FAMILIES, Judge
from deepresearch.judge.loaders import collect_reports, load_tasks
from deepresearch.judge.records import TERNARY_SCORE, JudgeRecord, Verdict
from deepresearch.judge.rubrics import Rubric, Task
from deepresearch.llm.client import ChatClient, LLMConfig
from deepresearch.llm.tokens import count_tokens

TRAIN_NAME = "train.jsonl"
EVAL_NAME = "eval.jsonl"
SUMMARY_NAME = "summary.json"
DEFAULT_EVAL_FRACTION = 0.1
MAX_REPLY_QUOTES = 3
"""The prompts ask for at most three quotes; the teacher's reply is cut to match."""

_BINARY_LABELS: dict[str, dict[Verdict, str]] = {
    "official-researchrubrics": {"satisfied": "Satisfied", "not_satisfied": "Not Satisfied"},
    "official-researcherbench": {"satisfied": "yes", "not_satisfied": "no"},
}
"""The words each binary prompt family asks for; ``partially`` has none there."""
_FLAW_LABELS: dict[Verdict, str] = {
    "satisfied": "present",
    "partially": "partially_present",
    "not_satisfied": "absent",
}
"""The words the paper's prompt for a negative rubric (``negative.j2``) asks for: is the flaw present?"""
_SAMPLE_URL = "http://judge-data.invalid/v1"
"""Never contacted: the capture transport answers every request in-process."""


@dataclass(slots=True)
class JudgeDataReport:
    """What `build_judge_data` wrote and what it left out, by reason."""

    out: Path
    prompts: str
    train_samples: int = 0
    eval_samples: int = 0
    train_tasks: list[str] = field(default_factory=list)
    eval_tasks: list[str] = field(default_factory=list)
    verdicts: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    teacher_models: list[str] = field(default_factory=list)

    @property
    def written(self) -> int:
        return self.train_samples + self.eval_samples

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "prompts": self.prompts,
            "teacher_models": self.teacher_models,
            "train": {"samples": self.train_samples, "tasks": self.train_tasks, "file": TRAIN_NAME},
            "eval": {"samples": self.eval_samples, "tasks": self.eval_tasks, "file": EVAL_NAME},
            "verdicts": dict(sorted(self.verdicts.items())),
            "skipped": dict(sorted(self.skipped.items())),
        }

    def describe(self) -> str:
        skipped = ", ".join(f"{reason} {count}" for reason, count in sorted(self.skipped.items())) or "none"
        verdicts = ", ".join(f"{label} {count}" for label, count in sorted(self.verdicts.items()))
        return (
            f"{self.train_samples} train samples ({len(self.train_tasks)} tasks), {self.eval_samples} eval "
            f"samples ({len(self.eval_tasks)} tasks) in {self.out}; {self.prompts} prompts; "
            f"verdicts: {verdicts or 'none'}; skipped: {skipped}"
        )


def teacher_reply(record: JudgeRecord, prompts: str = "paper") -> str | None:
    """The teacher's verdict on ``record`` as a reply in the format the ``prompts`` family asks for;
    ``None`` when that family cannot say it (``partially`` in a binary family) or grading failed.

    Reasoning and quotes come from a trial that gave the record's verdict: after a tie the majority
    (``partially``) may be nobody's answer, and then there is no reasoning to teach."""
    if record.failed or record.verdict is None:
        return None
    verdict = record.verdict
    agreeing = [trial for trial in record.trials if trial.verdict == verdict]
    if record.trials and not agreeing:
        return None
    lead = agreeing[0] if agreeing else None
    reasoning = lead.reasoning if lead else record.reasoning
    evidence = (lead.evidence if lead else record.evidence)[:MAX_REPLY_QUOTES]
    if prompts == "paper":
        label = _FLAW_LABELS[verdict] if record.weight < 0 else verdict
        body: dict[str, Any] = {"verdict": label, "score": TERNARY_SCORE[verdict]}
        if lead is not None and lead.confidence is not None:
            body["confidence"] = lead.confidence
        body |= {"reasoning": reasoning, "evidence": evidence}
    else:
        binary = _BINARY_LABELS[prompts].get(verdict)
        if binary is None:
            return None
        body = {"verdict": binary, "reasoning": reasoning}
        if prompts == "official-researchrubrics":
            body["evidence"] = evidence
    return json.dumps(body, ensure_ascii=False)


class _Capture:
    """An httpx handler standing in for the judge's endpoint: it keeps each request's messages and
    answers with ``reply``."""

    def __init__(self) -> None:
        self.reply = ""
        self.requests: list[list[dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body["messages"])
        message = {"role": "assistant", "content": self.reply}
        return httpx.Response(
            200,
            json={
                "id": f"capture-{len(self.requests)}",
                "object": "chat.completion",
                "model": body.get("model", ""),
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            },
        )


async def grader_sample(
    judge: Judge, capture: _Capture, task: Task, rubric: Rubric, report: str, reply: str
) -> list[dict[str, Any]] | str:
    """The messages the grader sends for ``rubric`` followed by ``reply``, or why there is no sample.

    ``judge`` must use ``capture``'s transport and no cache; the rubric is graded alone, which is what
    the grader sends for it in single mode."""
    capture.reply = reply
    capture.requests.clear()
    (record,) = await judge.grade_task(task.model_copy(update={"rubrics": [rubric]}), report)
    if len(capture.requests) != 1:
        return "not one request"
    if record.failed or record.verdict is None:
        return "reply unreadable by the grader"
    return [*capture.requests[0], {"role": "assistant", "content": reply}]


def load_records(path: Path) -> list[JudgeRecord]:
    """The records ``judge grade`` wrote to ``path``; a line that is not one raises `ConfigError`."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the judge records ({exc.strerror or exc})") from exc
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(JudgeRecord.model_validate_json(line))
        except ValidationError as exc:
            raise ConfigError(f"{path}:{number}: not a judge record ({exc.errors()[0]['msg']})") from exc
    return records


def prompt_family_of(records_path: Path) -> str:
    """The prompt family the teacher graded with, from the ``summary.json`` that ``judge grade`` wrote
    next to its records; ``paper`` (the grader's default) when there is none."""
    summary = Path(records_path).with_name("summary.json")
    try:
        protocol = json.loads(summary.read_text(encoding="utf-8")).get("protocol") or {}
    except (OSError, ValueError, AttributeError):
        return "paper"
    family = protocol.get("prompts") if isinstance(protocol, dict) else None
    return family if isinstance(family, str) and family in PROMPT_FAMILIES else "paper"


def split_tasks(task_ids: Iterable[str], eval_fraction: float, seed: int = 0) -> set[str]:
    """The task ids held out for evaluation: a seeded draw of ``eval_fraction`` of them (at least one
    when the fraction is above 0 and there are two tasks or more; never all of them)."""
    ordered = sorted(set(task_ids))
    if eval_fraction <= 0 or len(ordered) < 2:
        return set()
    count = min(len(ordered) - 1, max(1, round(len(ordered) * eval_fraction)))
    random.Random(seed).shuffle(ordered)
    return set(ordered[:count])


async def _samples(
    tasks: Mapping[str, Task],
    reports: Mapping[str, str],
    records: list[JudgeRecord],
    *,
    prompts: str,
    max_report_tokens: int,
    skipped: Counter[str],
) -> list[dict[str, Any]]:
    """One sample per usable record, in record order; the others counted in ``skipped`` by reason."""
    capture = _Capture()
    config = LLMConfig(base_url=_SAMPLE_URL, model="teacher", stream=False, max_retries=0)
    client = ChatClient(config, transport=httpx.MockTransport(capture))
    judge = Judge(client, prompts=prompts, max_invalid_retries=0, max_report_tokens=max_report_tokens)
    long_reports = {task_id for task_id, text in reports.items() if count_tokens(text) > max_report_tokens}
    samples: list[dict[str, Any]] = []
    try:
        for record in records:
            reason, sample = await _one(judge, capture, record, tasks, reports, long_reports, prompts)
            if sample is None:
                skipped[reason] += 1
            else:
                samples.append(sample)
    finally:
        await client.aclose()
    return samples


async def _one(
    judge: Judge,
    capture: _Capture,
    record: JudgeRecord,
    tasks: Mapping[str, Task],
    reports: Mapping[str, str],
    long_reports: set[str],
    prompts: str,
) -> tuple[str, dict[str, Any] | None]:
    if record.failed or record.verdict is None:
        return "failed grading", None
    task = tasks.get(record.task_id)
    if task is None:
        return "task not in the task file", None
    rubric = next((r for r in task.rubrics if r.criterion == record.criterion), None)
    if rubric is None:
        return "criterion not in the task", None
    if record.task_id not in reports:
        return "no report", None
    if record.task_id in long_reports:
        return "report too long for one call", None
    reply = teacher_reply(record, prompts)
    if reply is None:
        binary = _BINARY_LABELS.get(prompts)
        if binary is not None and record.verdict not in binary:
            return "partially in binary prompts", None
        return "tie with no agreeing trial", None
    messages = await grader_sample(judge, capture, task, rubric, reports[record.task_id], reply)
    if isinstance(messages, str):
        return messages, None
    meta = {
        "task_id": record.task_id,
        "criterion": record.criterion,
        "verdict": record.verdict,
        "negative": rubric.negative,
        "weight": rubric.weight,
        "axis": rubric.axis,
        "prompts": prompts,
        "teacher": record.judge_model,
    }
    return "", {"messages": messages, "tools": [], "meta": meta}


def build_judge_data(
    *,
    tasks_path: Path,
    reports: Path,
    records_path: Path,
    out: Path,
    prompts: str | None = None,
    eval_fraction: float = DEFAULT_EVAL_FRACTION,
    seed: int = 0,
    max_report_tokens: int = DEFAULT_MAX_REPORT_TOKENS,
) -> JudgeDataReport:
    """Write ``train.jsonl``, ``eval.jsonl`` and ``summary.json`` into ``out`` from the teacher's
    records at ``records_path`` (``judge grade --out``), its task file and its reports.

    ``prompts`` defaults to the family the teacher used (its ``summary.json``), else ``paper``."""
    family = prompts or prompt_family_of(records_path)
    if family not in PROMPT_FAMILIES:
        raise ConfigError(f"unknown prompt family {family!r}; use one of {', '.join(PROMPT_FAMILIES)}")
    if not 0.0 <= eval_fraction < 1.0:
        raise ConfigError(f"the eval fraction must be in [0, 1), not {eval_fraction}")
    loaded = load_tasks(tasks_path)
    if not loaded.tasks:
        raise ConfigError(f"{tasks_path}: no task could be loaded ({'; '.join(loaded.errors[:3])})")
    records = load_records(records_path)
    found = collect_reports(reports, tasks=loaded.tasks)
    report = JudgeDataReport(out=out, prompts=family)
    report.teacher_models = sorted({r.judge_model for r in records if r.judge_model})
    samples = asyncio.run(
        _samples(
            {task.task_id: task for task in loaded.tasks},
            found.reports,
            records,
            prompts=family,
            max_report_tokens=max_report_tokens,
            skipped=report.skipped,
        )
    )
    held_out = split_tasks((s["meta"]["task_id"] for s in samples), eval_fraction, seed)
    out.mkdir(parents=True, exist_ok=True)
    with (
        (out / TRAIN_NAME).open("w", encoding="utf-8") as train,
        (out / EVAL_NAME).open("w", encoding="utf-8") as evaluation,
    ):
        for sample in samples:
            task_id = sample["meta"]["task_id"]
            split = "eval" if task_id in held_out else "train"
            sample["meta"]["split"] = split
            (evaluation if split == "eval" else train).write(json.dumps(sample, ensure_ascii=False) + "\n")
            report.verdicts[sample["meta"]["verdict"]] += 1
    report.train_samples = sum(1 for s in samples if s["meta"]["split"] == "train")
    report.eval_samples = len(samples) - report.train_samples
    report.eval_tasks = sorted(held_out)
    report.train_tasks = sorted({s["meta"]["task_id"] for s in samples} - held_out)
    write_json(out / SUMMARY_NAME, report.to_dict())
    return report


def teacher_agreement(teacher: Path, student: Path, *, binary: bool = False) -> Agreement:
    """How far a student judge's records agree with the teacher's on the same (task, criterion)s:
    accuracy, macro-F1 and kappa from `judge.agreement`, the teacher standing where human labels do.

    Rubrics the teacher failed to grade are no labels; ones the student failed count in
    ``missing_judge``. No rubric in common raises `ConfigError`."""
    try:
        labels = {key: label for key, label in labels_from_records(load_records(teacher)).items() if label}
        graded = labels_from_records(load_records(student))
    except ValueError as exc:  # the same rubric graded twice in one file
        raise ConfigError(str(exc)) from exc
    try:
        return agreement(labels, graded, binary=binary)
    except ValueError as exc:
        raise ConfigError(f"{student}: no rubric graded by both judges ({exc})") from exc
