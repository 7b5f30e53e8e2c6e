"""Run the guided strategy on an ``Agent``: its recorder, state, tools and budgets, the code's plan.

The phases, each recorded before the next begins so that ``resume`` skips what is done:

1. ``search``: the question, through the web tool (a step the code takes, recorded as a tool call);
2. the plan: one JSON call for section headings and a query each, shown the titles found;
3. ``subsearch``: the plan's queries; 4. ``open``: the best pages (the question's first hits, then
   the best match for each query);
5. one JSON call per section (the overview first) on the passages BM25 picks for it from the pages
   read, judged, or replaced by those passages quoted;
6. ``answer``: the report, recorded as the final assistant message.

A budget (tokens, cost, time) that runs out stops the model calls, not the run: the remaining
sections are quoted. A model error fails the run like any other (``resume`` continues it).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from deepresearch.agent.loop import Agent
from deepresearch.agent.stops import Finished
from deepresearch.config import Settings
from deepresearch.events import GuidedCall, LLMCall
from deepresearch.guided import writer
from deepresearch.guided.judge import Paragraph, verdict
from deepresearch.guided.select import Window, select, terms, windows
from deepresearch.llm.messages import Completion, Message, ToolCall, Usage
from deepresearch.report import extract_answer
from deepresearch.sources import Source

WEB_TOOL = "batch_web_surfer"
LOCAL_SAMPLING = {"temperature": 0.0, "repeat_penalty": 1.2}
"""llama.cpp sampling for the guided calls to the embedded model: greedy with a repetition penalty
gave the bundled 135M model its most grounded sentences (fewer loops, fewer inventions)."""
MIN_POINT_TERMS = 6
"""Content words one sentence needs (a section needs ``judge.MIN_TERMS``)."""


class JsonModel(Protocol):
    async def complete(
        self, messages: Sequence[Message], *, schema: dict[str, Any], sampling: dict[str, Any] | None = None
    ) -> Completion: ...


@dataclass(frozen=True)
class GuidedConfig:
    """How much the guided run reads and writes; ``for_window`` sizes it to the model's context."""

    sections: int = 2
    """Sections the model plans besides the overview."""
    pages: int = 8
    """Pages opened."""
    passages: int = 3
    """Passages shown for one section."""
    paragraphs: int = 2
    """Most paragraphs in one section."""
    paragraph_chars: int = 500
    search_results: int = 8
    per_passage: bool = True
    """Ask for one sentence per passage instead of a whole section per call: measured on the bundled
    135M model, whole sections were rejected 4 times in 4 (invented, repeated), single facts less often."""
    sampling: dict[str, Any] = field(default_factory=dict)
    """Request fields for the guided calls (``temperature``, llama.cpp's ``repeat_penalty``)."""

    @classmethod
    def for_settings(cls, settings: Settings) -> GuidedConfig:
        """Sized for the run's model: its window, whether it is the bundled 135M, its sampling."""
        window = settings.local_context if settings.is_local else settings.context_upper
        sampling = LOCAL_SAMPLING if settings.is_local else {}
        return cls.for_model(window, tiny=settings.is_bundled_model, sampling=sampling)

    @classmethod
    def for_model(cls, window: int, *, tiny: bool, sampling: dict[str, Any] | None = None) -> GuidedConfig:
        """Sized to the model's context ``window``; a ``tiny`` model (the bundled 135M) writes one
        sentence per passage."""
        sampling = dict(sampling or {})
        if window < 16_384:
            return cls(per_passage=tiny, sampling=sampling)
        return cls(
            sections=4,
            pages=10,
            passages=6,
            paragraphs=3,
            paragraph_chars=900,
            per_passage=tiny,
            sampling=sampling,
        )


async def run_guided(
    agent: Agent,
    model: JsonModel,
    config: GuidedConfig,
    workspace: Path,
    unacted: Completion | None = None,
) -> Finished:
    """Drive the run to its report (``Finished`` with origin ``guided``); resumes where it stopped.
    ``workspace`` is where the web tool saved the pages it opened."""
    state = agent.state
    if unacted is not None:  # the report was recorded as the answer; the process died before writing it
        return Finished(extract_answer(unacted.content), origin="guided")
    if state.pending_calls:
        await agent.act_on_tools(state.step, state.calls)
    question, language = state.question, state.language
    phases = state.guided.setdefault("phases", [])
    if "search" not in phases:
        await _take(
            agent, "search", _web_call("batch_search", queries=[question], topk=config.search_results)
        )
    titles = [s.title for s in state.sources if s.step == _phase_step(agent, "search") and s.title][:6]
    if "plan" not in state.guided:
        await _plan(agent, model, config, titles)
    plan = [writer.Section(s["heading"], s["query"]) for s in state.guided["plan"]["sections"]]
    queries = [q for q in dict.fromkeys(s.query for s in plan) if set(terms(q)) != set(terms(question))]
    if queries and "subsearch" not in phases:
        await _take(
            agent, "subsearch", _web_call("batch_search", queries=queries, topk=config.search_results)
        )
    if "open" not in phases:
        urls = choose_pages(list(state.sources), [question, *queries], config.pages)
        if urls:
            await _take(agent, "open", _web_call("batch_open", urls=urls))
    pool = read_pool(workspace, list(state.sources))
    sections = [writer.overview(question, language), *plan]
    done: dict[str, dict[str, Any]] = state.guided.setdefault("sections", {})
    for index, section in enumerate(sections):
        if str(index) not in done:
            used = [p for record in done.values() for p in record.get("passages", [])]
            await _section(agent, model, config, index, section, pool, used)
    report = writer.assemble(question, [done[str(i)] for i in range(len(sections))], language)
    agent.record(
        LLMCall(
            step=state.step + 1,
            phase="answer",
            message={"role": "assistant", "content": report},
            usage={},
            finish_reason="stop",
        )
    )
    return Finished(report, origin="guided")


