"""Report writing (``synth draft``): a run's gathered evidence turned into paragraphs of reasoning.

The paper's report-writing data comes from runs whose trajectory was good but whose report was not:
stacks of bullets, stubs of paragraphs, no structure, no citations. For each finished run directory
(read with ``runs.RunDir``) this pipeline:

1. checks the report's form deterministically (``format_problems``): more than half of its body lines
   are list items, its paragraphs are very short, it has no headings, or it cites nothing. A report
   with none of these problems is left alone (``well_formatted``) unless every report is to be
   rewritten;
2. regenerates the report from the run's final state — the question, the sources it saw with their
   keys and text (opened pages from the workspace, search results from the tool messages), its last
   notes, and the old report as a list of what must stay covered — with our synthesis-driven
   drafting prompt: paragraphs that argue, every claim cited with the run's own keys;
3. drops a rewrite that cites a key the run never saw (``unknown_citations``) or that still fails the
   form check (``bad_rewrite``);
4. asks a pairwise judge twice, the old report first and then the rewrite first, to cancel position
   bias, and keeps the rewrite only when both orders say it is deeper and loses no coverage
   (``not_better`` otherwise).

A run that is not finished is dropped ``not_finished``. The kept record carries the new report in our
answer format (``\\cite{web_…}`` keys), the old one, the judge's verdicts, and the run's messages
with the final answer replaced, ready to be a training trajectory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deepresearch.config import Settings
from deepresearch.errors import ConfigError, RunStoreError
from deepresearch.report import cited_keys, extract_answer, strip_references
from deepresearch.runs import RunDir
from deepresearch.sources import KEY_PATTERN
from deepresearch.synth.context import open_context
from deepresearch.synth.engine import Outcome, Summary, Tally, run_items
from deepresearch.synth.model import BadReply, Language, Model, language_of, prompt

BULLET_SHARE = 0.5
"""A report whose body lines are list items more than this share of the time is a bullet stack."""
SHORT_PARAGRAPH_CHARS = {"en": 160, "zh": 60}
"""Median prose paragraph length (characters) below which the paragraphs are stubs."""
SOURCE_CHARS = 1500
"""Characters of each source's text shown to the writer."""
MAX_SOURCES = 30
NOTES_CHARS = 4000
"""Characters of the run's last notes (assistant turns, workspace notes) shown to the writer."""

JUDGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "deeper": {"type": "string", "enum": ["A", "B", "tie"]},
        "a_covers_b": {"type": "boolean"},
        "b_covers_a": {"type": "boolean"},
        "reason": {"type": "string"},
    },
    "required": ["deeper", "a_covers_b", "b_covers_a", "reason"],
}

_LIST_ITEM = re.compile(r"^\s*(?:[-*+•]|\d+[.)、])\s+")
_HEADING = re.compile(r"^\s*#{1,6}\s+\S")
_TABLE_ROW = re.compile(r"^\s*\|")
_NUMBERED_CITE = re.compile(r"\[(\d+(?:\s*[,，]\s*\d+)*)\]")
_CITE = re.compile(r"\\cite[a-z]*\{([^{}]*)\}")
_TOOL_ITEM = re.compile(
    r"<cite_index>(web_[0-9a-f]+)</cite_index>.*?(?:<content>(.*?)</content>|</item>)", re.S
)


# ---- the form check (pure) ------------------------------------------------------------------------


def body_of(report: str) -> str:
    """The report without its trailing References section."""
    return strip_references(report)


