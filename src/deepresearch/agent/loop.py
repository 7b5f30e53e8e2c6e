"""The ReAct loop: one step is one model call and the tool calls it asks for.

``run()`` repeats ``step()`` until the model answers without tool calls. Before each call the budgets
are checked (an exhausted one forces one final-answer turn) and the context policy fits the view
under its limit. Every outcome is an event: recorded, then applied to the state (``state.py``), so
the run directory always describes the run and ``resume`` picks it up mid-step.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from deepresearch.agent import prompts
from deepresearch.agent.budget import Budget
from deepresearch.agent.context import ContextPolicy
from deepresearch.agent.events import (
    ContextCompacted,
    ErrorEvent,
    Event,
    FinalAnswerForced,
    LLMCall,
    Nudge,
    ToolCallEvent,
    ToolResultEvent,
)
from deepresearch.agent.state import RunState
from deepresearch.agent.stops import Finished, StopRequested
from deepresearch.llm.messages import Completion, Encoded, Message, ToolCall
from deepresearch.report import extract_answer, fallback_report
from deepresearch.tools.base import Tool, ToolContext, ToolResult
from deepresearch.tools.execute import execute, omit_oversized_arguments
from deepresearch.tools.truncate import clip

logger = logging.getLogger(__name__)

REPEAT_HINT_AFTER = 3
"""Identical failing calls before the result tells the model to stop repeating itself."""


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
        self.make_context = make_context
        self.stop = stop
        """Set it to end the run after the step in progress (checked between steps)."""
        self.schemas = [tool.schema() for tool in tools.values()]
        self._started = time.monotonic()
        self._failing: dict[tuple[str, str], int] = {}

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
            ignored = [_kept(call).to_wire() for call in completion.tool_calls]
            completion.tool_calls = []
        message = completion.to_message()
        if completion.tool_calls:  # the calls run as written; megabytes are not kept to be resent
            message["tool_calls"] = [_kept(call).to_wire() for call in completion.tool_calls]
        event = LLMCall(
            step=n,
            message=message,
            usage=completion.usage.to_dict(),
            finish_reason=completion.finish_reason,
            duration_s=round(time.monotonic() - started, 3),
            context_tokens=history.view_tokens + self.config.policy.fixed_tokens,
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
        if answer:
            raise Finished(answer, origin="forced" if state.forced else "answer", reason=state.forced or "")
        if state.nudges < self.config.max_nudges:
            self.nudge(n, "invalid_answer" if state.forced else "empty_reply")
            return
        report = fallback_report(
            state.question,
            state.sources,
            state.forced or "empty replies",
            "zh" if state.language == "zh" else "en",
        )
        raise Finished(report, origin="fallback", reason=state.forced or "empty_reply")

    def nudge(self, n: int, reason: str) -> None:
        text = prompts.render(f"nudge_{reason}_{self.state.language}.j2")
        self.record(Nudge(step=n, reason=reason, message={"role": "user", "content": text}))  # type: ignore[arg-type]

    async def act_on_tools(self, n: int, calls: Sequence[ToolCall], *, length_cut: bool = False) -> None:
        """Run the calls concurrently; results are recorded as they land, join the history in call order."""
        for call in calls:
            if call.id not in self.state.results:
                self.record(
                    ToolCallEvent(step=n, call_id=call.id, name=call.name, arguments=_kept(call).arguments)
                )
        async with asyncio.TaskGroup() as group:
            for index, call in enumerate(calls):
                if call.id not in self.state.results:
                    group.create_task(self.run_call(n, index, call, length_cut))
        await self.recorder.save(self.state)

    async def run_call(self, n: int, index: int, call: ToolCall, length_cut: bool) -> None:
        ctx = self.make_context(n, call.id)
        started = time.monotonic()
        result = await execute(call, self.tools, ctx, deadline_s=self.time_left())
        text = result.text
        if result.is_error and length_cut and result.data.get("error_type") == "InvalidArguments":
            text += " (Your reply was cut off by the output token limit; make smaller calls.)"
        text += self.repetition_hint(call, result)
        if len(text) > self.config.tool_result_max_chars:
            text, _ = clip(
                text,
                self.config.tool_result_max_chars,
                ctx.workspace,
                f"tool_outputs/step{n:03d}_{index + 1}_{call.name}.txt",
            )
        self.record(self.result_event(n, call, ctx, result, text, time.monotonic() - started))

    def repetition_hint(self, call: ToolCall, result: ToolResult) -> str:
        """A loop breaker: the same failing call again and again gets told so (small models do this)."""
        signature = (call.name, _kept(call).arguments)
        if not result.is_error:
            self._failing.pop(signature, None)
            return ""
        self._failing[signature] = repeats = self._failing.get(signature, 0) + 1
        if repeats < REPEAT_HINT_AFTER:
            return ""
        return (
            f"\n(This exact call has now failed {repeats} times. Do not repeat it: change the arguments, "
            "use another tool — for example batch_web_surfer with batch_search — or write your answer.)"
        )

    def result_event(
        self, n: int, call: ToolCall, ctx: ToolContext, result: ToolResult, text: str, duration: float
    ) -> ToolResultEvent:
        compact = result.compact if result.compact is not None and len(result.compact) < len(text) else None
        logger.info("step %d: %s %s in %.2fs", n, call.name, "failed" if result.is_error else "ok", duration)
        return ToolResultEvent(
            step=n,
            call_id=call.id,
            name=call.name,
            content=text,
            compact=compact,
            is_error=result.is_error,
            error_type=result.data.get("error_type") if result.is_error else None,
            data=result.data,
            sources=[s.to_dict() for s in ctx.new_sources],
            state=dict(ctx.state) if ctx.state_changed else None,
            duration_s=round(duration, 3),
        )


def _kept(call: ToolCall) -> ToolCall:
    """``call`` as the run records it: oversized arguments replaced by a stand-in (``tools/execute.py``)."""
    return replace(call, arguments=omit_oversized_arguments(call.arguments))
