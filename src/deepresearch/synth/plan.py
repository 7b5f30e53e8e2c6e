"""``synth plan``: planning data by reverse engineering finished documents (paper §3.1).

A finished piece of research (a report, a survey, a technical note) implies the task that led to it
and, in hindsight, the plan that produced it. For each document in a folder this pipeline removes the
results, has the model write that task and a plan of 3–10 short imperative steps in the document's
language, and keeps the whole document as the reference report. With ``run_agent`` it also runs our
agent on the task and keeps the item only if the run followed the plan (``synth.alignment``).

Documents are read by the local index's own loaders (``search.loaders``), so every file type the index
reads works here, with the same text. An item is one document; its id is its path relative to the
folder (``notes.jsonl#<record id>`` for a record of a JSONL file, ``notes.jsonl#<url>`` when the
record has a URL of its own).

**What is stripped before prompting** (``strip_results``, deterministic), so the task does not leak the
answer and the plan stays about method:

1. the body of any section whose heading, section number aside, is a results heading ("Results",
   "4.2 Experimental results", "Evaluation", "Findings", "Benchmarks", "Results and discussion";
   结果, 实验, 实验结果, 评估, 评测, 主要发现 …), down to the next heading of the same or a higher
   level (the heading stays: it tells the model such work was done);
2. Markdown tables (runs of lines that start with ``|``) and HTML tables;
3. images (``![…](…)``, ``<img>``) and caption lines (``Figure 2:``, ``Fig. 2``, ``Table 1.``, ``图 2``,
   ``表 1``);
4. in prose outside code blocks, each sentence that states a measured quantity: a percentage, a number
   followed by a unit (ms, GB, ×, times, pages/s, $ …, 秒, 倍, 元, 万 …), or a decimal number next to a
   word of outcome (improved, reached, accuracy, 提高, 达到 …).

Sections are found by Markdown headings (HTML headings arrive as Markdown); a PDF's text has none, so
only rules 2–4 apply to it.

Drops: ``too_short`` (fewer than ``min_words`` words left after stripping; a Chinese character counts
half a word), ``bad_reply`` (no usable JSON after a retry), ``plan_too_short`` (fewer than 3 distinct
steps), ``deviates_from_plan`` (with ``run_agent``: a finished run scoring under ``min_alignment``).

Records are ``{"task_id", "prompt", "plan", "reference", "source", "language"}`` (plus ``run_dir`` and
``alignment`` with ``run_agent``). With ``run_agent`` the task written for an item is saved to
``<out>.tasks.jsonl`` before the agent starts, so a run that fails and is resumed later answers the
same task and the task is not paid for twice.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deepresearch.config import Settings
from deepresearch.errors import ConfigError
from deepresearch.search.loaders import JSONL_SUFFIX, iter_files, load_file
from deepresearch.synth.alignment import plan_alignment
from deepresearch.synth.context import SynthContext, open_context
from deepresearch.synth.engine import Outcome, Summary, Tally, read_jsonl, run_items
from deepresearch.synth.model import BadReply, Language, language_of, prompt, require

MIN_WORDS = 80
"""Least words (a Chinese character counts half) a document must keep after stripping."""
MIN_STEPS, MAX_STEPS = 3, 10
MAX_STEP_CHARS = 200
MAX_PROMPT_CHARS = 24_000
"""Longest stripped text sent to the model; the beginning of a document says the most about its task."""
TASKS_SUFFIX = ".tasks.jsonl"

PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "task": {"type": "string"},
        "plan": {"type": "array", "items": {"type": "string"}, "minItems": MIN_STEPS, "maxItems": MAX_STEPS},
    },
    "required": ["task", "plan"],
}

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SECTION_NUMBER = re.compile(r"^(?:\d+(?:\.\d+)*\.?|[ivx]+\.|[一二三四五六七八九十]+、)\s*", re.IGNORECASE)
_RESULT_HEADING = re.compile(
    r"(?:(?:experimental|empirical|evaluation|main|key)\s+)?"
    r"(?:results?|experiments?|evaluations?|findings|benchmarks?)(?:\s+(?:and|&)\s+(?:discussion|analysis))?"
    r"|(?:主要|实验|评测|评估)?(?:结果|实验|评估|评测|发现)(?:与分析|与讨论|及分析|分析)?",
    re.IGNORECASE,
)
_FENCE = re.compile(r"^\s*(```|~~~)")
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)|<img\b[^>]*>", re.IGNORECASE)
_HTML_TABLE = re.compile(r"<table\b.*?</table>", re.IGNORECASE | re.DOTALL)
_CAPTION = re.compile(r"^\s*[*_]*\s*(fig(ure)?\.?|table|图|表)\s*[0-9一二三四五六七八九十]+", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=\S)|(?<=[。！？；])")
_NUMBER = r"\d+(?:[.,]\d+)*"
_PERCENT = re.compile(rf"{_NUMBER}\s*(%|％|percent|per cent|个?百分点)|百分之", re.IGNORECASE)
_UNIT = re.compile(
    rf"{_NUMBER}\s*(×|x\b|times\b|fold\b|ms\b|milliseconds?\b|seconds?\b|minutes?\b|hours?\b|"
    r"[kmgt]i?b\b|[kmgt]bps\b|fps\b|qps\b|tokens?/s|pages?/s|req(uests)?/s|pp\b|"
    r"usd\b|eur\b|dollars?\b|毫秒|秒|分钟|小时|倍|元|美元|万|亿|个百分点)"
    rf"|[$€£¥]\s*{_NUMBER}",
    re.IGNORECASE,
)
_DECIMAL = re.compile(r"\d+\.\d+")
_OUTCOME = re.compile(
    r"\b(improv\w*|increas\w*|decreas\w*|reduc\w*|outperform\w*|achiev\w*|reach\w*|scor\w*|accuracy|"
    r"precision|recall|rose|fell|gain\w*|drop\w*|yield\w*)\b|提高|提升|降低|减少|达到|超过|准确率|增长|下降|得分",
    re.IGNORECASE,
)
_LIST_MARK = re.compile(
    r"^\s*(?:[-*•]|\d+[.)、]|step\s*\d+[:.]|第?[一二三四五六七八九十\d]+(?:步[、.:：]?|[、.:：]))\s*",
    re.IGNORECASE,
)


async def synth_plan(
    settings: Settings,
    *,
    documents: Path,
    out: Path,
    run_agent: bool = False,
    min_alignment: float = 0.6,
    concurrency: int = 4,
    progress: bool = True,
) -> Summary:
    """Tasks and hindsight plans from the documents under ``documents``, appended to ``out``."""
    if not documents.exists():
        raise ConfigError(f"{documents} does not exist")
    if not 0.0 <= min_alignment <= 1.0:
        raise ConfigError(f"min_alignment must be between 0 and 1, not {min_alignment}")
    problems: list[str] = []
    files = list(iter_files([documents], problems))
    if not files:
        raise ConfigError(
            f"{documents} holds no document the index reads" + "".join(f"; {p}" for p in problems[:5])
        )
    drafts = _Drafts(out.with_name(out.name + TASKS_SUFFIX)) if run_agent else None
    async with open_context(settings, out, search=run_agent) as ctx:

        async def step(item: dict[str, Any], tally: Tally) -> Outcome:
            return await plan_item(ctx, item, tally, drafts=drafts, min_alignment=min_alignment)

        jsonl = any(file.suffix.lower() == JSONL_SUFFIX for file in files)
        return await run_items(
            document_items(documents, files),
            step,
            out,
            concurrency=concurrency,
            label="synth plan",
            progress=progress,
            total=None if jsonl else len(files),
        )


def document_items(folder: Path, files: list[Path]) -> Iterator[dict[str, Any]]:
    """One item per document: ``{"id": relative path, "path"}``; a JSONL record also carries its text
    (reading those files is cheap, and their records need ids before any step runs)."""
    root = folder.resolve() if folder.is_dir() else folder.resolve().parent
    for file in files:
        relative = file.relative_to(root).as_posix() if file.is_relative_to(root) else str(file)
        if file.suffix.lower() != JSONL_SUFFIX:
            yield {"id": relative, "path": str(file)}
            continue
        for document in load_file(file, file.read_bytes(), []):
            own, _, fragment = document.url.partition("#")
            item_id = f"{relative}#{fragment if own == file.as_uri() else document.url}"
            yield {"id": item_id, "path": str(file), "title": document.title, "text": document.text}


def read_document(item: dict[str, Any]) -> tuple[str, str]:
    """``(title, text)`` of an item's document, through the index's loaders."""
    if "text" in item:
        return str(item.get("title") or ""), str(item["text"])
    path = Path(item["path"])
    errors: list[str] = []
    documents = load_file(path, path.read_bytes(), errors)
    if not documents:
        raise ConfigError(errors[0] if errors else f"{path}: no document")
    return documents[0].title, "\n\n".join(document.text for document in documents)


async def plan_item(
    ctx: SynthContext,
    item: dict[str, Any],
    tally: Tally,
    *,
    drafts: _Drafts | None = None,
    min_alignment: float = 0.6,
) -> Outcome:
    """One document → a task, its plan and (optionally) an agent run that follows it."""
    title, text = read_document(item)
    stripped = strip_results(text)
    language = language_of(stripped or text)
    words = word_count(stripped)
    if words < MIN_WORDS:
        return Outcome.drop("too_short", words=words, min_words=MIN_WORDS)
    draft = drafts.get(item["id"]) if drafts else None
    if draft is None:
        try:
            reply = await ctx.model(tally).json(
                prompt("plan", language, title=title, document=stripped[:MAX_PROMPT_CHARS]),
                PLAN_SCHEMA,
                check=lambda data: check_reply(data, language),
            )
        except BadReply as exc:
            return Outcome.drop("bad_reply", problems=str(exc))
        steps = clean_plan(reply["plan"])
        if len(steps) < MIN_STEPS:
            return Outcome.drop("plan_too_short", steps=len(steps))
        draft = {"task": " ".join(str(reply["task"]).split()), "plan": steps}
        if drafts:
            drafts.put(item["id"], draft)
    record: dict[str, Any] = {
        "task_id": plan_task_id(item["id"]),
        "prompt": draft["task"],
        "plan": draft["plan"],
        "reference": text,
        "source": item["id"],
        "language": language,
    }
    if drafts is None:
        return Outcome.keep(record, steps=len(draft["plan"]))
    run = await ctx.run_agent(item["id"], draft["task"], tally)
    if not run.finished:
        raise RuntimeError(f"the agent run in {run.path} ended {run.status}; a rerun resumes it")
    alignment = plan_alignment(run, draft["plan"])
    if alignment.score < min_alignment:
        return Outcome.drop("deviates_from_plan", run_dir=str(run.path), **alignment.to_dict())
    record |= {"run_dir": str(run.path), "alignment": alignment.to_dict()}
    return Outcome.keep(record, score=round(alignment.score, 4))


def plan_task_id(item_id: str) -> str:
    """A task id for bench and judge files: the document's path, made one readable token."""
    return "plan-" + re.sub(r"[^\w.-]+", "_", item_id).strip("_")


