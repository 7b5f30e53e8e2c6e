"""Start or resume a research run: build the parts from ``Settings``, run the loop, write the report.

This is the one place that knows every component. The CLI, and later the server and the benchmark
runner, call ``research`` / ``resume`` and get a ``RunResult``; they never assemble an agent.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from deepresearch.agent import prompts
from deepresearch.agent.budget import Budget
from deepresearch.agent.context import ContextPolicy
from deepresearch.agent.history import History
from deepresearch.agent.loop import Agent, LoopConfig
from deepresearch.agent.state import RunState, replay
from deepresearch.agent.stops import Finished
from deepresearch.config import Settings
from deepresearch.errors import ConfigError, DeepResearchError, RunStoreError
from deepresearch.events import (
    ErrorEvent,
    Event,
    LLMCall,
    ReportWritten,
    RunFinished,
    RunResumed,
    RunStarted,
    now_iso,
)
from deepresearch.llm.messages import Completion
from deepresearch.report import CitedText, Language, render_html, render_markdown, resolve_citations
from deepresearch.runs import (
    Outcome,
    Recorder,
    RunDir,
    RunInfo,
    RunStore,
    new_run_dir,
    read_info,
    run_id_for,
)
from deepresearch.services import ProgressCallback, Services
from deepresearch.tools.base import ToolContext
from deepresearch.tools.registry import Registry, default_tools

logger = logging.getLogger(__name__)

EventCallback = Callable[[Event], None]
LOCAL_GUIDED_SAMPLING = {"temperature": 0.0, "repeat_penalty": 1.2}
"""llama.cpp sampling for the guided calls to the embedded model: greedy with a repetition penalty
gave the bundled 135M model its most grounded sentences (fewer loops, fewer inventions)."""
_LANGUAGE_NAMES = {"en": "English", "zh": "中文"}


@dataclass
class RunResult:
    run_dir: Path
    status: str
    report: str = ""
    origin: str = ""
    steps: int = 0
    usage: dict[str, Any] = field(default_factory=dict)
    citations: dict[str, int] = field(default_factory=dict)
    outcome: str = "report"
    """``report``, ``extractive``, ``uncited`` or ``empty`` (``runs.RunInfo.outcome``)."""
    outcome_reason: str = ""

    @property
    def report_path(self) -> Path:
        return RunDir(self.run_dir).report_path


def _language(settings: Settings, question: str) -> str:
    return settings.language if settings.language != "auto" else prompts.detect_language(question)


def system_prompt(language: str, today: str, *, small: bool = False) -> str:
    """The system prompt; ``small`` is the short one for models on this machine (the full one took
    ~3.6k of an 8k window and a 135M model follows a short list better than a long essay)."""
    name = f"system_small_{language}.j2" if small else f"system_{language}.j2"
    return prompts.render(name, date=today, language_name=_LANGUAGE_NAMES[language])


async def research(
    question: str,
    settings: Settings,
    *,
    on_event: EventCallback | None = None,
    tools: Registry | None = None,
    stop: asyncio.Event | None = None,
    on_progress: ProgressCallback | None = None,
) -> RunResult:
    """Run a new research on ``question``; the run directory is ``settings.out`` or a new one.

    ``tools`` replaces the default registry (``default_tools()`` plus your own, say). Setting ``stop``
    ends the run after the step in progress, as ``cancelled`` and resumable. ``on_progress`` hears
    how far the embedded model has read a long prompt.
    """
    if not question.strip():
        raise ConfigError("the question is empty")
    settings = settings.for_local_model()
    services = await Services.open(settings, on_progress)  # a bad setting fails before a run dir exists
    path = settings.out or new_run_dir(settings.runs_dir)
    run_id = run_id_for(path)
    try:
        tools = services.registry(tools if tools is not None else default_tools())
        store = RunStore.create(path)
    except BaseException:
        await services.aclose()
        raise
    language = _language(settings, question)
    info = RunInfo(
        id=run_id,
        question=question,
        model=settings.model or "",
        search=settings.search,
        started=now_iso(),
        pid=os.getpid(),
        strategy=settings.effective_strategy,
    )
    recorder = Recorder(store, info, on_event)
    today = datetime.now(UTC).date().isoformat()
    messages = [
        {"role": "system", "content": system_prompt(language, today, small=settings.is_local)},
        {"role": "user", "content": question},
    ]
    state = RunState(history=History(services.count_tokens, replay_reasoning=settings.replay_reasoning))
    started = RunStarted(
        run_id=run_id,
        question=question,
        model=settings.model or "",
        search=settings.search,
        language=language,
        tool_mode=settings.effective_tool_mode,
        strategy=settings.effective_strategy,
        tools=list(tools),
        messages=messages,
        settings=settings.public(),
    )
    try:
        recorder.record(started)
    except BaseException:
        await services.aclose()
        store.close()
        raise
    state.apply(started)
    return await _drive(store, info, recorder, state, settings, services, tools, stop)


async def resume(
    run_dir: Path,
    settings: Settings | None = None,
    *,
    on_event: EventCallback | None = None,
    tools: Registry | None = None,
    stop: asyncio.Event | None = None,
    on_progress: ProgressCallback | None = None,
) -> RunResult:
    """Continue an interrupted run from its last completed step (tool calls already done are not rerun).

    The run keeps the model, search backend and settings it started with; ``settings`` supplies the
    key (never stored) and may raise the budgets.
    """
    store = RunStore.open(run_dir)
    try:
        loaded = store.load_events()
        first = loaded.events[0] if loaded.events else None
        if not isinstance(first, RunStarted):
            raise RunStoreError(f"{run_dir}/events.jsonl does not start with run_started")
        recorded = Settings.model_validate(
            {k: v for k, v in first.settings.items() if k in Settings.model_fields}
        )
        # the set fields as objects (a dump would turn McpServer and PriceOverride entries into dicts)
        overrides = (
            {n: getattr(settings, n) for n in settings.model_fields_set} if settings is not None else {}
        )
        effective = recorded.model_copy(update={k: v for k, v in overrides.items() if k not in ("out",)})
        if settings is not None and settings.api_key is not None:
            effective.api_key = settings.api_key
        effective = effective.for_local_model()
        if any(isinstance(e, RunFinished) and e.status == "done" for e in loaded.events):
            raise RunStoreError(f"{run_dir} already finished; its report is {RunDir(run_dir).report_path}")
        unacted = _unacted_reply(loaded.events)
        services = await Services.open(effective, on_progress)
    except BaseException:
        store.close()
        raise
    try:
        state = replay(
            loaded.events,
            History(services.count_tokens, replay_reasoning=effective.replay_reasoning),
            path=store.events_path,
        )
        try:
            info = read_info(run_dir)
        except RunStoreError:
            info = RunInfo(id=state.run_id, question=state.question, started=first.ts)
        info.status, info.pid, info.ended, info.error = "running", os.getpid(), None, None
        recorder = Recorder(store, info, on_event)
        tools = services.registry(tools if tools is not None else default_tools())
        resumed = RunResumed(step=state.step, pending_calls=[c.id for c in state.pending_calls])
        recorder.record(resumed)
        state.apply(resumed)
    except BaseException:
        await services.aclose()
        store.close()
        raise
    return await _drive(store, info, recorder, state, effective, services, tools, stop, unacted)


def _unacted_reply(events: list[Event]) -> Completion | None:
    """The model's last reply, when it was text the run never acted on.

    A kill or a failure between recording that reply and what follows it (writing the report, or a
    nudge) leaves it last in the log. Resume acts on it again instead of asking the model once more,
    which would add a step the interrupted run never took.
    """
    for event in reversed(events):
        if isinstance(event, RunResumed | RunFinished | ErrorEvent | ReportWritten):
            continue  # how earlier sessions ended, or a report the run did not finish delivering
        if isinstance(event, LLMCall) and not event.message.get("tool_calls"):
            return Completion(
                content=str(event.message.get("content") or ""), finish_reason=event.finish_reason
            )
        return None
    return None


async def _drive(
    store: RunStore,
    info: RunInfo,
    recorder: Recorder,
    state: RunState,
    settings: Settings,
    services: Services,
    tools: Registry,
    stop: asyncio.Event | None,
    unacted: Completion | None = None,
) -> RunResult:
    try:
        info.sandbox, info.shell_limits = services.sandbox, services.shell_limits
        info.local_threads = services.local_threads

        def make_context(step: int, call_id: str) -> ToolContext:
            return ToolContext(
                workspace=store.workspace,
                sources=state.sources,
                state=state.tool_state,
                step=step,
                call_id=call_id,
                search=services.search,
                fetcher=services.fetcher,
                shell=services.shell,
                workspace_max_bytes=settings.workspace_max_mb * 1024 * 1024,
            )

        loop_config = LoopConfig(
            budget=Budget(
                max_steps=settings.max_steps,
                max_total_tokens=settings.max_total_tokens,
                max_cost_usd=settings.max_cost,
                max_wall_seconds=settings.max_wall_time,
            ),
            policy=ContextPolicy(
                upper=settings.context_upper,
                lower=settings.context_lower,
                fixed_tokens=services.count_tokens(json.dumps([t.schema() for t in tools.values()])),
            ),
            tool_result_max_chars=settings.tool_result_max_chars,
            encoded_messages=settings.effective_tool_mode == "native",
        )
        agent = Agent(
            model=services.client,
            tools=tools,
            state=state,
            recorder=recorder,
            config=loop_config,
            make_context=make_context,
            stop=stop,
        )
        try:
            store.write_info(info)
            if state.strategy == "guided":
                from deepresearch.guided.driver import GuidedConfig, run_guided

                window = settings.local_context if settings.is_local else settings.context_upper
                sampling = LOCAL_GUIDED_SAMPLING if settings.is_local else {}
                config = GuidedConfig.for_model(window, tiny=settings.is_bundled_model, sampling=sampling)
                finished = await run_guided(agent, services.client, config, store.workspace, unacted)
            else:
                finished = await _run_agent(agent, unacted)
            cited, markdown = await _write_report(finished, recorder, state)
        except BaseException as exc:
            raised = _surfaced(exc, store.path)
            status: Literal["failed", "cancelled"] = "failed" if isinstance(exc, Exception) else "cancelled"
            info.status, info.ended = status, now_iso()
            info.error = (
                " ".join(f"{type(raised).__name__}: {raised}".split()) if status == "failed" else None
            )
            _wind_up(recorder, state, info, status, derived=not isinstance(raised, RunStoreError))
            services.explain(raised)
            raised.add_note(f"run directory: {store.path} (continue with: deepresearch resume {store.path})")
            if raised is exc:
                raise
            raise raised  # noqa: B904 - its cause (the OSError) stays; the group is its context
        return await _deliver(finished, cited, markdown, store, info, recorder, state)
    finally:
        await services.aclose()
        store.close()


async def _run_agent(agent: Agent, unacted: Completion | None) -> Finished:
    """``agent.run()``, after acting on a reply the interrupted session recorded but never acted on."""
    if unacted is not None:
        try:
            agent.act_on_text(agent.state.step, unacted)
        except Finished as stop:
            return stop
    return await agent.run()


def _surfaced(exc: BaseException, run_dir: Path) -> BaseException:
    """What the caller should see of ``exc``: one error a person can act on, not a task group.

    A step's tool calls run in a task group, so a result that cannot be recorded, or a long output
    that cannot be saved in the workspace, arrives as a group. When the group holds nothing but our
    errors and storage failures, the first of them is raised; a storage ``OSError`` (disk full, quota,
    file too large, I/O error, read-only) becomes a ``RunStoreError``. Anything else stays as it is.
    """
    leaf = exc
    if isinstance(exc, BaseExceptionGroup):
        ours, rest = exc.split(lambda e: isinstance(e, DeepResearchError) or _storage_failure(e))
        if ours is None or rest is not None:
            return exc
        leaf = ours
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
    if isinstance(leaf, OSError) and _storage_failure(leaf):
        error = RunStoreError(f"cannot write in {run_dir}: {leaf.strerror or leaf}")
        error.__cause__ = leaf
        return error
    return leaf


_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS})


def _storage_failure(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS


def _wind_up(
    recorder: Recorder,
    state: RunState,
    info: RunInfo,
    status: Literal["failed", "cancelled"],
    *,
    derived: bool,
) -> None:
    """Record how the run ended, best effort: after a disk failure these writes may fail too, and
    must not hide the error that ended the run. ``run.json`` (status and reason) goes first; the
    derived files are skipped after a store failure (``resume`` rebuilds them from the events)."""
    info.steps, info.usage = state.step, state.usage.to_dict()
    finished = RunFinished(step=state.step, status=status, usage=state.usage.to_dict(), steps=state.step)
    writes: list[Callable[[], None]] = [
        lambda: recorder.store.write_info(info),
        lambda: recorder.record(finished),
    ]
    if derived:
        writes.insert(0, lambda: recorder.checkpoint(state))
    for write in writes:
        try:
            write()
        except RunStoreError as exc:
            logger.info("could not record the end of the run: %s", exc)


async def _write_report(stop: Finished, recorder: Recorder, state: RunState) -> tuple[CitedText, str]:
    """Render the answer, write ``report.md`` and ``report.html``, record the ``report`` event."""
    language: Language = "zh" if state.language == "zh" else "en"
    cited = resolve_citations(stop.answer, state.sources)
    markdown = render_markdown(cited, language)
    html = render_html(cited, title=state.question[:200], language=language)
    await recorder.write_report(markdown, html)
    outcome, _ = judge_outcome(stop, cited, state)
    recorder.record(
        ReportWritten(
            step=state.step,
            path=RunDir(recorder.store.path).report_path.name,
            chars=len(markdown),
            origin=stop.origin,
            citations=cited.stats,
            outcome=outcome,
        )
    )
    return cited, markdown


def judge_outcome(stop: Finished, cited: CitedText, state: RunState) -> tuple[Outcome, str]:
    """What the user got, and one line on why (``RunInfo.outcome``)."""
    resolved, unresolved = len(cited.order), len(cited.unresolved)
    if stop.origin == "fallback":
        why = stop.reason.replace("_", " ") or "no usable reply"
        return "empty", (
            f"the model wrote no report ({why}); report.md lists the {len(state.sources)} sources the run saw"
        )
    if resolved == 0:
        if not len(state.sources):
            return "uncited", "the run found no source, so the report cites nothing"
        removed = f" ({unresolved} invented citation(s) removed)" if unresolved else ""
        return "uncited", f"the report cites none of the {len(state.sources)} sources the run saw{removed}"
    if stop.origin == "guided":
        sections = list(state.guided.get("sections", {}).values())
        written = sum(1 for s in sections if s.get("kept") == "model")
        quotes = sum(
            1
            for s in sections
            for p in s.get("paragraphs", ())
            if p.get("quoted") or s.get("kept") == "quoted"
        )
        if not written:
            return "extractive", "every section quotes the sources: the model's drafts failed the checks"
        return "report", (
            f"{written} of {len(sections)} section(s) written by the model, {quotes} passage(s) quoted; "
            f"{resolved} sources cited"
        )
    return "report", f"{resolved} sources cited"


async def _deliver(
    stop: Finished,
    cited: CitedText,
    markdown: str,
    store: RunStore,
    info: RunInfo,
    recorder: Recorder,
    state: RunState,
) -> RunResult:
    """Record the run as done and refresh the derived files (sources now numbered as in the report)."""
    info.status, info.ended, info.citations, info.report_origin = "done", now_iso(), cited.stats, stop.origin
    info.outcome, info.outcome_reason = judge_outcome(stop, cited, state)
    info.guards = dict(state.audit)
    recorder.record(
        RunFinished(step=state.step, status="done", usage=state.usage.to_dict(), steps=state.step)
    )
    numbers = cited.numbers
    numbered = [s.to_dict() | {"n": numbers.get(s.key)} for s in state.sources]
    await recorder.save(state, sources=numbered)
    return RunResult(
        run_dir=store.path,
        status="done",
        report=markdown,
        origin=stop.origin,
        steps=state.step,
        usage=state.usage.to_dict(),
        citations=cited.stats,
        outcome=info.outcome,
        outcome_reason=info.outcome_reason or "",
    )
