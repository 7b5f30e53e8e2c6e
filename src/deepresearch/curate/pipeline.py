"""``deepresearch curate``: agent runs in, training data out, every decision recorded.

``curate(runs, out=DIR)`` reads each run directory through ``runs.RunDir`` (never its files
directly), applies the filters of ``curate.filters`` in order, and writes to ``DIR``:

- ``decisions.jsonl``: one line per run: its directory, whether it is kept, the reasons it was not, and
  every filter's verdict;
- ``sft.jsonl``: one OpenAI chat sample with tools per kept run (``curate.export``);
- ``midtrain.jsonl``: stage I text (each kept run's question and report, and the ``--documents``),
  then stage II conversations;
- ``card.md``: counts per filter and per reason, token statistics and languages (``curate.card``).

Curation is deterministic and cheap, so a rerun rewrites all four files whole; the same runs give
byte-identical output. No model is called: correctness is an exact-match check against expected
answers from the run's ``task.json`` or the ``--answers`` file.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepresearch.curate.card import TokenStats, render_card, sample_tokens
from deepresearch.curate.export import (
    chat_messages,
    document_records,
    midtrain_records,
    sft_record,
    tool_schemas,
    validate_chat,
    write_jsonl,
)
from deepresearch.curate.filters import (
    Decision,
    Expectation,
    RunView,
    Verdict,
    check_citations,
    check_correct,
    check_finished,
    check_language,
    check_loops,
    check_plan,
    check_temporal,
    error_quota_size,
    question_key,
    quota_order,
    shortest,
)
from deepresearch.errors import ConfigError, RunStoreError
from deepresearch.events import LLMCall, RunStarted, ToolResultEvent
from deepresearch.report import cited_keys, strip_references
from deepresearch.runs import EVENTS, RUN_INFO, RunDir
from deepresearch.tools.base import Tool
from deepresearch.tools.registry import default_tools

logger = logging.getLogger(__name__)

SFT, MIDTRAIN, CARD, DECISIONS = "sft.jsonl", "midtrain.jsonl", "card.md", "decisions.jsonl"
DEFAULT_ERROR_QUOTA = 0.1
"""Runs that recovered from a tool error may make up this share of the kept set."""
DEFAULT_MIN_ALIGNMENT = 0.6
"""Runs of a task with a plan are dropped below this alignment score (``synth.alignment``)."""
_PROBE = "\x00query\x00"
Scorer = Callable[[RunDir, Sequence[str]], float]


@dataclass
class CurateReport:
    """What a curation did: the CLI prints ``describe()`` and exits non-zero on ``nothing_kept``."""

    out: Path
    runs: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    """Drop reason → runs (a run dropped for two reasons counts under both)."""
    samples: dict[str, int] = field(default_factory=dict)
    """Output file → records written."""
    problems: list[str] = field(default_factory=list)
    """Inputs that could not be read (a path that holds no run, a document that would not load)."""

    @property
    def nothing_kept(self) -> bool:
        return self.kept == 0

    def describe(self) -> str:
        """Lines for a person: what was kept where, what was dropped why, what could not be read."""
        lines = [f"kept {self.kept} of {self.runs} runs → {self.out}"]
        if self.dropped:
            lines.append("dropped: " + ", ".join(f"{r} {n}" for r, n in sorted(self.dropped.items())))
        lines.append(", ".join(f"{name}: {count} records" for name, count in self.samples.items()))
        lines += [f"problem: {p}" for p in self.problems]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "runs": self.runs,
            "kept": self.kept,
            "dropped": dict(self.dropped),
            "samples": self.samples,
            "problems": self.problems,
        }


def curate(
    runs: list[Path],
    *,
    out: Path,
    answers: Path | None = None,
    documents: Path | None = None,
    error_quota: float = DEFAULT_ERROR_QUOTA,
    min_alignment: float = DEFAULT_MIN_ALIGNMENT,
) -> CurateReport:
    """Filter the agent runs under ``runs`` into training data in ``out`` (see the module docstring)."""
    if not 0 <= error_quota <= 1:
        raise ConfigError(f"the error-recovery quota is a share between 0 and 1, not {error_quota}")
    report = CurateReport(out=out)
    paths = find_runs(runs, report.problems)
    if not paths:
        raise ConfigError("no run directories found under " + ", ".join(str(p) for p in runs))
    expectations = load_answers(answers) if answers is not None else Answers()
    registry = default_tools()
    scorer = alignment_scorer()
    decisions: list[Decision] = []
    records: dict[Path, dict[str, Any]] = {}
    views: dict[Path, RunView] = {}  # by directory: two copies of one run share an id, not a path
    for path in paths:
        decision, view, record = judge_run(RunDir(path), registry, expectations, scorer, min_alignment)
        decisions.append(decision)
        if view is not None and record is not None:
            views[decision.path], records[decision.path] = view, record
    keep_shortest(decisions, views)
    apply_error_quota(decisions, views, error_quota)
    write_outputs(report, decisions, views, records, documents)
    return report


# --- finding runs and expected answers


def find_runs(paths: Sequence[Path], problems: list[str]) -> list[Path]:
    """The run directories named by ``paths``: each a run directory or a folder with run directories
    somewhere below it. Each once, in sorted order."""
    found: dict[Path, None] = {}
    for path in paths:
        if not path.exists():
            problems.append(f"{path}: no such file or directory")
        elif _is_run(path):
            found[path.resolve()] = None
        elif path.is_dir():
            below = list(_runs_below(path))
            if not below:
                problems.append(f"{path}: holds no run directory")
            found.update((p.resolve(), None) for p in below)
        else:
            problems.append(f"{path}: not a run directory or a folder of them")
    return sorted(found)


def _is_run(path: Path) -> bool:
    return (path / RUN_INFO).is_file() or (path / EVENTS).is_file()


def _runs_below(folder: Path) -> Iterator[Path]:
    for child in sorted(folder.iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            if _is_run(child):
                yield child
            else:
                yield from _runs_below(child)


@dataclass
class Answers:
    """The ``--answers`` file: expectations by task id and by question."""

    by_task: dict[str, Expectation] = field(default_factory=dict)
    by_question: dict[str, Expectation] = field(default_factory=dict)


def load_answers(path: Path) -> Answers:
    """``{question | task_id, answer, plan?}`` per line; ``answer`` may be a list of accepted answers."""
    answers = Answers()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read the answers file {path}: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        if not isinstance(row, dict) or not (row.get("question") or row.get("task_id")):
            raise ConfigError(f"{path}:{number}: needs a question or a task_id")
        expectation = expectation_of(row, "answers")
        if row.get("task_id"):
            answers.by_task[str(row["task_id"])] = expectation
        if row.get("question"):
            answers.by_question[question_key(str(row["question"]))] = expectation
    return answers


def expectation_of(row: Mapping[str, Any], origin: str) -> Expectation:
    """The accepted answers and the plan in a task or an answers row."""
    answers = _strings(row.get("answers", row.get("answer")))
    return Expectation(answers=tuple(answers), plan=tuple(_strings(row.get("plan"))), origin=origin)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, list):
        return [str(v) for v in value if isinstance(v, str | int | float) and str(v).strip()]
    return []


def expectation_for(run: RunDir, question: str, answers: Answers) -> Expectation | None:
    """The run's own task first (``task.json``), then the answers file by task id, then by question."""
    task = run.task()
    own = expectation_of(task, "task") if isinstance(task, dict) else None
    task_id = str(task.get("task_id", "")) if isinstance(task, dict) else str(task or "")
    other = answers.by_task.get(task_id) if task_id else None
    other = other or answers.by_question.get(question_key(question))
    if own is None or (not own.answers and not own.plan):
        return other
    if other is not None:
        own = Expectation(own.answers or other.answers, own.plan or other.plan, own.origin)
    return own


