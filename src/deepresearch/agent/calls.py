"""One reply's tool calls, run together, each guarded and bounded, each result recorded as it lands;
and the two guards that take a step for the model.

The calls run concurrently under an ``asyncio.TaskGroup``; every result is recorded when it comes and
the state adds them to the conversation in call order, so ``messages.json`` is deterministic. A result
carries what its tool returned: the text (clipped to ``result_max_chars``, the whole saved in the
workspace), the sources it showed the model and, when the tool changed it, the new tool state.

The guards live here because both take their step with a tool call, a search of the question with the
run's ``searcher`` (the first tool that can search). The search guard: a run that has seen no source
by step ``READ_BY_STEP`` gets that search. The repeat guard, because small models loop on one call:
the second identical call is refused with a hint; from the third on the loop takes the step itself,
the search while no source is known, else the call is refused and ``stuck`` tells the agent to force
the final answer. The words the model reads are in ``prompts/tool_*_{en,zh}.j2``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from deepresearch.agent import prompts
from deepresearch.agent.state import RunState
from deepresearch.events import Event, LLMCall, ToolCallEvent, ToolResultEvent
from deepresearch.llm.messages import ToolCall
from deepresearch.tools.base import Tool, ToolContext, ToolResult
from deepresearch.tools.execute import error_result, execute, omit_oversized_arguments
from deepresearch.tools.truncate import clip

logger = logging.getLogger(__name__)

READ_BY_STEP = 3
"""A run that has seen no source when this step begins gets a search of the question, taken for it."""


@dataclass
class ToolRunner:
    """Runs the tool calls of the agent's replies against ``tools``, recording through ``record``."""

    tools: Mapping[str, Tool]
    state: RunState
    record: Callable[[Event], None]
    """Record an event and apply it to ``state`` (the agent's ``record``)."""
    make_context: Callable[[int, str], ToolContext]
    time_left: Callable[[], float | None]
    """Seconds of the run's wall-time budget left, ``None`` without one: bounds each call."""
    result_max_chars: int
    stuck: bool = False
    """The model made one call a third time with sources in hand: its next turn must be the answer."""
    searcher: Tool | None = field(init=False)
    """The tool the loop searches the question with when the model has not."""

    def __post_init__(self) -> None:
        self.searcher = next((t for t in self.tools.values() if t.search_arguments is not None), None)

    def question_search(self, call_id: str | None = None) -> ToolCall:
        """The call that searches the question with ``searcher`` (asked for only when there is one)."""
        searcher = self.searcher
        if searcher is None or searcher.search_arguments is None:
            raise LookupError("no tool of this run can search")
        arguments = json.dumps(searcher.search_arguments(self.state.question))
        return ToolCall(call_id or f"call_{uuid.uuid4().hex[:12]}", searcher.name, arguments)

    def needs_search(self, n: int) -> bool:
        """The search guard: by step ``READ_BY_STEP`` a run must have seen a source; if not, search."""
        state = self.state
        return (
            n >= READ_BY_STEP
            and not state.forced
            and not len(state.sources)
            and self.searcher is not None
            and "guard_search" not in state.guided.get("phases", ())
        )

    async def take_search(self, n: int, phase: str) -> None:
        """Search the question as step ``n``, a step the loop takes for the model (recorded as such)."""
        call = self.question_search()
        message = {"role": "assistant", "content": "", "tool_calls": [call.to_wire()]}
        self.record(LLMCall(step=n, phase=phase, message=message, usage={}, finish_reason="tool_calls"))
        logger.info("step %d: no source seen yet; the loop searches the question", n)
        await self.run(n, [call])

    async def run(self, n: int, calls: Sequence[ToolCall], *, length_cut: bool = False) -> None:
        """Run the calls of step ``n`` that have no result yet; ``length_cut``: the reply hit its limit."""
        for call in calls:
            if call.id not in self.state.results:
                arguments = kept(call).arguments
                self.record(ToolCallEvent(step=n, call_id=call.id, name=call.name, arguments=arguments))
        repeats = self.repeats(calls)
        async with asyncio.TaskGroup() as group:
            for index, call in enumerate(calls):
                if call.id not in self.state.results:
                    group.create_task(self.run_call(n, index, call, length_cut, repeats[index]))

    def repeats(self, calls: Sequence[ToolCall]) -> list[int]:
        """How many times the model had made each call (same name and arguments) by this one, itself
        included; 0 for calls the code took (``RunState.call_counts`` counts only the model's)."""
        signatures = [(c.name, kept(c).arguments) for c in calls]
        in_reply = Counter(signatures)
        seen: Counter[tuple[str, str]] = Counter()
        found = []
        for signature in signatures:
            seen[signature] += 1
            found.append(self.state.call_counts[signature] - in_reply[signature] + seen[signature])
        return found

    async def run_call(self, n: int, index: int, call: ToolCall, length_cut: bool, repeat: int = 0) -> None:
        ctx = self.make_context(n, call.id)
        started = time.monotonic()
        result = await self.guarded(call, ctx, repeat)
        text = result.text
        if result.is_error and length_cut and result.data.get("error_type") == "InvalidArguments":
            text += " " + prompts.render(f"tool_length_cut_{self.state.language}.j2")
        if len(text) > self.result_max_chars:
            saved_as = f"tool_outputs/step{n:03d}_{index + 1}_{call.name}.txt"
            text, _ = clip(text, self.result_max_chars, ctx.workspace, saved_as)
        self.record(self.result_event(n, call, ctx, result, text, time.monotonic() - started))

    async def guarded(self, call: ToolCall, ctx: ToolContext, repeat: int) -> ToolResult:
        """Run ``call``, unless it is the model's ``repeat``-th identical call (see the module docstring)."""
        if repeat < 2:
            return await execute(call, self.tools, ctx, deadline_s=self.time_left())
        language = self.state.language
        if repeat >= 3 and not len(self.state.sources) and self.searcher is not None:
            search = self.question_search(call.id)
            result = await execute(search, self.tools, ctx, deadline_s=self.time_left())
            note = prompts.render(f"tool_repeat_searched_{language}.j2", repeat=repeat)
            result.text = f"{note}\n{result.text}"
            result.data["repeat"] = repeat  # counted in the audit when the result is applied
            return result
        if repeat >= 3:
            self.stuck = True
        message = prompts.render(f"tool_repeated_call_{language}.j2", name=call.name)
        return error_result(message, "RepeatedCall", repeat=repeat)

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
            sources=[s.to_dict() for s in result.sources],
            state=dict(ctx.state) if result.state is not None else None,
            duration_s=round(duration, 3),
        )


def kept(call: ToolCall) -> ToolCall:
    """``call`` as the run records it: oversized arguments replaced by a stand-in (``tools/execute.py``)."""
    return replace(call, arguments=omit_oversized_arguments(call.arguments))