MIN_TASK_WORDS = 4
"""A request shorter than this is an echo of the prompt's form (``"The task"``), not a task."""
_PLACEHOLDER = re.compile(r"<?\s*(the\s+)?(task|plan|request|step\s*\d*)\s*>?|<[^<>]*>", re.I)


def check_reply(data: dict[str, Any], language: Language) -> list[str]:
    """What the model must fix: the fields, 3–10 short steps, and the document's language."""
    problems = require(data, task=str, plan=list)
    if problems:
        return problems
    plan = data["plan"]
    if not all(isinstance(step, str) for step in plan):
        return ['every item of "plan" must be a string']
    if len(plan) > MAX_STEPS:
        problems.append(f'"plan" has {len(plan)} steps; give at most {MAX_STEPS} high-level steps')
    long = [str(n) for n, step in enumerate(plan, 1) if len(step) > MAX_STEP_CHARS]
    if long:
        problems.append(f"steps {', '.join(long)} are longer than {MAX_STEP_CHARS} characters")
    if language_of(data["task"]) != language:
        name = "Chinese" if language == "zh" else "English"
        problems.append(f'"task" must be written in {name}, the language of the document')
    if word_count(data["task"]) < MIN_TASK_WORDS or _PLACEHOLDER.fullmatch(data["task"].strip()):
        problems.append('"task" must be the request itself, a full sentence, not a placeholder')
    return problems


