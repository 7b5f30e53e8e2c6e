"""Run one tool call and always come back with a ``ToolResult``.

Mistakes the model makes — an unknown tool, arguments that are not JSON, arguments that fail
validation, a tool that raises — become a result whose text starts with ``Error:`` and says how to do
better; the event keeps the exception type. Only cancellation escapes.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from deepresearch.errors import ToolError
from deepresearch.llm.messages import ToolCall
from deepresearch.llm.textmode import INVALID_TOOL_CALL
from deepresearch.tools.base import Tool, ToolContext, ToolResult

logger = logging.getLogger(__name__)


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


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:6]:
        where = ".".join(str(p) for p in error["loc"]) or "arguments"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


async def execute(call: ToolCall, tools: Mapping[str, Tool], ctx: ToolContext) -> ToolResult:
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
    try:
        arguments = parse_arguments(call.arguments)
        args = tool.args.model_validate(arguments)
    except ToolError as exc:
        return error_result(
            f"{exc} — call {call.name} again with a JSON object of arguments.", "InvalidArguments"
        )
    except ValidationError as exc:
        return error_result(
            f"invalid arguments for {call.name}: {describe_validation_error(exc)}", "InvalidArguments"
        )
    try:
        return await tool.run(args, ctx)
    except ToolError as exc:
        return error_result(str(exc), type(exc).__name__)
    except Exception as exc:  # a tool bug must not end the run; the model and the log both hear of it
        logger.warning("tool %s raised %s", call.name, type(exc).__name__, exc_info=True)
        return error_result(
            f"{call.name} failed: {type(exc).__name__}: {exc}",
            type(exc).__name__,
            traceback=traceback.format_exc(limit=8),
        )