def format_problems(report: str, language: Language) -> list[str]:
    """What is wrong with a report's form: ``bullets``, ``short_paragraphs``, ``no_headings``,
    ``no_citations`` (or ``empty``); none when it reads as a report."""
    body = body_of(report).strip()
    lines = [line for line in body.splitlines() if line.strip()]
    if not lines:
        return ["empty"]
    problems: list[str] = []
    content = [line for line in lines if not _HEADING.match(line) and not _TABLE_ROW.match(line)]
    items = [line for line in content if _LIST_ITEM.match(line)]
    if content and len(items) / len(content) > BULLET_SHARE:
        problems.append("bullets")
    paragraphs = [
        " ".join(block.split())
        for block in re.split(r"\n\s*\n", body)
        if block.strip()
        and not any(_HEADING.match(line) or _LIST_ITEM.match(line) for line in block.strip().splitlines())
    ]
    lengths = sorted(len(p) for p in paragraphs)
    if not lengths or lengths[len(lengths) // 2] < SHORT_PARAGRAPH_CHARS[language]:
        problems.append("short_paragraphs")
    if not any(_HEADING.match(line) for line in lines):
        problems.append("no_headings")
    if not (_NUMBERED_CITE.search(body) or _CITE.search(body) or KEY_PATTERN.search(body)):
        problems.append("no_citations")
    return problems


def keyed(report: str, numbers: dict[int, str]) -> str:
    """A delivered report (``[n]`` citations, References) back in answer form (``\\cite{key}``), so old
    and new reports are compared in the same notation."""

    def replace(match: re.Match[str]) -> str:
        keys = [numbers.get(int(n)) for n in re.split(r"\s*[,，]\s*", match.group(1))]
        if not all(keys):
            return match.group(0)
        return "\\cite{" + ",".join(k for k in keys if k) + "}"

    return _NUMBERED_CITE.sub(replace, body_of(report)).strip()


# ---- the run's final state -----------------------------------------------------------------------


def source_texts(run: RunDir) -> list[dict[str, Any]]:
    """The sources the run saw, each with the best text the run has of it: the opened page saved in
    the workspace, else the content a search result showed, else its snippet. Opened ones first."""
    shown: dict[str, str] = {}
    for message in run.messages():
        if message.get("role") == "tool" and isinstance(message.get("content"), str):
            for key, content in _TOOL_ITEM.findall(message["content"]):
                if content and len(content) > len(shown.get(key, "")):
                    shown[key] = content
    sources = []
    for source in run.sources():
        key = str(source.get("key") or "")
        if not key:
            continue
        text = _workspace_text(run, key) or shown.get(key) or str(source.get("snippet") or "")
        sources.append(
            {
                "key": key,
                "title": str(source.get("title") or ""),
                "url": str(source.get("url") or ""),
                "fetched": bool(source.get("fetched")),
                "text": _head(text, SOURCE_CHARS),
            }
        )
    sources.sort(key=lambda s: not s["fetched"])
    return sources


def _workspace_text(run: RunDir, key: str) -> str:
    for folder in ("pages", "search"):
        path = run.workspace / folder / f"{key}.md"
        if path.is_file():
            return path.read_text(encoding="utf-8", errors="replace")
    return ""


def last_notes(run: RunDir) -> str:
    """The run's last assistant turns (before its answer) and the notes it kept in its workspace."""
    turns = [
        str(m.get("content") or "").strip()
        for m in run.messages()
        if m.get("role") == "assistant" and "<answer>" not in str(m.get("content") or "")
    ]
    parts = [t for t in turns if t][-3:]
    notes = run.workspace / "notes"
    if notes.is_dir():
        parts += [p.read_text(encoding="utf-8", errors="replace") for p in sorted(notes.rglob("*.md"))]
    text = "\n\n".join(parts).strip()
    return text if len(text) <= NOTES_CHARS else "…" + text[-NOTES_CHARS:]  # the latest notes matter most


def with_new_answer(messages: list[dict[str, Any]], report: str) -> list[dict[str, Any]] | None:
    """The run's messages with the report in its last answer swapped for ``report``."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        content = str(message.get("content") or "")
        if message.get("role") == "assistant" and "<answer>" in content:
            head = content[: content.index("<answer>")]
            replaced = {**message, "content": f"{head}<answer>\n{report}\n</answer>"}
            return [*messages[:index], replaced, *messages[index + 1 :]]
    return None


# ---- the model steps -----------------------------------------------------------------------------


async def rewrite(
    model: Model, question: str, sources: list[dict[str, Any]], notes: str, old: str, language: Language
) -> str:
    text = await model.text(
        prompt(
            "draft_write",
            language,
            question=question,
            sources=sources[:MAX_SOURCES],
            notes=notes,
            old_report=old,
        )
    )
    return extract_answer(text)


async def judge_pair(
    model: Model, question: str, old: str, new: str, language: Language
) -> list[dict[str, Any]]:
    """The judge's verdict with the old report first, then with the rewrite first."""
    verdicts = []
    for order, (first, second) in (("old_first", (old, new)), ("new_first", (new, old))):
        data = await model.json(
            prompt("draft_judge", language, question=question, report_a=first, report_b=second),
            JUDGE_SCHEMA,
            check=_check_judge,
        )
        new_label = "B" if order == "old_first" else "A"
        deeper = str(data["deeper"])
        verdicts.append(
            {
                "order": order,
                "deeper": "tie" if deeper == "tie" else "new" if deeper == new_label else "old",
                "coverage_kept": bool(data["b_covers_a"] if order == "old_first" else data["a_covers_b"]),
                "reason": str(data.get("reason") or ""),
            }
        )
    return verdicts


def _check_judge(data: dict[str, Any]) -> list[str]:
    problems = []
    if data.get("deeper") not in ("A", "B", "tie"):
        problems.append('"deeper" must be A, B or tie')
    problems += [
        f'"{k}" must be true or false'
        for k in ("a_covers_b", "b_covers_a")
        if not isinstance(data.get(k), bool)
    ]
    return problems


async def draft_run(item: dict[str, Any], model: Model, *, rewrite_all: bool = False) -> Outcome:
    """One run directory → a kept rewrite of its report, or the reason there is none."""
    run = RunDir.open(Path(item["path"]))
    if not run.finished:
        return Outcome.drop("not_finished", status=str(run.status))
    question = run.meta.question
    language = language_of(question)
    old_report = run.report() or ""
    sources = source_texts(run)
    numbers = {int(s["n"]): str(s["key"]) for s in run.sources() if s.get("n") and s.get("key")}
    old = keyed(old_report, numbers)
    problems = format_problems(old_report, language)
    if not problems and not rewrite_all:
        return Outcome.drop("well_formatted")
    try:
        new = await rewrite(model, question, sources, last_notes(run), old, language)
        known = {s["key"] for s in sources}
        unknown = [key for key in cited_keys(new) if key not in known]
        if unknown:
            return Outcome.drop("unknown_citations", keys=unknown)
        still = format_problems(new, language)
        if still:
            return Outcome.drop("bad_rewrite", problems=still)
        verdicts = await judge_pair(model, question, old, new, language)
    except BadReply as exc:
        return Outcome.drop("bad_reply", problem=str(exc))
    if not all(v["deeper"] == "new" and v["coverage_kept"] for v in verdicts):
        return Outcome.drop("not_better", verdicts=verdicts)
    record: dict[str, Any] = {
        "task_id": str(item["id"]),
        "run_dir": str(run.path),
        "question": question,
        "language": language,
        "report": new,
        "old_report": old_report,
        "problems": problems,
        "verdicts": verdicts,
        "citations": cited_keys(new),
    }
    messages = with_new_answer(run.messages(), new)
    if messages is not None:
        record["messages"] = messages
    return Outcome.keep(record, problems=problems)


def run_items_of(paths: list[Path]) -> Iterator[dict[str, Any]]:
    """One item per run directory: each path is a run directory or a folder of them."""
    for path in paths:
        if _is_run(path):
            yield _item(path)
        elif path.is_dir():
            for child in sorted(path.iterdir()):
                if child.is_dir() and _is_run(child):
                    yield _item(child)
        else:
            raise ConfigError(f"{path} is neither a run directory nor a folder of them")


def _is_run(path: Path) -> bool:
    try:
        RunDir.open(path)
    except RunStoreError:
        return False
    return True


def _item(path: Path) -> dict[str, Any]:
    try:
        run_id = RunDir.open(path).meta.id
    except RunStoreError:  # an unreadable run.json: the folder name still identifies it
        run_id = path.name
    return {"id": run_id, "path": str(path)}


async def synth_draft(
    settings: Settings,
    *,
    runs: list[Path],
    out: Path,
    concurrency: int = 4,
    progress: bool = True,
    rewrite_all: bool = False,
) -> Summary:
    """Reports rewritten as paragraphs of reasoning from finished runs (``rewrite_all``: every
    finished run, not only those whose report is badly formatted), into ``out``."""
    items = list(run_items_of(runs))
    async with open_context(settings, out, search=False) as ctx:

        async def step(item: dict[str, Any], tally: Tally) -> Outcome:
            return await draft_run(item, ctx.model(tally), rewrite_all=rewrite_all)

        return await run_items(
            items, step, out, concurrency=concurrency, label="draft", progress=progress, total=len(items)
        )


def _head(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