def clean_plan(steps: list[Any]) -> list[str]:
    """Steps without list marks or extra spaces, empty and repeated ones removed."""
    clean: list[str] = []
    seen: set[str] = set()
    for step in steps:
        text = " ".join(_LIST_MARK.sub("", str(step)).split())
        if text and text.lower() not in seen:
            seen.add(text.lower())
            clean.append(text)
    return clean


def word_count(text: str) -> int:
    """Latin words plus half the CJK characters (a Chinese word is about two characters)."""
    cjk = len(re.findall(r"[\u3400-\u9fff\uf900-\ufaff]", text))
    return len(re.findall(r"[A-Za-z0-9]+", text)) + cjk // 2


def strip_results(text: str) -> str:
    """``text`` without its results, tables and figures (the rule is in the module docstring)."""
    text = _HTML_TABLE.sub("", text)
    kept: list[str] = []
    skip_level: int | None = None
    in_code = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_code = not in_code
        heading = None if in_code else _HEADING.match(line)
        if heading:
            level = len(heading.group(1))
            if skip_level is not None and level <= skip_level:
                skip_level = None
            if skip_level is None:
                kept.append(line)
                if _RESULT_HEADING.fullmatch(_SECTION_NUMBER.sub("", heading.group(2)).strip(" :：*_")):
                    skip_level = level
            continue
        if skip_level is not None:
            continue
        if in_code or _FENCE.match(line):
            kept.append(line)
        elif not (line.lstrip().startswith("|") or _CAPTION.match(line)):
            kept.append(_strip_sentences(_IMAGE.sub("", line)))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


