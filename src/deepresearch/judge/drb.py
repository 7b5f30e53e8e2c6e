"""DeepResearch Bench's files as RACE needs them: criteria with their raw weights, references, queries.

``judge/loaders.py`` turns ``criteria.jsonl`` into rubrics for absolute grading, folding each
criterion's weight into ``dimension weight × criterion weight × 100``. RACE needs the two weights
apart (a dimension's score is a criterion-weighted mean, the side's score a dimension-weighted sum),
and it needs two files the rubric loader has no use for:

- ``reference.jsonl``: ``{id, prompt, article}`` per line, the reference article each target is
  compared with (the benchmark ships it under ``data/test_data/cleaned_data/``);
- ``query.jsonl``: ``{id, topic, language, prompt}`` per line (``data/prompt_data/``), whose
  ``language`` (``zh``/``en``) picks the judge prompt and whose ``topic`` is the task's domain.

The official scripts join these files on the prompt text; we join on ``id`` and fall back to the
prompt (whitespace- and case-normalised) for a record whose id matches nothing. Loading is tolerant
as ``loaders.py`` is: a malformed line becomes ``"{path}:{line}: {reason}"`` in ``errors`` and every
other line still loads; a missing or unreadable file raises ``ConfigError``. A task with no language
anywhere is ``zh`` when its prompt contains CJK characters, else ``en``.

``clean_article`` does deterministically what the official pipeline asks an LLM to do before RACE:
the judge reads the article without citation markers, links and reference lists (the shipped
reference articles are already cleaned), so citations neither help nor hurt, and the tokens of a
bibliography are not sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from deepresearch.errors import ConfigError

Language = Literal["en", "zh"]

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_BIBLIOGRAPHY = re.compile(
    r"^(?P<hashes>#{1,6}\s*)?[*_]{0,2}\s*(?:\d+\.?\s*)?"
    r"(?:references?|sources?|bibliography|works cited|citations?|notes|footnotes|further reading"
    r"|参考文献|参考资料|参考来源|引用来源|资料来源|信息来源|来源|注释)"
    r"\s*[:：]?\s*[*_]{0,2}\s*$",
    re.IGNORECASE,
)
_HEADING = re.compile(r"^(#{1,6})\s")
_FOOTNOTE_DEFINITION = re.compile(r"^\s*\[\^?[\w-]+\]:\s")
_NUMBERED_LINK = re.compile(r"\s?\[\^?\d+(?:\s*[,–-]\s*\d+)*\]\([^)\s]*\)")
_MARKER = re.compile(r"\s?(?:\[\^?\d+(?:\s*[,，–-]\s*\^?\d+)*\]|【\d+(?:\s*[,，–-]\s*\d+)*】)")
_LINK = re.compile(r"\[([^\]]+)\]\((?:https?://|www\.)[^)\s]*\)")
_BARE_URL = re.compile(r"\s?\(?<?(?:https?://|www\.)[^\s)>\]]*[^\s)>\].,;:!?。，；]>?\)?")


@dataclass(frozen=True, slots=True)
class DrbCriterion:
    criterion: str
    explanation: str
    weight: float
    """The criterion's weight inside its dimension (DRB's sum to 1 per dimension)."""


@dataclass(frozen=True, slots=True)
class DrbTask:
    """One DeepResearch Bench task: its prompt and its criteria grouped by dimension, weights apart."""

    task_id: str
    prompt: str
    dimension_weight: dict[str, float]
    criteria: dict[str, list[DrbCriterion]]
    """Dimension name as the criteria file spells it (``comprehensiveness``, ``insight``,
    ``instruction_following``, ``readability``) → its criteria, in file order."""
    language: Language = "en"
    topic: str = ""


@dataclass
class LoadedDrb:
    tasks: list[DrbTask] = field(default_factory=list)
    references: dict[str, str] = field(default_factory=dict)
    """task id → reference article (only when a references file was given)."""
    errors: list[str] = field(default_factory=list)


class _Bad(ValueError):
    """One record is malformed; the message is the reason shown after ``path:line:``."""


def load_drb(
    criteria: str | Path, *, references: str | Path | None = None, queries: str | Path | None = None
) -> LoadedDrb:
    """The tasks of ``criteria.jsonl``, with language and topic from ``queries`` and, when given, the
    reference article of each task from ``references`` (a task without one is reported)."""
    path = Path(criteria)
    loaded = LoadedDrb()
    seen: set[str] = set()
    for line, value in _records(path):
        try:
            if isinstance(value, _Bad):
                raise value
            task = _task(value)
        except _Bad as exc:
            loaded.errors.append(f"{path}:{line}: {exc}")
            continue
        if task.task_id in seen:
            loaded.errors.append(f"{path}:{line}: duplicate task id {task.task_id!r}")
            continue
        seen.add(task.task_id)
        loaded.tasks.append(task)
    if queries is not None:
        loaded.tasks = _join_queries(loaded.tasks, Path(queries), loaded.errors)
    if references is not None:
        loaded.references = load_references(Path(references), loaded.tasks, loaded.errors)
        for task in loaded.tasks:
            if task.task_id not in loaded.references:
                loaded.errors.append(f"{references}: no reference article for task {task.task_id!r}")
    return loaded


def load_references(path: Path, tasks: list[DrbTask], errors: list[str]) -> dict[str, str]:
    """task id → reference article; records are matched to ``tasks`` by id, then by prompt."""
    by_id = {task.task_id for task in tasks}
    by_prompt = {_normalise(task.prompt): task.task_id for task in tasks}
    found: dict[str, str] = {}
    for line, value in _records(path):
        if isinstance(value, _Bad):
            errors.append(f"{path}:{line}: {value}")
            continue
        article = value.get("article") if isinstance(value, dict) else None
        if not isinstance(article, str) or not article.strip():
            errors.append(f"{path}:{line}: expected {{id, prompt, article}} with a non-empty article")
            continue
        task_id = _match(value, by_id, by_prompt)
        if task_id is None:
            errors.append(f"{path}:{line}: matches no task by id or prompt")
        elif task_id in found:
            errors.append(f"{path}:{line}: second reference for task {task_id!r} (the first is kept)")
        else:
            found[task_id] = article
    return found


def detect_language(text: str) -> Language:
    """``zh`` when ``text`` contains CJK characters, else ``en``."""
    return "zh" if _CJK.search(text) else "en"


def clean_article(text: str) -> str:
    """``text`` without citation markers (``[1]``, ``[2, 3]``, ``[^4]``, ``【5】``), URLs, footnote
    definitions and reference-list sections; link text stays, everything else is kept as it is."""
    kept: list[str] = []
    skipping: int | None = None  # heading level of the reference section being dropped (7: unheaded)
    for line in text.splitlines():
        heading = _HEADING.match(line)
        if skipping is not None:
            if heading is None or len(heading.group(1)) > skipping:
                continue
            skipping = None
        match = _BIBLIOGRAPHY.match(line.strip())
        if match:
            skipping = len(match.group("hashes").strip()) if match.group("hashes") else 7
            continue
        if _FOOTNOTE_DEFINITION.match(line):
            continue
        line = _NUMBERED_LINK.sub("", line)
        line = _LINK.sub(r"\1", line)
        line = _MARKER.sub("", line)
        kept.append(_BARE_URL.sub("", line))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


# --- records


def _task(obj: Any) -> DrbTask:
    if not isinstance(obj, dict):
        raise _Bad("expected a JSON object")
    task_id, prompt = obj.get("id"), obj.get("prompt")
    if not isinstance(task_id, str | int) or isinstance(task_id, bool) or not str(task_id).strip():
        raise _Bad("missing id")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _Bad("missing prompt")
    weights = obj.get("dimension_weight")
    groups = obj.get("criterions", obj.get("criteria"))
    if not isinstance(weights, dict):
        raise _Bad("missing dimension_weight (an object of dimension → weight)")
    if not isinstance(groups, dict) or not groups:
        raise _Bad("missing criterions (an object of dimension → list of criteria)")
    dimension_weight: dict[str, float] = {}
    criteria: dict[str, list[DrbCriterion]] = {}
    for dimension, items in groups.items():
        dw = _positive(weights.get(dimension), f"dimension_weight.{dimension}")
        if not isinstance(items, list) or not items:
            raise _Bad(f"criterions.{dimension}: expected a non-empty list")
        parsed = []
        for index, item in enumerate(items):
            where = f"criterions.{dimension}[{index}]"
            if not isinstance(item, dict) or not str(item.get("criterion") or "").strip():
                raise _Bad(f"{where}: expected an object with a criterion")
            parsed.append(
                DrbCriterion(
                    criterion=str(item["criterion"]).strip(),
                    explanation=str(item.get("explanation") or "").strip(),
                    weight=_positive(item.get("weight"), f"{where}.weight"),
                )
            )
        dimension_weight[str(dimension)] = dw
        criteria[str(dimension)] = parsed
    language = obj.get("language")
    return DrbTask(
        task_id=str(task_id),
        prompt=prompt,
        dimension_weight=dimension_weight,
        criteria=criteria,
        language=language if language in ("en", "zh") else detect_language(prompt),
        topic=str(obj.get("topic") or obj.get("domain") or ""),
    )


def _join_queries(tasks: list[DrbTask], path: Path, errors: list[str]) -> list[DrbTask]:
    by_id = {task.task_id for task in tasks}
    by_prompt = {_normalise(task.prompt): task.task_id for task in tasks}
    found: dict[str, dict[str, Any]] = {}
    for line, value in _records(path):
        if isinstance(value, _Bad):
            errors.append(f"{path}:{line}: {value}")
            continue
        if not isinstance(value, dict):
            errors.append(f"{path}:{line}: expected a JSON object")
            continue
        language = value.get("language")
        if language is not None and language not in ("en", "zh"):
            errors.append(f"{path}:{line}: language {language!r} is neither 'en' nor 'zh'")
            continue
        task_id = _match(value, by_id, by_prompt)
        if task_id is None:
            errors.append(f"{path}:{line}: matches no task by id or prompt")
            continue
        found.setdefault(task_id, value)
    joined = []
    for task in tasks:
        query = found.get(task.task_id)
        if query is None:
            errors.append(f"{path}: no query for task {task.task_id!r} (language guessed: {task.language})")
            joined.append(task)
            continue
        joined.append(
            DrbTask(
                task_id=task.task_id,
                prompt=task.prompt,
                dimension_weight=task.dimension_weight,
                criteria=task.criteria,
                language=query.get("language") or task.language,
                topic=str(query.get("topic") or task.topic),
            )
        )
    return joined


def _match(value: dict[str, Any], by_id: set[str], by_prompt: dict[str, str]) -> str | None:
    task_id = value.get("id")
    if task_id is not None and str(task_id) in by_id:
        return str(task_id)
    prompt = value.get("prompt")
    return by_prompt.get(_normalise(prompt)) if isinstance(prompt, str) else None


def _positive(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise _Bad(f"{where}: expected a positive number, not {value!r}")
    return float(value)


def _normalise(text: str) -> str:
    return " ".join(text.split()).casefold()


def _records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed value) per non-blank line; a line that does not parse yields a ``_Bad``."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, _Bad(f"invalid JSON ({exc.msg} at column {exc.colno})")