def alignment_scorer() -> Scorer | None:
    """``synth.alignment.plan_alignment``'s score, or ``None`` where that module is not installed."""
    try:
        from deepresearch.synth.alignment import plan_alignment
    except ImportError:
        return None

    def score(run: RunDir, plan: Sequence[str]) -> float:
        return float(plan_alignment(run, plan).score)

    return score


# --- one run


def judge_run(
    run: RunDir,
    registry: Mapping[str, Tool],
    answers: Answers,
    scorer: Scorer | None,
    min_alignment: float,
) -> tuple[Decision, RunView | None, dict[str, Any] | None]:
    """Every per-run filter's verdict on ``run``; its view and SFT record when it finished."""
    try:
        view, tools = read_view(run, registry)
    except RunStoreError as exc:  # an unreadable run is dropped and said so, the others go on
        decision = Decision(run.path, run.path.name)
        decision.add(Verdict("finished", "fail", "unreadable", {"error": str(exc)}))
        return decision, None, None
    decision = Decision(run.path, view.run_id, view.language)
    decision.add(check_finished(view))
    if not view.finished:
        return decision, None, None
    view.expected = expectation_for(run, view.question, answers)
    record, format_verdict = build_record(run, view, tools, registry)
    decision.add(format_verdict)
    for verdict in (check_loops(view), check_temporal(view), check_language(view), check_citations(view)):
        decision.add(verdict)
    plan = view.expected.plan if view.expected is not None else ()
    score = scorer(run, plan) if plan and scorer is not None else None
    decision.add(check_plan(plan, score, min_alignment=min_alignment))
    decision.add(check_correct(view))
    return decision, view, record