def choose_pages(sources: Sequence[Source], queries: Sequence[str], limit: int) -> list[str]:
    """The pages to open: the question's first hits in their order (two thirds), then, query by
    query in turn, the unopened hit whose title and snippet match it best."""
    candidates = [s for s in sources if not s.fetched]
    first_step = min((s.step for s in candidates), default=0)
    picked = [s for s in candidates if s.step == first_step][: max(1, limit * 2 // 3)]
    rest = [
        Window(s.key, s.title, 0, 0, s.snippet, Counter(terms(f"{s.title} {s.snippet}")))
        for s in candidates
        if s not in picked
    ]
    while len(picked) < limit and rest:
        progressed = False
        for query in queries:
            best = select(rest, query, 1)
            if best and len(picked) < limit:
                picked.append(next(s for s in candidates if s.key == best[0].key))
                rest = [w for w in rest if w.key != best[0].key]
                progressed = True
        if not progressed:
            break
    return [s.url for s in picked]


def read_pool(workspace: Path, sources: Sequence[Source]) -> list[Window]:
    """Windows of every page the run opened (saved whole under ``pages/`` by the web tool)."""
    pool: list[Window] = []
    for source in sources:
        if not source.fetched:
            continue
        try:
            text = (workspace / "pages" / f"{source.key}.md").read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        pool.extend(windows(source.key, source.title, text))
    return pool


async def _take(agent: Agent, phase: str, call: ToolCall) -> None:
    """Record a step the code takes as a tool call in the conversation, then run it."""
    n = agent.state.step + 1
    agent.record(
        LLMCall(
            step=n,
            phase=phase,
            message={"role": "assistant", "content": "", "tool_calls": [call.to_wire()]},
            usage={},
            finish_reason="tool_calls",
        )
    )
    await agent.act_on_tools(n, [call])


def _phase_step(agent: Agent, phase: str) -> int:
    """The step at which ``phase`` was taken (steps count only the conversation's calls)."""
    phases = agent.state.guided.get("phases", [])
    return phases.index(phase) + 1 if phase in phases else 0


def _web_call(action: str, **arguments: Any) -> ToolCall:
    return ToolCall(f"call_{uuid.uuid4().hex[:12]}", WEB_TOOL, json.dumps({"action": action, **arguments}))


async def _plan(agent: Agent, model: JsonModel, config: GuidedConfig, titles: list[str]) -> None:
    state = agent.state
    fallback = writer.fallback_plan(titles, state.question, config.sections)
    if _budget_spent(agent):
        result: dict[str, Any] = {"sections": [vars(s) for s in fallback], "why": "a budget is used up"}
        agent.record(GuidedCall(step=state.step, purpose="plan", result=result))
        return
    messages = writer.plan_messages(state.question, titles, config.sections, state.language)
    completion, duration = await _ask(model, messages, writer.plan_schema(config.sections), config.sampling)
    sections = writer.read_plan(completion.content, state.question, config.sections, titles)
    why = None if sections else "the plan named no usable section"
    result = {"sections": [vars(s) for s in (sections or fallback)], "why": why}
    agent.record(_call_event(state.step, "plan", 0, messages, [completion], duration, result))


async def _section(
    agent: Agent,
    model: JsonModel,
    config: GuidedConfig,
    index: int,
    section: writer.Section,
    pool: list[Window],
    used: list[dict[str, Any]],
) -> None:
    state = agent.state
    taken = [Window(u["key"], "", u["start"], u["end"], "") for u in used]
    fresh = [w for w in pool if not any(w.overlaps(t) for t in taken)]
    query = f"{section.heading} {section.query}" if index else section.query
    prior = _search_rank_prior(state.sources) if index == 0 else None  # the overview answers the question
    passages = select(fresh, query, config.passages, prior=prior) or select(pool, query, config.passages)
    result: dict[str, Any] = {
        "heading": section.heading,
        "passages": [{"key": w.key, "start": w.start, "end": w.end} for w in passages],
    }
    if not passages:
        result |= {"paragraphs": [], "kept": "none", "why": "no passage of the pages read matches it"}
        agent.record(GuidedCall(step=state.step, purpose="section", index=index, result=result))
        return
    if _budget_spent(agent):
        result |= _kept(writer.quoted(passages), "quoted", "a budget is used up")
        agent.record(GuidedCall(step=state.step, purpose="section", index=index, result=result))
        return
    if config.per_passage:
        await _section_by_points(agent, model, config, index, section, passages, result)
        return
    keys = [w.key for w in passages]
    messages = writer.section_messages(state.question, section, passages, config.paragraphs, state.language)
    schema = writer.section_schema(keys, config.paragraphs, config.paragraph_chars)
    completion, duration = await _ask(model, messages, schema, config.sampling)
    drafted = writer.read_section(completion.content, keys)
    kept, why = verdict(drafted, passages, heading=section.heading, question=state.question)
    if why is None and completion.finish_reason == "length":
        why = "cut off by the output limit"
    result |= _kept(kept, "model", None) if why is None else _kept(writer.quoted(passages), "quoted", why)
    agent.record(_call_event(state.step, "section", index, messages, [completion], duration, result))


async def _section_by_points(
    agent: Agent,
    model: JsonModel,
    config: GuidedConfig,
    index: int,
    section: writer.Section,
    passages: list[Window],
    result: dict[str, Any],
) -> None:
    """One call per passage for one sentence each; the sentences that pass make the paragraph, and
    the best of the passages whose sentence failed is quoted after it (what the section must not lose)."""
    state = agent.state
    messages, completions, sentences, verdicts, missed = [], [], [], [], []
    duration = 0.0
    for window in passages:
        prompt = writer.point_messages(window, state.language)
        completion, took = await _ask(model, prompt, writer.point_schema(), config.sampling)
        messages.extend(prompt)
        completions.append(completion)
        duration += took
        sentence = writer.read_point(completion.content)
        _, why = verdict(
            [Paragraph(sentence, [window.key])],
            [window],
            heading=section.heading,
            question=state.question,
            min_terms=MIN_POINT_TERMS,
        )
        verdicts.append(why)
        if why is None and completion.finish_reason != "length":
            sentences.append(f"{sentence.rstrip()} \\cite{{{window.key}}}")
        else:
            missed.append(window)
    if sentences:
        result |= _kept([Paragraph(" ".join(sentences), [])], "model", None)
        result["paragraphs"] += [
            p | {"quoted": True} for p in _kept(writer.quoted(missed, 1), "", None)["paragraphs"]
        ]
    else:
        why = "; ".join(dict.fromkeys(w for w in verdicts if w)) or "cut off by the output limit"
        result |= _kept(writer.quoted(passages), "quoted", why)
    result["verdicts"] = verdicts
    agent.record(_call_event(state.step, "section", index, messages, completions, duration, result))


def _kept(paragraphs: list[Paragraph], kept: str, why: str | None) -> dict[str, Any]:
    return {"paragraphs": [{"text": p.text, "keys": p.keys} for p in paragraphs], "kept": kept, "why": why}


async def _ask(
    model: JsonModel, messages: list[dict[str, Any]], schema: dict[str, Any], sampling: dict[str, Any]
) -> tuple[Completion, float]:
    started = time.monotonic()
    completion = await model.complete(messages, schema=schema, sampling=sampling or None)
    return completion, time.monotonic() - started


def _call_event(
    step: int,
    purpose: str,
    index: int,
    messages: list[dict[str, Any]],
    completions: list[Completion],
    duration: float,
    result: dict[str, Any],
) -> GuidedCall:
    usage = Usage()
    for completion in completions:
        usage.add(completion.usage)
    return GuidedCall(
        step=step,
        purpose=purpose,  # type: ignore[arg-type]
        index=index,
        messages=messages,
        reply="\n".join(c.content for c in completions),
        usage=usage.to_dict(),
        finish_reason=completions[-1].finish_reason,
        duration_s=round(duration, 3),
        result=result,
    )


def _search_rank_prior(sources: Iterable[Source]) -> dict[str, float]:
    """A boost for the pages the search engine ranked first for the question (``1 + 1/(rank + 1)``):
    BM25 over a few windows knows less about which page answers than the index's ranking did."""
    read = [s for s in sources if s.fetched]
    first_step = min((s.step for s in read), default=0)
    ranked = [s.key for s in read if s.step == first_step]
    return {key: 1 + 1 / (rank + 2) for rank, key in enumerate(ranked)}


def _budget_spent(agent: Agent) -> bool:
    """Whether a token, cost or time budget is used up (steps do not apply: the phases are fixed)."""
    budget = agent.config.budget
    return bool(budget.exhausted(next_step=0, usage=agent.state.usage, elapsed=agent.elapsed()))
