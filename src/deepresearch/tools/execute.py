"""Run one tool call and always come back with a ``ToolResult``, within a bounded time.

Mistakes the model makes — an unknown tool, arguments that are not JSON, arguments that fail
validation, a tool that raises — become a result whose text starts with ``Error:`` and says how to do
better; the event keeps the exception type. Only cancellation escapes.

Two limits keep one call from holding the run hostage. Arguments are bounded: over
``MAX_ARGUMENT_CHARS`` a call is refused unread (``ArgumentsTooLarge``), and over
``KEPT_ARGUMENT_CHARS`` — far more than any model writes in one reply — the loop keeps a small
stand-in in the recorded conversation (``omit_oversized_arguments``), so megabytes are not counted and
sent back with every later step, nor replayed by ``resume`` (which refuses the stand-in). And every call
runs under a time limit (``ToolTimeout``): ``DEFAULT_TOOL_TIMEOUT_S``, never less than the longest
command the shell tool may be asked to run plus ``TOOL_TIMEOUT_GRACE_S`` (so that a tool's own timer
fires and reports first), and never more than the caller's ``deadline_s`` — the run's remaining
wall-time budget. The limit comes from the context, not from the tool's name. A call that runs out is
cancelled; one that ignores the cancellation (a thread that cannot be interrupted) is abandoned.

A tool returns the tool state it changed in its ``ToolResult``; the executor merges it into the run's
state as soon as the tool returns (``_run``), and the loop records the new state with the result.
"""

from __future__ import annotations

import asyncio
import json
import logging
import traceback
from collections.abc import Awaitable, Mapping
from typing import Any

from pydantic import ValidationError

from deepresearch.errors import ToolError
from deepresearch.llm.messages import ToolCall
from deepresearch.llm.textmode import INVALID_TOOL_CALL
from deepresearch.tools.base import Tool, ToolContext, ToolResult

logger = logging.getLogger(__name__)

MAX_ARGUMENT_CHARS = 16 * 1024 * 1024
"""Longest raw arguments (JSON text) a call may carry; longer ones are refused unread. The file tool
takes up to 5 MiB of UTF-8 content (``file.MAX_WRITE_BYTES``) and JSON escaping turns a byte of
printable text into at most three characters (``\\u00e9`` for a two-byte character, a surrogate pair
for a four-byte one), so any write it accepts fits, with room for the other fields."""
KEPT_ARGUMENT_CHARS = 1024 * 1024
"""Longest arguments kept in the conversation as they are: about four times what a model can write
in one reply (its output limit is ~128k tokens). Longer ones still run, but the recorded reply keeps
a stand-in, so they are not sent back to the model with every step."""
OMITTED_ARGUMENTS_KEY = "arguments_omitted"
"""The one key of that stand-in."""
DEFAULT_TOOL_TIMEOUT_S = 15 * 60.0
"""Time limit of one call when the run has no wall-time budget left to impose a shorter one."""
TOOL_TIMEOUT_GRACE_S = 30.0
"""Added to the longest shell command allowed, so a command's own timeout is the one that fires."""
MIN_TOOL_TIMEOUT_S = 1.0
"""A call still gets this long when the run's wall-time budget is all but spent."""
ABANDON_AFTER_S = 5.0
"""How long a timed-out call may take to honour its cancellation before it is left behind."""


def error_result(message: str, error_type: str, **data: Any) -> ToolResult:
    return ToolResult(text=f"Error: {message}", is_error=True, data={"error_type": error_type, **data})


def parse_arguments(raw: str) -> dict[str, Any]:
    """The call's arguments as a dict; broken JSON is repaired when the repair is unambiguous."""
    text = (raw or "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        from json_repair import repair_json

        value = repair_json(text, return_objects=True)
        if not isinstance(value, dict) or not value:
            raise ToolError(f"the arguments are not valid JSON: {text[:200]!r}") from None
    if isinstance(value, str):  # double-encoded
        return parse_arguments(value)
    if not isinstance(value, dict):
        raise ToolError(f"the arguments must be a JSON object, got {type(value).__name__}")
    return value


def omit_oversized_arguments(arguments: str) -> str:
    """``arguments`` as they are, or, over ``KEPT_ARGUMENT_CHARS``, a small JSON object saying how long
    they were: what the conversation keeps in their place."""
    if len(arguments) <= KEPT_ARGUMENT_CHARS:
        return arguments
    return json.dumps({OMITTED_ARGUMENTS_KEY: f"{len(arguments)} characters, not kept"})


def call_time_limit(ctx: ToolContext, deadline_s: float | None = None) -> float:
    """Seconds one call may run: the default, raised to cover the longest shell command the run allows,
    capped by ``deadline_s`` (the run's remaining wall time) but never under ``MIN_TOOL_TIMEOUT_S``."""
    limit = max(DEFAULT_TOOL_TIMEOUT_S, ctx.shell.max_timeout + TOOL_TIMEOUT_GRACE_S)
    if deadline_s is not None:
        limit = min(limit, max(deadline_s, MIN_TOOL_TIMEOUT_S))
    return limit


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:6]:
        where = ".".join(str(p) for p in error["loc"]) or "arguments"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