def _strip_sentences(line: str) -> str:
    if not line.strip():
        return line
    kept = ""
    for sentence in _SENTENCE.split(line):
        if sentence.strip() and not _reports_quantity(sentence):
            kept += (" " if kept and kept[-1] in ".!?" else "") + sentence.strip()
    return kept


def _reports_quantity(sentence: str) -> bool:
    return bool(
        _PERCENT.search(sentence)
        or _UNIT.search(sentence)
        or (_DECIMAL.search(sentence) and _OUTCOME.search(sentence))
    )


class _Drafts:
    """Tasks already written, by item id (``<out>.tasks.jsonl``): a resumed agent run gets the same
    task, and the model is not asked again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._drafts: dict[str, dict[str, Any]] = {}
        if path.is_file() and path.stat().st_size:
            with path.open("rb+") as handle:  # end a line torn by a kill, so the next one stands alone
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    handle.write(b"\n")
            for _, value in read_jsonl(path):
                if isinstance(value, dict) and isinstance(value.get("plan"), list) and value.get("task"):
                    self._drafts[str(value.get("id"))] = value

    def get(self, item_id: str) -> dict[str, Any] | None:
        return self._drafts.get(item_id)

    def put(self, item_id: str, draft: dict[str, Any]) -> None:
        self._drafts[item_id] = draft
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"id": item_id, **draft}, ensure_ascii=False) + "\n"
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
