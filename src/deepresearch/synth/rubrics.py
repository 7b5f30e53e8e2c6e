"""RL tasks from synthesised data: the judge's two-step reverse rubric synthesis as one more pipeline.

``judge.synth`` already writes tasks with rubrics from seeds (resumable, with its own file of discarded
seeds). This module lets it read what the other pipelines write as well, so one tool builds a whole RL
task set: a ``synth plan`` record becomes a seed with its task as the topic, its plan as the outline and
its reference document as the document; a ``synth kg``/``synth walk`` record its question as the topic
and its evidence as the document. A file that is already a seeds file is used as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deepresearch.config import Settings
from deepresearch.errors import ConfigError
from deepresearch.judge.synth import SynthSeed
from deepresearch.synth.engine import read_jsonl
from deepresearch.synth.model import language_of

MAX_DOCUMENT_CHARS = 24_000


def seed_of(record: dict[str, Any]) -> SynthSeed | None:
    """The seed a pipeline's record stands for; ``None`` when it has no task text."""
    topic = str(record.get("topic") or record.get("prompt") or record.get("question") or "").strip()
    item_id = str(record.get("id") or record.get("task_id") or record.get("source_id") or "").strip()
    if not topic or not item_id:
        return None
    document = str(record.get("document") or record.get("reference") or "")
    if not document:
        evidence = [
            str(fact.get("quote") or fact.get("fact") or "")
            for fact in record.get("facts") or []
            if isinstance(fact, dict)
        ]
        for edge in record.get("edges") or []:
            if isinstance(edge, dict):
                evidence += [
                    str(e.get("text") or e.get("snippet") or "")
                    for e in edge.get("evidence") or []
                    if isinstance(e, dict)
                ]
        document = "\n\n".join(text for text in evidence if text)
    language = record.get("language")
    outline = record.get("outline") or record.get("plan") or []
    return SynthSeed(
        id=item_id,
        topic=topic,
        domain=str(record.get("domain") or ""),
        language=language if language in ("en", "zh") else language_of(topic),
        document=document[:MAX_DOCUMENT_CHARS],
        outline=[str(step) for step in outline if str(step).strip()],
        source=str(record.get("source") or record.get("url") or ""),
    )


def seeds_file(source: Path, out: Path) -> tuple[Path, list[str]]:
    """``source`` itself when every line is a valid seed, else its records as seeds in
    ``<out>.seeds.jsonl`` (rewritten each time: it is derived), with the lines that could not be used."""
    problems: list[str] = []
    seeds: list[SynthSeed] = []
    native = True
    for number, value in read_jsonl(source):
        if isinstance(value, ValueError) or not isinstance(value, dict):
            problems.append(
                f"{source}:{number}: {value if isinstance(value, ValueError) else 'not a JSON object'}"
            )
            continue
        try:
            seeds.append(SynthSeed.model_validate(value))
            continue
        except ValueError:
            native = False
        seed = seed_of(value)
        if seed is None:
            problems.append(f"{source}:{number}: no task text (prompt, question or topic) or no id")
        else:
            seeds.append(seed)
    if not seeds:
        raise ConfigError(f"{source}: no seed or synthesised task could be read ({'; '.join(problems[:3])})")
    if native and not problems:
        return source, problems
    derived = out.with_name(out.name + ".seeds.jsonl")
    derived.parent.mkdir(parents=True, exist_ok=True)
    derived.write_text("".join(seed.model_dump_json() + "\n" for seed in seeds), encoding="utf-8")
    return derived, problems


async def synth_rubrics(
    settings: Settings, *, source: Path, out: Path, threshold: float = 0.7, concurrency: int = 4
) -> tuple[Any, list[str]]:
    """Tasks with rubrics for RL from seeds or another pipeline's output; the report and the problems."""
    from deepresearch.judge.commands import synth_rubrics as synthesize

    seeds, problems = seeds_file(source, out)
    report = await synthesize(settings, seeds=seeds, out=out, threshold=threshold, concurrency=concurrency)
    return report, problems
