"""Human annotation of pairwise comparisons: export blinded pairs for reviewers, import their answers as
``PairVerdict``s, and set human against LLM verdicts.

ADR-Bench (Step-DeepResearch §5.3) is judged by people first; the LLM judge in ``bench/pairwise.py``
is only worth trusting as far as it matches them. So a human verdict takes exactly the LLM's shape
(judge ``human:<reviewer>``, one ``Reading`` per answered row, combined by ``verdict_from_readings``)
and ``summarize_pairs`` and Bradley–Terry treat both alike.

Contract of an export directory:
- ``pairs.csv`` and ``pairs.html`` are what reviewers see. They never name the systems; which system
  is "Report 1" is drawn per task from ``sha256(seed, task_id)``, so it is reproducible and does not
  change for one task when others are added. Pair ids (``p001`` …) follow task order only.
- ``key.json`` is the unblinding key, for the organiser only. Exporting again over an existing key
  raises unless ``overwrite=True``: a new key would silently misread answers already given.
- Import is lenient about spelling ("Report 1", "left", "Both good") and layout (rows reordered,
  report columns deleted, extra rows for more reviewers), but strict about meaning: a value it cannot
  read is an error naming ``file:line`` and the column, never a silent tie, and the other rows import.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from markupsafe import Markup
from pydantic import BaseModel, ConfigDict, ValidationError

from deepresearch.bench.pairwise import PairVerdict, Reading, oriented, verdict_from_readings
from deepresearch.bench.stats import DIMENSIONS, RESULTS, Dimension, PairOutcome, Preference
from deepresearch.errors import ConfigError
from deepresearch.templates import render_page

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

ANSWER_COLUMNS = ("reviewer", "overall", *DIMENSIONS, "reason")
CSV_COLUMNS = ("pair_id", "task_id", "request", "report_1", "report_2", *ANSWER_COLUMNS)
Judges = Literal["human", "llm", "both"]
SHEET, PAGE, KEY = "pairs.csv", "pairs.html", "key.json"
"""The file names in an export directory: the reviewers' sheet and page, and the organiser's key."""

INSTRUCTIONS = f"""Blind pairwise review of research reports

Each pair is one request and two reports written by two different systems. Which system wrote which
report is hidden, and the order was drawn at random: being first says nothing about quality.
Read the pairs in pairs.html, then fill one row of pairs.csv per pair:

- reviewer: your name. A second reviewer adds rows with the same pair_id and their own name.
- overall: report_1_better, report_2_better, both_good, both_fair or both_poor.
  Weigh what the request needs most; a serious factual error outweighs everything else.
- {", ".join(DIMENSIONS)}:
  1 (Report 1 is better on it), 2 (Report 2 is better) or tie.
- reason: a sentence or two on why (optional).

Leave a row's answers empty to skip that pair. You may reorder rows and delete the request and report
columns; keep pair_id. Some spreadsheet programs cut long cells: read the reports in pairs.html.
"""
_ORGANISER_NOTE = "\nkey.json says which system wrote which report: keep it away from reviewers.\n"

_OVERALL: dict[str, PairOutcome] = {
    **dict.fromkeys(
        ("report_1_better", "report_1", "1_better", "1", "r1", "left", "left_better"), "left_better"
    ),
    **dict.fromkeys(
        ("report_2_better", "report_2", "2_better", "2", "r2", "right", "right_better"), "right_better"
    ),
    **dict.fromkeys(("both_good", "good"), "both_good"),
    **dict.fromkeys(("both_fair", "fair"), "both_fair"),
    **dict.fromkeys(("both_poor", "poor", "both_bad", "bad"), "both_poor"),
}
_PREFERENCE: dict[str, Preference] = {
    **dict.fromkeys(("1", "report_1", "report_1_better", "r1", "left", "first"), "left"),
    **dict.fromkeys(("2", "report_2", "report_2_better", "r2", "right", "second"), "right"),
    **dict.fromkeys(("tie", "equal", "same", "neither", "draw", "0", "t"), "tie"),
}


# --- the key


class KeyEntry(BaseModel):
    """Which system was shown where for one pair."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    report_1: str
    report_2: str


class AnnotationKey(BaseModel):
    """The unblinding key (``key.json``): pair id → task and systems, in export order."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["deepresearch-annotation-key-1"] = "deepresearch-annotation-key-1"
    name_a: str
    name_b: str
    seed: int
    pairs: dict[str, KeyEntry]

    def a_position(self, pair_id: str) -> Literal[1, 2]:
        """Where system A's report was shown in ``pair_id``."""
        return 1 if self.pairs[pair_id].report_1 == self.name_a else 2


