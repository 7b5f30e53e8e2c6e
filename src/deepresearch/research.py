"""Start or resume a research run, drive it with the chosen strategy, and deliver or wind it up.

The CLI, the server and the benchmark runner call ``research`` / ``resume`` and get a ``RunResult``;
they never assemble an agent. The parts come from ``services.py`` (the composition root), the run
directory is ``runs.py``'s, and a run that worked ends in ``delivery.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from deepresearch.agent import prompts
from deepresearch.agent.history import History
from deepresearch.agent.loop import Agent
from deepresearch.agent.state import RunState, replay, unacted_reply
from deepresearch.agent.stops import Finished
from deepresearch.config import Settings
from deepresearch.delivery import RunResult, deliver, write_report
from deepresearch.errors import ConfigError, RunStoreError, surfaced
from deepresearch.events import (
    Event,
    FollowUp,
    RunFinished,
    RunResumed,
    RunStarted,
    now_iso,
)
from deepresearch.fetch.extract import warm_up_in_background
from deepresearch.lifecycle import freeze_long_lived
from deepresearch.llm.messages import Completion
from deepresearch.runs import (
    Recorder,
    RunDir,
    RunInfo,
    RunStore,
    new_run_dir,
    read_info,
    run_id_for,
)
from deepresearch.services import ProgressCallback, Services
from deepresearch.tools.registry import Registry, default_tools

logger = logging.getLogger(__name__)

EventCallback = Callable[[Event], None]


def warm_up() -> None:
    """Load now what a run otherwise loads on first use, in the middle of a step: the HTTP and fetch
    stack and the TLS context, the search re-ranking rules, the token ranks, HTML extraction and
    report rendering. A process that hosts many runs (the benchmark runner, a Ray worker) calls it
    once before launching them; else its first runs all wait on one event loop behind ~0.3 s of
    imports taken mid-step (measured: a 160 ms stall of the loop in the first wave of 16)."""
    from deepresearch.fetch import extract, http  # noqa: F401
    from deepresearch.llm.tokens import count_tokens
    from deepresearch.report import _markdown
    from deepresearch.search import authority, backends  # noqa: F401
    from deepresearch.tls import shared_ssl_context

    try:
        shared_ssl_context()
        authority.AuthorityList.load()
        count_tokens("warm up")
        extract.warm_up()
        _markdown()
    except Exception:  # only a head start: a run that needs the part that failed reports it itself
        logger.warning("warming up failed; runs load what they need as they go", exc_info=True)


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
    language = prompts.language_of(settings.language, question)
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
        {"role": "system", "content": prompts.system_prompt(language, today, small=settings.is_local)},
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

    The run keeps the settings it started with, except those set in ``settings`` (flags, environment
    or config file; ``out`` excepted), which replace them: the key (never stored), another endpoint,
    model, search backend or budget.
    """
    return await _continue(
        run_dir, settings, on_event=on_event, tools=tools, stop=stop, on_progress=on_progress
    )


async def follow_up(
    run_dir: Path,
    message: str,
    settings: Settings | None = None,
    *,
    on_event: EventCallback | None = None,
    tools: Registry | None = None,
    stop: asyncio.Event | None = None,
    on_progress: ProgressCallback | None = None,
) -> RunResult:
    """Add ``message`` as a user turn to a finished run and let it go on to a new report.

    The run keeps its history, its sources and its workspace, so the model can reread what it found
    (data synthesis uses this for reflection: a wrong answer, a correction, a retry). The new report
    replaces the old one; the event log keeps both. ``settings`` overrides the recorded ones as in
    ``resume`` (raise ``max_steps`` to give the new turn room: the step count goes on). A run that has
    not finished is resumed instead, not followed up.
    """
    if not message.strip():
        raise ConfigError("the follow-up message is empty")
    return await _continue(
        run_dir, settings, on_event=on_event, tools=tools, stop=stop, on_progress=on_progress, message=message
    )


async def _continue(
    run_dir: Path,
    settings: Settings | None,
    *,
    on_event: EventCallback | None,
    tools: Registry | None,
    stop: asyncio.Event | None,
    on_progress: ProgressCallback | None,
    message: str | None = None,
) -> RunResult:
    """Reopen the run in ``run_dir`` and drive it on: ``resume`` (no ``message``: the run must not have
    finished) or ``follow_up`` (a user turn added to a finished run)."""
    store = RunStore.open(run_dir)
    try:
        loaded = store.load_events()
        first = loaded.events[0] if loaded.events else None
        if not isinstance(first, RunStarted):
            raise RunStoreError(f"{run_dir}/events.jsonl does not start with run_started")
        done = _done(loaded.events)
        if message is None and done:
            raise RunStoreError(f"{run_dir} already finished; its report is {RunDir(run_dir).report_path}")
        if message is not None and not done:
            raise RunStoreError(
                f"{run_dir} has not finished; continue it with: deepresearch resume {run_dir}"
            )
        effective = Settings.for_resume(first.settings, settings).for_local_model()
        unacted = unacted_reply(loaded.events) if message is None else None
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
        events: list[Event] = [RunResumed(step=state.step, pending_calls=[c.id for c in state.pending_calls])]
        if message is not None:
            events.append(FollowUp(message={"role": "user", "content": message}))
        for event in events:
            recorder.record(event)
            state.apply(event)
    except BaseException:
        await services.aclose()
        store.close()
        raise
    return await _drive(store, info, recorder, state, effective, services, tools, stop, unacted)


def _done(events: list[Event]) -> bool:
    """Whether the run's latest turn finished: its last ``run_finished`` is ``done`` and no follow-up
    came after it (a run that failed during a follow-up is resumed, not followed up again)."""
    for event in reversed(events):
        if isinstance(event, FollowUp):
            return False
        if isinstance(event, RunFinished):
            return event.status == "done"
    return False


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

        agent = services.agent(settings, state, recorder, tools, store.workspace, stop)
        warm_up_in_background()  # the first batch_open would otherwise pay for trafilatura's imports
        freeze_long_lived()  # what exists now lives as long as the run: keep it out of the GC's walks
        try:
            store.write_info(info)
            if state.strategy == "guided":
                from deepresearch.guided.driver import GuidedConfig, run_guided

                config = GuidedConfig.for_settings(settings)
                finished = await run_guided(agent, services.client, config, store.workspace, unacted)
            else:
                finished = await _run_agent(agent, unacted)
            cited, markdown = await write_report(finished, recorder, state)
        except BaseException as exc:
            raised = surfaced(exc, store.path)
            status: Literal["failed", "cancelled"] = "failed" if isinstance(exc, Exception) else "cancelled"
            info.status, info.ended = status, now_iso()
            info.error = (
                " ".join(f"{type(raised).__name__}: {raised}".split()) if status == "failed" else None
            )
            recorder.wind_up(state, status, derived=not isinstance(raised, RunStoreError))
            services.explain(raised)
            raised.add_note(f"run directory: {store.path} (continue with: deepresearch resume {store.path})")
            if raised is exc:
                raise
            raise raised  # noqa: B904 - its cause (the OSError) stays; the group is its context
        return await deliver(finished, cited, markdown, store, info, recorder, state)
    finally:
        recorder.flush()  # a step's write may still be in flight: finish it before the log closes
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