def read_view(run: RunDir, registry: Mapping[str, Tool]) -> tuple[RunView, list[str]]:
    """What the filters need from ``run``, and the names of the tools it offered."""
    meta = run.meta
    events = run.events()
    started = next((e for e in events if isinstance(e, RunStarted)), None)
    view = RunView(
        path=run.path,
        run_id=meta.id,
        question=meta.question,
        language=started.language if started is not None else "en",
        status=meta.status,
        outcome=meta.outcome,
        started_year=_year(meta.started or (started.ts if started is not None else "")),
        steps=meta.steps,
        citations=dict(meta.citations),
    )
    view.report = run.report()
    view.final_answer = strip_references(view.report or "")
    last_answer = ""
    for event in events:
        if isinstance(event, LLMCall):
            message = event.message
            if event.phase is None:
                view.assistant_texts.append(str(message.get("content") or ""))
                if message.get("reasoning_content"):
                    view.reasoning_texts.append(str(message["reasoning_content"]))
                for call in message.get("tool_calls") or ():
                    name, arguments = call["function"]["name"], call["function"].get("arguments") or ""
                    view.tool_calls.append((name, arguments))
                    view.search_queries += search_queries(registry.get(name), arguments)
            if not message.get("tool_calls"):
                last_answer = str(message.get("content") or "")
        elif isinstance(event, ToolResultEvent) and event.is_error:
            view.tool_errors += 1
    view.cited_keys = cited_keys(last_answer)
    view.source_keys = frozenset(str(s.get("key")) for s in run.sources())
    return view, list(started.tools) if started is not None else []


def _year(timestamp: str) -> int | None:
    return int(timestamp[:4]) if timestamp[:4].isdigit() else None


def search_queries(tool: Tool | None, arguments: str) -> list[str]:
    """The queries of a call of ``tool`` when it is a search: recognised by the shape of the tool's
    own ``search_arguments`` (the fields it fixes must match; the field that holds the query is read),
    so no tool is known here by name."""
    if tool is None or tool.search_arguments is None:
        return []
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError:
        return []
    if not isinstance(parsed, dict):
        return []
    query_field = None
    for key, value in tool.search_arguments(_PROBE).items():
        if value == _PROBE or (isinstance(value, list) and _PROBE in value):
            query_field = key
        elif parsed.get(key) != value:
            return []
    found = parsed.get(query_field) if query_field is not None else None
    return _strings(found)


def build_record(
    run: RunDir, view: RunView, tools: Sequence[str], registry: Mapping[str, Tool]
) -> tuple[dict[str, Any], Verdict]:
    """The run's SFT sample and the ``format`` verdict on it (known tools, valid chat messages)."""
    schemas, unknown = tool_schemas(tools, registry)
    meta = {
        "run_id": view.run_id,
        "question": view.question,
        "language": view.language,
        "steps": view.steps,
        "tool_calls": len(view.tool_calls),
        "tool_errors": view.tool_errors,
        "outcome": view.outcome,
        "run": str(run.path),
    }
    if view.expected is not None and view.expected.origin:
        meta["expected_from"] = view.expected.origin
    record = sft_record(chat_messages(run.messages()), schemas, meta)
    if unknown:
        return record, Verdict("format", "fail", "unknown_tool", {"tools": unknown})
    problems = validate_chat(record)
    if problems:
        return record, Verdict("format", "fail", "invalid_messages", {"problems": problems[:3]})
    return record, Verdict("format", "pass", "valid_chat")