def read_key(path: Path) -> AnnotationKey:
    """The key in ``path``; an unreadable or inconsistent key raises ``ConfigError`` naming it."""
    try:
        key = AnnotationKey.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError) as exc:
        detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise ConfigError(f"{path}: not an annotation key ({detail})") from exc
    systems = {key.name_a, key.name_b}
    for pair_id, entry in key.pairs.items():
        if {entry.report_1, entry.report_2} != systems:
            raise ConfigError(f"{path}: pair {pair_id} does not show {key.name_a} against {key.name_b}")
    return key


# --- export


@dataclass(frozen=True)
class AnnotationExport:
    """What ``export_pairs`` wrote, and the tasks it left out (task id → why)."""

    out_dir: Path
    """Holds ``SHEET``, ``PAGE``, ``README.txt`` and ``KEY``."""
    key: AnnotationKey
    skipped: dict[str, str]


def export_pairs(
    reports_a: Mapping[str, str],
    reports_b: Mapping[str, str],
    prompts: Mapping[str, str],
    *,
    name_a: str,
    name_b: str,
    out_dir: Path,
    seed: int = 0,
    overwrite: bool = False,
) -> AnnotationExport:
    """Write ``pairs.csv``, ``pairs.html``, ``README.txt`` and ``key.json`` for every task both systems
    answered (in ``prompts`` order); tasks with one report or no prompt are skipped, not exported."""
    if name_a == name_b:
        raise ConfigError(f"the two systems need different names, both are {name_a!r}")
    if (out_dir / KEY).exists() and not overwrite:
        raise ConfigError(f"{out_dir / KEY} exists; a new key would misread answers already given")
    key, skipped = plan_pairs(reports_a, reports_b, prompts, name_a=name_a, name_b=name_b, seed=seed)
    shown = {key.name_a: reports_a, key.name_b: reports_b}
    rows = [
        (pair_id, e.task_id, prompts[e.task_id], shown[e.report_1][e.task_id], shown[e.report_2][e.task_id])
        for pair_id, e in key.pairs.items()
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    # A BOM so that spreadsheet programs read the file as UTF-8; import strips it again.
    _write(out_dir / SHEET, "\ufeff" + render_csv(rows))
    _write(out_dir / PAGE, render_html(rows))
    _write(out_dir / "README.txt", INSTRUCTIONS + _ORGANISER_NOTE)
    _write(out_dir / KEY, key.model_dump_json(indent=2) + "\n")  # last: a key means a complete export
    return AnnotationExport(out_dir=out_dir, key=key, skipped=skipped)


def plan_pairs(
    reports_a: Mapping[str, str],
    reports_b: Mapping[str, str],
    prompts: Mapping[str, str],
    *,
    name_a: str,
    name_b: str,
    seed: int = 0,
) -> tuple[AnnotationKey, dict[str, str]]:
    """The key for the tasks both systems answered, and the skipped tasks with the reason."""
    order = {task_id: i for i, task_id in enumerate(prompts)}
    task_ids = sorted({*reports_a, *reports_b}, key=lambda t: (order.get(t, len(order)), t))
    skipped: dict[str, str] = {}
    kept: list[str] = []
    for task_id in task_ids:
        if task_id not in reports_a or task_id not in reports_b:
            skipped[task_id] = f"no report from {name_b if task_id in reports_a else name_a}"
        elif task_id not in prompts:
            skipped[task_id] = "no task prompt"
        else:
            kept.append(task_id)
    width = max(3, len(str(len(kept))))
    pairs = {}
    for number, task_id in enumerate(kept, 1):
        first, second = (name_a, name_b) if _a_first(seed, task_id) else (name_b, name_a)
        pairs[f"p{number:0{width}d}"] = KeyEntry(task_id=task_id, report_1=first, report_2=second)
    return AnnotationKey(name_a=name_a, name_b=name_b, seed=seed, pairs=pairs), skipped


def _a_first(seed: int, task_id: str) -> bool:
    return hashlib.sha256(f"{seed}\x00{task_id}".encode()).digest()[0] < 128


def render_csv(rows: Iterable[tuple[str, str, str, str, str]]) -> str:
    """The reviewers' sheet: pair id, task, request, both reports, then empty answer columns."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for pair_id, task_id, *texts in rows:
        writer.writerow([pair_id, task_id, *map(_cell, texts), *([""] * len(ANSWER_COLUMNS))])
    return buffer.getvalue()


def _cell(text: str) -> str:
    """A leading ``'`` where a spreadsheet would take the text for a formula (CSV injection): the
    reports are model output, and a reviewer's spreadsheet must not run them."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@cache
def _markdown() -> MarkdownIt:
    from markdown_it import MarkdownIt

    # Raw HTML off (a report is model output), and no images: the page must load nothing from the net.
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table").disable("image")


def render_html(rows: Iterable[tuple[str, str, str, str, str]]) -> str:
    """One self-contained page (``bench/pages/pairs.html``): the instructions, then each pair's request
    and reports side by side. The template escapes every string; the reports go in as Markup because
    Markdown with raw HTML off has escaped whatever the model wrote."""
    pairs = [
        {
            "id": pair_id,
            "task_id": task_id,
            "request": request,
            "reports": [Markup(_markdown().render(text)) for text in (report_1, report_2)],
        }
        for pair_id, task_id, request, report_1, report_2 in rows
    ]
    return render_page("deepresearch.bench", "pairs.html", {"instructions": INSTRUCTIONS, "pairs": pairs})


def _write(path: Path, text: str) -> None:
    """Write whole or not at all: a crash mid-write must not leave half a key."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8", newline="")
    os.replace(temporary, path)


# --- import


@dataclass(frozen=True)
class ImportResult:
    """Verdicts read from a filled sheet, one per (pair, reviewer), and what could not be read."""

    verdicts: list[PairVerdict]
    errors: list[str]
    """``file:line: column …: why``, one per problem; those rows are left out."""
    annotated: int
    """Rows that became a ``Reading``."""
    unannotated: int
    """Rows whose answers were all empty."""
    pending: list[str] = field(default_factory=list)
    """Pair ids of the key that no row answered."""


def import_pairs(csv_path: Path, key_path: Path, *, reviewer_default: str = "reviewer") -> ImportResult:
    """Read a filled ``pairs.csv`` against its key. Several rows of one reviewer on one pair are
    combined like the two orders of an LLM verdict: where they disagree, the result is a tie."""
    key = read_key(key_path)
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{csv_path}: cannot read the sheet ({exc})") from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [_label(name) for name in next(reader, [])]
    missing = [c for c in ("pair_id", "overall", *DIMENSIONS) if c not in header]
    if missing:
        raise ConfigError(f"{csv_path}: the sheet has no column {', '.join(missing)}")
    readings: dict[tuple[str, str], list[Reading]] = defaultdict(list)
    errors: list[str] = []
    annotated = unannotated = 0
    line = reader.line_num + 1  # line_num is where a record ended; a quoted field may span lines
    for raw in reader:
        cells = {name: value.strip() for name, value in zip(header, raw, strict=False)}
        where, line = f"{csv_path}:{line}", reader.line_num + 1
        if not any(cells.get(c) for c in ("overall", *DIMENSIONS)):
            unannotated += bool(raw)
            continue
        problems, reading = _reading(cells, key)
        if reading is None:
            errors.extend(f"{where}: {problem}" for problem in problems)
            continue
        annotated += 1
        readings[(cells["pair_id"], cells.get("reviewer") or reviewer_default)].append(reading)
    order = {pair_id: i for i, pair_id in enumerate(key.pairs)}
    verdicts = [
        verdict_from_readings(
            readings[pair_id, reviewer],
            task_id=key.pairs[pair_id].task_id,
            system_a=key.name_a,
            system_b=key.name_b,
            judge=f"human:{reviewer}",
        )
        for pair_id, reviewer in sorted(readings, key=lambda pair: (order[pair[0]], pair[1]))
    ]
    answered = {pair_id for pair_id, _ in readings}
    pending = [pair_id for pair_id in key.pairs if pair_id not in answered]
    return ImportResult(verdicts, errors, annotated, unannotated, pending)


def _reading(cells: Mapping[str, str], key: AnnotationKey) -> tuple[list[str], Reading | None]:
    """One answered row as a ``Reading``, or the problems with it."""
    pair_id = cells.get("pair_id", "")
    if pair_id not in key.pairs:
        return [f"column pair_id: {pair_id!r} is not in the key"], None
    problems = []
    task_id = cells.get("task_id")
    if task_id and task_id != key.pairs[pair_id].task_id:
        problems.append(f"column task_id: {task_id!r}, but the key has {key.pairs[pair_id].task_id!r}")
    outcome = _OVERALL.get(_label(cells.get("overall", "")))
    if outcome is None:
        problems.append(
            f"column overall: {cells.get('overall', '')!r} is not one of report_1_better, report_2_better, "
            "both_good, both_fair, both_poor"
        )
    dimensions: dict[Dimension, Preference] = {}
    for dimension in DIMENSIONS:
        value = cells.get(dimension, "")
        preference = _PREFERENCE.get(_label(value))
        if preference is None:
            problems.append(f'column {dimension}: {value!r} is not "1", "2" or "tie"')
        else:
            dimensions[dimension] = preference
    if problems or outcome is None:
        return problems, None
    reading = Reading(
        a_position=key.a_position(pair_id),
        outcome=outcome,
        dimensions=dimensions,
        reason=cells.get("reason", ""),
    )
    return [], reading


def _label(value: str) -> str:
    """Lower case, runs of anything else than letters and digits as one ``_``: "Report 1" → report_1."""
    return re.sub(r"[^a-z0-9]+", "_", value.strip().lower()).strip("_")


# --- human and LLM together


def combine_judges(verdicts: Iterable[PairVerdict], which: Judges) -> list[PairVerdict]:
    """The human verdicts, the LLM verdicts, or both, for the same statistics.

    With ``both`` every verdict stays its own observation: a task judged by the LLM and two reviewers
    counts three times in the win/tie/loss counts. That keeps each judge's say visible rather than
    inventing a majority rule, but the bootstrap in ``summarize_pairs`` then resamples verdicts, not
    tasks, so its intervals come out narrower than the tasks warrant.
    """
    prefixes = {"human": ("human:",), "llm": ("llm:",), "both": ("human:", "llm:")}[which]
    return [v for v in verdicts if v.judge.startswith(prefixes)]


@dataclass(frozen=True)
class JudgeAgreement:
    """How often human and LLM verdicts give A the same result on the tasks both judged."""

    n: int
    """(human verdict, LLM verdict) pairs on the same task, neither failed."""
    tasks: int
    rate: float | None
    """Share of the ``n`` pairs with the same result; None when there are none."""
    kappa: float | None
    """Cohen's kappa over win/tie/loss; None when chance agreement is already perfect or n is 0."""
    confusion: list[list[int]]
    """Rows: human result; columns: LLM result; both in win, tie, loss order."""


def judge_agreement(
    human: Iterable[PairVerdict], llm: Iterable[PairVerdict], *, key: str = "overall"
) -> JudgeAgreement:
    """Agreement on ``key`` (``overall`` or a dimension); every human verdict on a task is set
    against every LLM verdict on it, all seen from the first human verdict's system A."""
    if key not in ("overall", *DIMENSIONS):
        raise ValueError(f"unknown key {key!r}; use overall or one of {', '.join(DIMENSIONS)}")
    confusion = [[0] * len(RESULTS) for _ in RESULTS]
    humans = [v for v in human if not v.failed]
    system_a = humans[0].system_a if humans else ""
    llm_by_task: dict[str, list[PairVerdict]] = defaultdict(list)
    for verdict in llm:
        if humans and not verdict.failed:
            llm_by_task[verdict.task_id].append(oriented(verdict, system_a))
    index = {result: i for i, result in enumerate(RESULTS)}
    tasks: set[str] = set()
    for verdict in humans:
        mine = oriented(verdict, system_a).results()[key]
        for other in llm_by_task.get(verdict.task_id, []):
            theirs = other.results()[key]
            if mine is not None and theirs is not None:
                confusion[index[mine]][index[theirs]] += 1
                tasks.add(verdict.task_id)
    return _agreement(confusion, len(tasks))


def _agreement(confusion: list[list[int]], tasks: int) -> JudgeAgreement:
    n = sum(map(sum, confusion))
    if n == 0:
        return JudgeAgreement(0, 0, None, None, confusion)
    observed = sum(confusion[i][i] for i in range(len(confusion))) / n
    cols = [sum(column) for column in zip(*confusion, strict=True)]
    expected = sum(sum(row) * col for row, col in zip(confusion, cols, strict=True)) / (n * n)
    kappa = (observed - expected) / (1 - expected) if expected < 1 else None
    return JudgeAgreement(n, tasks, observed, kappa, confusion)
