"""The ReAct loop: one step is one model call and the tool calls it asks for.

``run()`` repeats ``step()`` until the model answers without tool calls. Before each call the budgets
are checked (an exhausted one forces one final-answer turn) and the context policy fits the view
under its limit. Every outcome is an event: recorded, then applied to the state (``state.py``), so
the run directory always describes the run and ``resume`` picks it up mid-step. The tool calls, and
the guards that take a step for the model, are run by ``calls.ToolRunner``; the loop knows no tool by
name.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from deepresearch.agent import prompts
from deepresearch.agent.budget import Budget
from deepresearch.agent.calls import ToolRunner, kept
from deepresearch.agent.context import ContextPolicy
from deepresearch.agent.state import RunState
from deepresearch.agent.stops import Finished, StopRequested
from deepresearch.events import ContextCompacted, ErrorEvent, Event, FinalAnswerForced, LLMCall, Nudge
from deepresearch.llm.messages import Completion, Encoded, Message, ToolCall
from deepresearch.report import echoes_prompt, extract_answer, fake_citations, fallback_report
from deepresearch.tools.base import Tool, ToolContext

logger = logging.getLogger(__name__)


class ChatModel(Protocol):
    async def complete(
        self,
        messages: Sequence[Message | Encoded],
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | None = None,
    ) -> Completion: ...


class Recorder(Protocol):
    def record(self, event: Event) -> None: ...
    def checkpoint(self, state: RunState) -> None:
        """Write the derived files and fsync now (on the way out of a cancelled run)."""

    async def save(self, state: RunState) -> None:
        """``checkpoint`` at a step boundary, with the disk work off the event loop."""


@dataclass(frozen=True)
class LoopConfig:
    budget: Budget = field(default_factory=Budget)
    policy: ContextPolicy = field(default_factory=ContextPolicy)
    tool_result_max_chars: int = 20_000
    encoded_messages: bool = True
    """Send pre-encoded messages (native tool mode); text mode needs dicts to rewrite them."""
    max_continuations: int = 3
    """Times an answer cut by the output limit is continued."""
    max_nudges: int = 2
    """Consecutive empty or unusable replies before the run falls back to an evidence report."""


class Agent:
    def __init__(
        self,
        *,
        model: ChatModel,
        tools: Mapping[str, Tool],
        state: RunState,
        recorder: Recorder,
        config: LoopConfig,
        make_context: Callable[[int, str], ToolContext],
        stop: asyncio.Event | None = None,
    ) -> None:
        self.model, self.tools, self.state, self.recorder, self.config = model, tools, state, recorder, config
        self.stop = stop
        """Set it to end the run after the step in progress (checked between steps)."""
        self.schemas = [tool.schema(constrained=not config.encoded_messages) for tool in tools.values()]
        self.runner = ToolRunner(
            tools, state, self.record, make_context, self.time_left, config.tool_result_max_chars
        )
        """Runs the tool calls, and the guards that take a step for the model (``calls.py``)."""
        self._started = time.monotonic()

    def record(self, event: Event) -> None:
        self.recorder.record(event)
        self.state.apply(event)

    async def run(self) -> Finished:
        """Run to the end; returns the ``Finished`` stop that carries the answer."""
        try:
            if self.state.pending_calls:
                await self.act_on_tools(self.state.step, self.state.calls)
            while True:
                if self.stop is not None and self.stop.is_set():
                    raise StopRequested
                await self.step()
        except Finished as stop:
            return stop
        except (asyncio.CancelledError, KeyboardInterrupt):
            self.recorder.checkpoint(self.state)
            raise
        except Exception as exc:
            self.record(
                ErrorEvent(
                    step=self.state.step,
                    error_type=type(exc).__name__,
                    message=str(exc),
                    traceback=traceback.format_exc(limit=12),
                )
            )
            raise

    async def step(self) -> None:
        n = self.state.step + 1
        self.check_budget(n)
        if self.runner.needs_search(n):
            await self.runner.take_search(n, "guard_search")
            await self.recorder.save(self.state)
            return
        self.fit_context(n)
        completion = await self.query(n)
        if completion.tool_calls and not self.state.forced:
            await self.act_on_tools(n, completion.tool_calls, length_cut=completion.finish_reason == "length")
        else:
            self.act_on_text(n, completion)

    # --- before the call

    def elapsed(self) -> float:
        return self.state.elapsed_before + time.monotonic() - self._started

    def time_left(self) -> float | None:
        """Seconds of the wall-time budget still unspent, ``None`` without one (bounds each tool call)."""
        limit = self.config.budget.max_wall_seconds
        return None if limit is None else limit - self.elapsed()

    def check_budget(self, n: int) -> None:
        if self.state.forced:
            return
        if self.runner.stuck:
            self.force_final(n, "repeated_call")
            return
        reason = self.config.budget.exhausted(next_step=n, usage=self.state.usage, elapsed=self.elapsed())
        if reason:
            self.force_final(n, reason)

    def force_final(self, n: int, reason: str) -> None:
        text = prompts.render(f"force_final_{self.state.language}.j2", reason=reason)
        self.record(FinalAnswerForced(step=n, reason=reason, message={"role": "user", "content": text}))
        logger.info("step %d: forcing the final answer (%s)", n, reason)

    def fit_context(self, n: int) -> None:
        history = self.state.history
        last_assistant = max(
            (i for i, e in enumerate(history.entries) if e.message["role"] == "assistant"),
            default=len(history),
        )
        outcome = self.config.policy.fit(history, protected_from=last_assistant)
        if outcome is None:
            return
        if outcome.compressed or outcome.dropped:
            self.record(
                ContextCompacted(
                    step=n,
                    compressed=outcome.compressed,
                    dropped=outcome.dropped,
                    tokens_before=outcome.tokens_before,
                    tokens_after=outcome.tokens_after,
                )
            )
        if outcome.force_final and not self.state.forced:
            self.force_final(n, "context")

    # --- the call

    async def query(self, n: int) -> Completion:
        history = self.state.history
        view: Sequence[Message | Encoded] = (
            history.view() if self.config.encoded_messages else history.view_messages()
        )
        started = time.monotonic()
        completion = await self.model.complete(
            view, tools=self.schemas, tool_choice="none" if self.state.forced else None
        )
        ignored: list[dict[str, Any]] = []
        if self.state.forced and completion.tool_calls:  # not run: keep them out of the conversation
            ignored = [kept(call).to_wire() for call in completion.tool_calls]
            completion.tool_calls = []
        message = completion.to_message()
        if completion.tool_calls:  # the calls run as written; megabytes are not kept to be resent
            message["tool_calls"] = [kept(call).to_wire() for call in completion.tool_calls]
        event = LLMCall(
            step=n,
            message=message,
            usage=completion.usage.to_dict(),
            finish_reason=completion.finish_reason,
            duration_s=round(time.monotonic() - started, 3),
            context_tokens=history.view_tokens + self.config.policy.fixed,
        )
        if ignored:
            event.ignored_tool_calls = ignored  # type: ignore[attr-defined]
        self.record(event)
        return completion

    # --- after the call

    def act_on_text(self, n: int, completion: Completion) -> None:
        state = self.state
        if completion.finish_reason == "length" and len(state.answer_parts) < self.config.max_continuations:
            self.nudge(n, "length")
            return
        answer = extract_answer("".join(state.answer_parts) + completion.content)
        problem = None
        if answer and echoes_prompt(answer):
            problem = "echoed_prompt"
        elif answer and fake_citations(answer, state.sources):
            problem = "fake_citations"
        elif answer:
            raise Finished(answer, origin="forced" if state.forced else "answer", reason=state.forced or "")
        if state.nudges < self.config.max_nudges:
            self.nudge(n, problem or ("invalid_answer" if state.forced else "empty_reply"))
            return
        reason = problem or state.forced or "empty_reply"
        language: Literal["en", "zh"] = "zh" if state.language == "zh" else "en"
        report = fallback_report(state.question, state.sources, reason.replace("_", " "), language)
        raise Finished(report, origin="fallback", reason=reason)

    def nudge(self, n: int, reason: str) -> None:
        text = prompts.render(f"nudge_{reason}_{self.state.language}.j2")
        self.record(Nudge(step=n, reason=reason, message={"role": "user", "content": text}))  # type: ignore[arg-type]

    async def act_on_tools(self, n: int, calls: Sequence[ToolCall], *, length_cut: bool = False) -> None:
        """Run the calls concurrently (``calls.py``); then save at the step boundary."""
        await self.runner.run(n, calls, length_cut=length_cut)
        await self.recorder.save(self.state)
