"""Read benchmark tasks and the reports to grade, in the shapes the benchmarks ship them.

The judge grades against ``Task``/``Rubric`` (``judge/rubrics.py``); this module is the one place that
knows the foreign file formats, so the grader and the scoring never see them. A task loads whole or
not at all: one malformed line (bad JSON, a missing field, a role that contradicts its weight)
becomes ``"{path}:{line}: {reason}"`` in ``LoadedTasks.errors`` and every other line still loads.
A rubric of weight 0 (real ResearchRubrics data has one) loads in every format and counts in no
score. A repeated task id keeps the first task and reports each later one. Problems with the file
as a whole (missing, unreadable, shape not recognised) raise ``ConfigError``.

Task formats, detected from the first record's keys when ``format="auto"``:

- ``native`` (JSONL, key ``task_id``): exactly ``Task.model_dump()`` per line; rubrics may carry
  ``role`` and ``fatal``.
- ``researchrubrics`` (JSONL, key ``sample_id``): ``{prompt, sample_id, domain, conceptual_breadth,
  logical_nesting, exploration, rubrics: [{criterion, weight, axis}]}``; a rubric may add ``role``
  and ``fatal``. ``sample_id`` becomes ``task_id``; every other top-level key (the complexity tags)
  goes to ``meta``. The role follows the weight's sign, except that a positive rubric on the
  ``Implicit Criteria`` axis is ``implicit`` (what the axis says it is).
- ``drb`` (DeepResearch Bench ``criteria.jsonl``, key ``dimension_weight``): ``{id, prompt,
  dimension_weight: {dim: w}, criterions: {dim: [{criterion, explanation, weight}]}}`` (``criteria``
  accepted too). Each criterion becomes a rubric on axis ``dim`` whose text is ``"criterion —
  explanation"`` and whose weight is ``dimension_weight[dim] × criterion weight × 100``. DRB's weights
  sum to 1 inside a dimension and across dimensions, so a task's weights sum to 100 and each reads as
  the percent of the task it carries — the range of ResearchRubrics' weights (1–5) rather than
  0.003–0.1, and every task weighs the same when axes are pooled across tasks. Instruction following
  criteria are ``explicit``, the other dimensions ``implicit``; none is negative. Note that DRB's
  own RACE score compares against a reference article; graded here, the same criteria give an
  absolute compliance, which is not comparable with RACE numbers.
- ``researcherbench`` (a JSON array, or JSONL): ``rubric.json`` items ``{id, question, rubric:
  [{point, weight}]}`` with weights 1–3 kept as they are (any weight ≥ 0 is accepted; a negative one
  is an error, since ResearcherBench has no penalty items). Points go on the axis
  ``Coverage`` with role ``implicit`` (expert insights the question does not spell out). When a
  ``questions.json`` (``[{id, question, category, Subject}]``) sits next to ``rubric.json`` — or
  the path is the folder holding both, or a folder with them under ``eval_data/`` or
  ``data/eval_data/`` (the repository's layout) — its ``category`` becomes ``domain`` (the paper's
  question-type breakdown) and ``Subject`` goes to ``meta``; a question without rubrics is an error.
  ``rubrics.json`` is accepted as the rubric file's name too.

Reports: ``load_reports`` reads a folder of ``<task_id>.md`` files, a folder of run directories, one
run directory, or a file of ``{id, article}`` (DeepResearch Bench submission) / ``{id, response}``
(ResearcherBench, JSONL or a JSON array). A run directory maps to its task by, in order: ``task.json``
``{"task_id": …}`` (what the benchmark runner writes), a plain ``task_id`` file, or its ``run.json``
question equal to exactly one task prompt once whitespace and case are normalised. Its report is
``report.md``. When several runs answer one task, a ``done`` run wins over others, then the newest
``started``; the choice is reported.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import ValidationError

from deepresearch.errors import ConfigError, RunStoreError
from deepresearch.judge.rubrics import Role, Rubric, Task
from deepresearch.runs import RUN_INFO, TASK, TASK_ID, RunDir

logger = logging.getLogger(__name__)

TaskFormat = Literal["auto", "native", "researchrubrics", "drb", "researcherbench"]

DRB_WEIGHT_SCALE = 100.0
"""DeepResearch Bench weight = dimension weight × criterion weight × this (a task's weights sum to 100)."""
RESEARCHERBENCH_AXIS = "Coverage"
RESEARCHERBENCH_RUBRICS = ("rubric.json", "rubrics.json")
"""ResearcherBench's rubric file: the name its repository ships (``data/eval_data/rubric.json``) first."""
IMPLICIT_AXIS = "Implicit Criteria"


@dataclass
class LoadedTasks:
    tasks: list[Task] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """``"{path}:{line}: {reason}"`` for each line that did not load."""
    format: str = ""
    """The format that was read (the detected one when ``auto``)."""


@dataclass
class LoadedReports:
    reports: dict[str, str] = field(default_factory=dict)
    """task id → report text."""
    origins: dict[str, str] = field(default_factory=dict)
    """task id → the file or run directory the report came from."""
    errors: list[str] = field(default_factory=list)
    """What could not be read or mapped, and which report won when several answered one task."""


class _Bad(ValueError):
    """One record is malformed; the message is the reason shown after ``path:line:``."""


def sample_tasks_path() -> Path:
    """The five hand-written sample tasks (ResearchRubrics schema) shipped with the package."""
    return Path(__file__).resolve().parent / "data" / "sample_tasks.jsonl"


# ---------------------------------------------------------------------------------------------- tasks


def load_tasks(path: str | Path, *, format: TaskFormat = "auto") -> LoadedTasks:
    """Read every task in ``path``; malformed lines become errors and the rest still load."""
    path = Path(path)
    if format not in get_args(TaskFormat):
        raise ConfigError(f"unknown task format {format!r}; use one of {', '.join(get_args(TaskFormat))}")
    if path.is_dir():
        rubrics = _researcherbench_rubrics(path) if format in ("auto", "researcherbench") else None
        if rubrics is not None:
            return _load_researcherbench(rubrics, rubrics.with_name("questions.json"))
        raise ConfigError(
            f"{path} is a folder; only ResearcherBench's folder (rubric.json, also under "
            "data/eval_data/) can be read"
        )
    text = _read(path)
    if text.lstrip().startswith("["):
        return _load_json_array(path, text, format)
    records = list(_jsonl_records(text))
    detected = format if format != "auto" else _detect(records)
    if detected is None:
        raise ConfigError(
            f"{path}: cannot tell the task format from its first record; pass format= "
            "(native, researchrubrics, drb or researcherbench)"
        )
    return _collect(path, records, _PARSERS[detected], detected)


def _load_json_array(path: Path, text: str, format: TaskFormat) -> LoadedTasks:
    if format not in ("auto", "researcherbench"):
        raise ConfigError(f"{path}: a JSON array is only read as ResearcherBench, not {format}")
    items, error = _json_array(text)
    first = next((value for _, value in items if isinstance(value, dict)), {})
    if "rubric" not in first and "question" in first:  # questions.json: the rubrics sit beside it
        rubrics = next(
            (path.with_name(n) for n in RESEARCHERBENCH_RUBRICS if path.with_name(n).is_file()), None
        )
        if rubrics is None:
            raise ConfigError(
                f"{path} holds ResearcherBench questions; "
                f"{path.with_name(RESEARCHERBENCH_RUBRICS[0])} with their rubrics is missing"
            )
        return _load_researcherbench(rubrics, path)
    return _load_researcherbench(path, path.with_name("questions.json"), parsed=(items, error))


def _researcherbench_rubrics(folder: Path) -> Path | None:
    """The rubric file of a ResearcherBench folder: the folder itself, its ``eval_data/`` or its
    ``data/eval_data/`` (the repository's layout), ``rubric.json`` (the real name) or ``rubrics.json``."""
    for where in (folder, folder / "eval_data", folder / "data" / "eval_data"):
        for name in RESEARCHERBENCH_RUBRICS:
            if (where / name).is_file():
                return where / name
    return None


def _load_researcherbench(
    rubrics_path: Path,
    questions_path: Path,
    *,
    parsed: tuple[list[tuple[int, Any]], str | None] | None = None,
) -> LoadedTasks:
    items, error = parsed if parsed is not None else _json_array(_read(rubrics_path))
    questions: dict[str, tuple[int, dict[str, Any]]] = {}
    errors: list[str] = []
    if questions_path.is_file() and questions_path != rubrics_path:
        q_items, q_error = _json_array(_read(questions_path))
        if q_error:
            errors.append(f"{questions_path}:{q_error}")
        for line, item in q_items:
            if isinstance(item, dict) and "id" in item:
                questions[str(item["id"])] = (line, item)
            else:
                errors.append(f"{questions_path}:{line}: expected an object with an id")

    by_id = {qid: item for qid, (_, item) in questions.items()}
    loaded = _collect(rubrics_path, items, lambda obj: _from_researcherbench(obj, by_id), "researcherbench")
    loaded.errors[:0] = errors
    if error:
        loaded.errors.append(f"{rubrics_path}:{error}")
    with_rubrics = {str(value["id"]) for _, value in items if isinstance(value, dict) and "id" in value}
    for qid, (line, _) in questions.items():
        if qid not in with_rubrics:
            loaded.errors.append(
                f"{questions_path}:{line}: question {qid} has no rubrics in {rubrics_path.name}"
            )
    return loaded


def _collect(
    path: Path, records: Iterable[tuple[int, Any]], parse: Callable[[dict[str, Any]], Task], fmt: str
) -> LoadedTasks:
    loaded = LoadedTasks(format=fmt)
    first_line: dict[str, int] = {}
    for line, value in records:
        try:
            if isinstance(value, _Bad):
                raise value
            if not isinstance(value, dict):
                raise _Bad("expected a JSON object")
            task = parse(value)
        except _Bad as exc:
            loaded.errors.append(f"{path}:{line}: {exc}")
            continue
        except ValidationError as exc:
            loaded.errors.append(f"{path}:{line}: {_validation_reason(exc)}")
            continue
        first = first_line.get(task.task_id)
        if first is not None:
            loaded.errors.append(f"{path}:{line}: duplicate task id {task.task_id!r} (first at line {first})")
            continue
        first_line[task.task_id] = line
        loaded.tasks.append(task)
    return loaded


def _detect(records: list[tuple[int, Any]]) -> str | None:
    first = next((value for _, value in records if isinstance(value, dict)), None)
    if first is None:
        return None
    if "task_id" in first:
        return "native"
    if "sample_id" in first:
        return "researchrubrics"
    if "dimension_weight" in first or "criterions" in first:
        return "drb"
    if "rubric" in first:
        return "researcherbench"
    if "rubrics" in first and "prompt" in first:
        return "researchrubrics"
    return None


def _from_native(obj: dict[str, Any]) -> Task:
    return Task.model_validate(obj)


def _from_researchrubrics(obj: dict[str, Any]) -> Task:
    task_id, prompt = _text(obj, "sample_id"), _text(obj, "prompt")
    rubrics = []
    for index, item in enumerate(_list(obj, "rubrics")):
        where = f"rubrics[{index}]"
        if not isinstance(item, dict):
            raise _Bad(f"{where}: expected an object")
        role = item.get("role")
        weight = _number(item.get("weight"))
        if role is None and weight is not None and weight >= 0 and item.get("axis") == IMPLICIT_AXIS:
            role = "implicit"
        known = {k: item[k] for k in ("criterion", "weight", "axis", "fatal") if k in item}
        rubrics.append(_rubric(where, **known, role=role))
    meta = {k: v for k, v in obj.items() if k not in ("sample_id", "prompt", "domain", "rubrics")}
    return Task(
        task_id=task_id,
        prompt=prompt,
        rubrics=rubrics,
        domain=str(obj.get("domain") or ""),
        meta={"format": "researchrubrics", **meta},
    )


def _from_drb(obj: dict[str, Any]) -> Task:
    task_id, prompt = _text(obj, "id"), _text(obj, "prompt")
    dimension_weight = obj.get("dimension_weight")
    if not isinstance(dimension_weight, dict):
        raise _Bad("missing dimension_weight (an object of dimension → weight)")
    criteria = obj.get("criterions", obj.get("criteria"))
    if not isinstance(criteria, dict) or not criteria:
        raise _Bad("missing criterions (an object of dimension → list of criteria)")
    rubrics = []
    for dimension, items in criteria.items():
        dw = _number(dimension_weight.get(dimension))
        if dw is None:
            raise _Bad(f"criterions for {dimension!r} but no numeric dimension_weight for it")
        if not isinstance(items, list):
            raise _Bad(f"criterions.{dimension}: expected a list")
        for index, item in enumerate(items):
            where = f"criterions.{dimension}[{index}]"
            if not isinstance(item, dict):
                raise _Bad(f"{where}: expected an object")
            cw = _number(item.get("weight"))
            if cw is None:
                raise _Bad(f"{where}: missing numeric weight")
            weight = round(dw * cw * DRB_WEIGHT_SCALE, 6)
            if weight < 0:
                raise _Bad(f"{where}: weight {dw} × {cw} is negative")
            criterion = str(item.get("criterion") or "").strip()
            explanation = str(item.get("explanation") or "").strip()
            text = f"{criterion} — {explanation}" if criterion and explanation else criterion
            role: Role = "explicit" if dimension == "instruction_following" else "implicit"
            rubrics.append(_rubric(where, criterion=text, weight=weight, axis=dimension, role=role))
    meta: dict[str, Any] = {
        "format": "drb",
        "dimension_weight": dimension_weight,
        "weight_scale": DRB_WEIGHT_SCALE,
    }
    if "language" in obj:
        meta["language"] = obj["language"]
    return Task(
        task_id=task_id,
        prompt=prompt,
        rubrics=rubrics,
        domain=str(obj.get("domain") or obj.get("topic") or ""),
        meta=meta,
    )


def _from_researcherbench(obj: dict[str, Any], questions: dict[str, dict[str, Any]] | None = None) -> Task:
    if "id" not in obj:
        raise _Bad("missing id")
    task_id = str(obj["id"])
    question = (questions or {}).get(task_id, {})
    rubrics = []
    for index, item in enumerate(_list(obj, "rubric")):
        where = f"rubric[{index}]"
        if not isinstance(item, dict):
            raise _Bad(f"{where}: expected an object")
        weight = _number(item.get("weight"))
        if weight is None or weight < 0:
            raise _Bad(f"{where}: weight must be a number ≥ 0 (ResearcherBench has no penalty items)")
        text = item.get("point", item.get("criterion"))
        rubrics.append(
            _rubric(where, criterion=text, weight=weight, axis=RESEARCHERBENCH_AXIS, role="implicit")
        )
    prompt = question.get("question") or obj.get("question")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _Bad("missing question")
    meta: dict[str, Any] = {"format": "researcherbench"}
    if "Subject" in question:
        meta["subject"] = question["Subject"]
    return Task(
        task_id=task_id,
        prompt=prompt,
        rubrics=rubrics,
        domain=str(question.get("category") or obj.get("category") or ""),
        meta=meta,
    )


_PARSERS: dict[str, Callable[[dict[str, Any]], Task]] = {
    "native": _from_native,
    "researchrubrics": _from_researchrubrics,
    "drb": _from_drb,
    "researcherbench": _from_researcherbench,
}


def _rubric(where: str, **fields: Any) -> Rubric:
    try:
        return Rubric.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise _Bad(f"{where}: {_validation_reason(exc)}") from exc


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None:
        raise _Bad(f"missing {key}")
    if not isinstance(value, str | int) or not str(value).strip():
        raise _Bad(f"{key} must be a non-empty string")
    return str(value)


def _list(obj: dict[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    if not isinstance(value, list) or not value:
        raise _Bad(f"missing {key} (a non-empty list)")
    return value


def _number(value: Any) -> float | None:
    """``value`` as a float when it is a JSON number (booleans are not), else None."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _validation_reason(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


# ----------------------------------------------------------------------------------------------- files


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def _jsonl_records(text: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) per non-blank line; a line that does not parse yields a ``_Bad``."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, _Bad(f"invalid JSON ({exc.msg} at column {exc.colno})")


_DECODER = json.JSONDecoder()


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _json_array(text: str) -> tuple[list[tuple[int, Any]], str | None]:
    """The items of a top-level JSON array with the line each starts on, so errors can name a line.

    A syntax error stops the reading: the items before it are returned with ``"{line}: {reason}"``.
    """
    items: list[tuple[int, Any]] = []
    line, counted = 1, 0

    def line_at(pos: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, pos)
        counted = pos
        return line

    pos = _skip_space(text, 0)
    if text[pos : pos + 1] != "[":
        return items, f"{line_at(pos)}: expected a JSON array"
    pos = _skip_space(text, pos + 1)
    if text[pos : pos + 1] == "]":
        return items, None
    while True:
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            return items, f"{exc.lineno}: invalid JSON ({exc.msg})"
        items.append((line_at(pos), value))
        pos = _skip_space(text, end)
        if text[pos : pos + 1] == ",":
            pos = _skip_space(text, pos + 1)
            continue
        if text[pos : pos + 1] == "]" and not text[pos + 1 :].strip():
            return items, None
        return items, f"{line_at(pos)}: expected ',' or ']' after an array item"


# --------------------------------------------------------------------------------------------- reports


def load_reports(
    source: str | Path, task_ids: Iterable[str] | None = None, *, tasks: Iterable[Task] | None = None
) -> dict[str, str]:
    """task id → report text from ``source`` (see the module docstring); problems are logged.

    ``task_ids`` keeps only those tasks (default: the ids of ``tasks`` when given, else all).
    ``tasks`` also lets a run directory without ``task.json`` be matched by its question.
    """
    loaded = collect_reports(source, task_ids, tasks=tasks)
    for error in loaded.errors:
        logger.warning("%s", error)
    return loaded.reports


def collect_reports(
    source: str | Path, task_ids: Iterable[str] | None = None, *, tasks: Iterable[Task] | None = None
) -> LoadedReports:
    """Like ``load_reports``, but returns the problems and each report's origin too."""
    source = Path(source)
    task_list = list(tasks or [])
    wanted = set(task_ids) if task_ids is not None else ({t.task_id for t in task_list} or None)
    if source.is_file():
        loaded = _reports_from_file(source)
    elif source.is_dir():
        loaded = _reports_from_folder(source, task_list)
    else:
        raise ConfigError(f"{source} does not exist")
    if wanted is not None:
        loaded.reports = {k: v for k, v in loaded.reports.items() if k in wanted}
        loaded.origins = {k: v for k, v in loaded.origins.items() if k in wanted}
    return loaded


def _reports_from_file(path: Path) -> LoadedReports:
    text = _read(path)
    loaded = LoadedReports()
    if text.lstrip().startswith("["):
        records, error = _json_array(text)
        if error:
            loaded.errors.append(f"{path}:{error}")
    else:
        records = list(_jsonl_records(text))
    first_line: dict[str, int] = {}
    for line, value in records:
        if isinstance(value, _Bad):
            loaded.errors.append(f"{path}:{line}: {value}")
            continue
        task_id = value.get("id", value.get("task_id")) if isinstance(value, dict) else None
        body = _report_body(value)
        if task_id is None or body is None:
            loaded.errors.append(f"{path}:{line}: expected {{id, article}} or {{id, response}}")
            continue
        key = str(task_id)
        if key in first_line:
            loaded.errors.append(f"{path}:{line}: duplicate id {key!r} (first at line {first_line[key]})")
            continue
        first_line[key] = line
        loaded.reports[key] = body
        loaded.origins[key] = f"{path}:{line}"
    return loaded


def _report_body(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in ("article", "response", "report"):
            if isinstance(value.get(key), str):
                return str(value[key])
    return None


@dataclass
class _Candidate:
    task_id: str
    origin: Path
    text: str
    done: bool
    started: str


def _reports_from_folder(folder: Path, tasks: list[Task]) -> LoadedReports:
    loaded = LoadedReports()
    if _is_run(folder):
        run_dirs = [folder]
        markdown: list[Path] = []
    else:
        children = sorted(folder.iterdir())
        run_dirs = [c for c in children if c.is_dir() and _is_run(c)]
        markdown = [c for c in children if c.is_file() and c.suffix == ".md"]
    candidates: list[_Candidate] = []
    for file in markdown:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            loaded.errors.append(f"{file}: cannot read: {exc}")
            continue
        candidates.append(_Candidate(file.stem, file, text, True, ""))
    prompts = _prompt_index(tasks)
    for run_dir in run_dirs:
        try:
            candidates.append(_run_candidate(run_dir, prompts))
        except (_Bad, RunStoreError) as exc:
            loaded.errors.append(f"{run_dir}: {exc}")
    by_task: dict[str, list[_Candidate]] = {}
    for candidate in candidates:
        by_task.setdefault(candidate.task_id, []).append(candidate)
    for task_id, group in by_task.items():
        best = max(group, key=lambda c: (c.done, c.started, c.origin.name))
        if len(group) > 1:
            others = ", ".join(str(c.origin) for c in group if c is not best)
            loaded.errors.append(
                f"task {task_id!r}: {len(group)} reports; using {best.origin} (not {others})"
            )
        loaded.reports[task_id] = best.text
        loaded.origins[task_id] = str(best.origin)
    return loaded


def _is_run(folder: Path) -> bool:
    return (folder / RUN_INFO).is_file()


def _run_candidate(run_dir: Path, prompts: dict[str, list[str]]) -> _Candidate:
    run = RunDir(run_dir)
    info = run.meta
    task_id = _run_task_id(run, info.question, prompts)
    try:
        text = run.report()
    except RunStoreError as exc:
        raise _Bad(f"cannot read {run.report_path.name}: {exc}") from exc
    if text is None:
        raise _Bad(f"no {run.report_path.name} (run status {info.status})")
    return _Candidate(task_id, run_dir, text, info.status == "done", info.started)


def _run_task_id(run: RunDir, question: str, prompts: dict[str, list[str]]) -> str:
    try:
        task = run.task()
    except RunStoreError as exc:
        raise _Bad(f"cannot read {TASK}: {exc}") from exc
    if isinstance(task, str):
        return task
    if task is not None:
        if not isinstance(task, dict) or not isinstance(task.get("task_id"), str | int):
            raise _Bad(f'{TASK} must be {{"task_id": …}}')
        return str(task["task_id"])
    matches = prompts.get(_normalise(question), [])
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise _Bad(f"its question matches several task prompts ({', '.join(matches)}); add a {TASK}")
    raise _Bad(f"no {TASK} or {TASK_ID} file, and its question matches no task prompt")


def _prompt_index(tasks: list[Task]) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for task in tasks:
        index.setdefault(_normalise(task.prompt), []).append(task.task_id)
    return index


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()