async def execute(
    call: ToolCall, tools: Mapping[str, Tool], ctx: ToolContext, *, deadline_s: float | None = None
) -> ToolResult:
    """Run ``call``; ``deadline_s`` is how long the run may still take (``None``: no wall-time budget)."""
    if call.name == INVALID_TOOL_CALL:  # the client could not read an action out of the reply
        return error_result(
            f"your reply could not be read as a tool call: {call.arguments[:300]!r}. Reply again with "
            "exactly one well-formed tool call in the format the instructions give, or your final answer.",
            "InvalidToolCall",
        )
    tool = tools.get(call.name)
    if tool is None:
        return error_result(
            f"there is no tool named {call.name!r}. Available tools: {', '.join(tools)}.", "UnknownTool"
        )
    if len(call.arguments) > MAX_ARGUMENT_CHARS:
        return error_result(
            f"the arguments of this {call.name} call ({len(call.arguments)} characters) are over the "
            f"limit of {MAX_ARGUMENT_CHARS}, so it was not run. Make several smaller calls instead.",
            "ArgumentsTooLarge",
            limit_chars=MAX_ARGUMENT_CHARS,
        )
    try:
        arguments = parse_arguments(call.arguments)
        if set(arguments) == {OMITTED_ARGUMENTS_KEY}:  # a stand-in, replayed by resume: nothing to run
            size = str(arguments[OMITTED_ARGUMENTS_KEY]).split(",", 1)[0]
            return error_result(
                f"the arguments of this {call.name} call ({size}) were too long to keep, so it could not "
                "be run (again). Make several smaller calls instead.",
                "ArgumentsTooLarge",
                limit_chars=KEPT_ARGUMENT_CHARS,
            )
        args = tool.args.model_validate(arguments)
    except ToolError as exc:
        return error_result(
            f"{exc} — call {call.name} again with a JSON object of arguments.", "InvalidArguments"
        )
    except ValidationError as exc:
        return error_result(
            f"invalid arguments for {call.name}: {describe_validation_error(exc)}", "InvalidArguments"
        )
    limit = call_time_limit(ctx, deadline_s)
    try:
        return await _within(_run(tool, args, ctx), limit)
    except _Timeout:
        logger.warning("tool %s stopped after %.1fs (call %s)", call.name, limit, call.id)
        why = (
            "the run's time budget is running out"
            if limit < call_time_limit(ctx)
            else "the time limit per call"
        )
        return error_result(
            f"{call.name} did not finish and was stopped after {round(limit, 1):g} s ({why}). Its work may "
            "be incomplete; make a smaller or faster call, or continue with what you have.",
            "ToolTimeout",
            timeout_s=round(limit, 3),
        )
    except ToolError as exc:
        return error_result(str(exc), type(exc).__name__)
    except Exception as exc:  # a tool bug must not end the run; the model and the log both hear of it
        logger.warning("tool %s raised %s", call.name, type(exc).__name__, exc_info=True)
        return error_result(
            f"{call.name} failed: {type(exc).__name__}: {exc}",
            type(exc).__name__,
            traceback=traceback.format_exc(limit=8),
        )


async def _run(tool: Tool, args: Any, ctx: ToolContext) -> ToolResult:
    """Run the tool, then merge the tool state it returned into the run's, in the call's own task:
    before any other call of the step can run, so one that reads the state next sees this change."""
    result = await tool.run(args, ctx)
    if result.state is not None:
        ctx.state.update(result.state)
    return result


class _Timeout(Exception):
    """A call ran past its time limit (never leaves this module)."""


async def _within(work: Awaitable[ToolResult], limit: float) -> ToolResult:
    """``work``'s result if it comes within ``limit`` seconds; else cancel it and raise ``_Timeout``.

    The call runs as its own task so that a tool which swallows the cancellation, or waits on a thread
    that cannot be interrupted, is left behind after ``ABANDON_AFTER_S`` instead of stalling the run.
    """
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=limit)
    except asyncio.CancelledError:  # the run itself is cancelled: the call goes too, cleaned up first
        task.cancel()
        await asyncio.wait({task}, timeout=ABANDON_AFTER_S)
        raise
    if task in done:
        return task.result()
    task.cancel()
    await asyncio.wait({task}, timeout=ABANDON_AFTER_S)
    if not task.done():
        task.add_done_callback(_forget)
    raise _Timeout


def _forget(task: asyncio.Future[ToolResult]) -> None:
    """Collect an abandoned call's outcome so that asyncio does not report it as never retrieved."""
    if not task.cancelled():
        task.exception()