# --- choices across runs


def keep_shortest(decisions: Sequence[Decision], views: Mapping[Path, RunView]) -> None:
    """Per question, of the correct runs that passed every other filter, only the shortest stays."""
    groups: dict[str, list[RunView]] = defaultdict(list)
    for decision in decisions:
        verdict = decision.verdicts.get("correct_and_shortest")
        if verdict is not None and verdict.status == "pass" and decision.kept:
            view = views[decision.path]
            groups[question_key(view.question)].append(view)
    by_path = {d.path: d for d in decisions}
    for group in groups.values():
        best = shortest(group)
        for view in group:
            old = by_path[view.path].verdicts["correct_and_shortest"]
            detail = {**old.detail, "steps": view.steps, "tool_calls": len(view.tool_calls)}
            if view is best:
                by_path[view.path].add(Verdict(old.filter, "pass", "correct_and_shortest", detail))
            else:
                detail["kept_instead"] = best.run_id
                by_path[view.path].add(Verdict(old.filter, "fail", "not_shortest", detail))


def apply_error_quota(decisions: Sequence[Decision], views: Mapping[Path, RunView], quota: float) -> None:
    """Runs that met a tool error and recovered stay up to ``quota`` of the kept set; the choice
    among them is a hash of the run id (stable whatever the input order)."""
    survivors = [d for d in decisions if d.kept and d.path in views]
    recovered = [d for d in survivors if views[d.path].tool_errors]
    allowed = error_quota_size(len(survivors) - len(recovered), quota)
    ranked = sorted(recovered, key=lambda d: (quota_order(d.run_id), str(d.path)))
    chosen = {d.path for d in ranked[:allowed]}
    for decision in decisions:
        view = views.get(decision.path)
        if view is None:
            continue
        if not decision.kept:
            decision.add(Verdict("error_recovery", "skip", "not_evaluated"))
        elif not view.tool_errors:
            decision.add(Verdict("error_recovery", "skip", "no_tool_error"))
        elif decision.path in chosen:
            decision.add(Verdict("error_recovery", "pass", "within_quota", {"tool_errors": view.tool_errors}))
        else:
            detail = {"tool_errors": view.tool_errors, "allowed": allowed}
            decision.add(Verdict("error_recovery", "fail", "error_recovery_over_quota", detail))


# --- output


def write_outputs(
    report: CurateReport,
    decisions: Sequence[Decision],
    views: Mapping[Path, RunView],
    records: Mapping[Path, dict[str, Any]],
    documents: Path | None,
) -> None:
    out = report.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {out}: {exc}") from exc
    kept = [d for d in decisions if d.kept]
    sft = [records[d.path] for d in kept]
    midtrain: list[dict[str, Any]] = []
    for decision in kept:
        view = views[decision.path]
        midtrain += midtrain_records(records[decision.path], view.question, view.report or "")
    document_count = 0
    if documents is not None:
        for document in document_records(documents, report.problems):
            midtrain.append(document)
            document_count += 1
    midtrain.sort(key=lambda r: r["stage"])  # stage I text first, then the conversations (stable)
    report.samples[SFT] = write_jsonl(out / SFT, sft)
    report.samples[MIDTRAIN] = write_jsonl(out / MIDTRAIN, midtrain)
    report.samples[DECISIONS] = write_jsonl(out / DECISIONS, (d.to_dict() for d in decisions))
    tokens = {
        "sft": TokenStats([sample_tokens(r) for r in sft]),
        "midtrain stage I": TokenStats([sample_tokens(r) for r in midtrain if r["stage"] == 1]),
        "midtrain stage II": TokenStats([sample_tokens(r) for r in midtrain if r["stage"] == 2]),
    }
    languages = Counter(d.language or "unknown" for d in kept)
    card = render_card(decisions, tokens, languages, documents=document_count)
    (out / CARD).write_text(card, encoding="utf-8")
    report.runs, report.kept = len(decisions), len(kept)
    report.dropped = Counter(reason for d in decisions for reason in d.reasons)
    logger.info("curated %d runs: kept %d", report.runs, report.kept)
