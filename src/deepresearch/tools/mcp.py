"""Tools from MCP servers: each configured server's tools, offered to the model beside the built-ins.

A run opens one session per server in ``mcp_servers`` (``open_servers``, from ``Services.open``) and
closes them all when it ends (``McpTools.aclose``), so a stdio server never outlives its run.

Each session lives in an asyncio task of its own. The SDK's sessions are anyio contexts with task
groups inside: anyio requires them to be left in the task that entered them, and a crash in one of
their background tasks (a broken stream, an HTTP read timeout) cancels the task that hosts them. Were
that the run's task, a hiccup of some tool server would cancel the research; hosted apart, it ends
that one session, and its tools answer with errors from then on. Tool calls come from any task.

Each tool is offered as ``<server>__<tool>`` with the server's own JSON schema and description. Its
arguments pass through unchecked (the server validates them), and whatever goes wrong in a call —
an ``isError`` result, a timeout, a server that died — comes back to the model as an ``Error:``
result, never as an exception that ends the run. A server that cannot be started or listed, on the
other hand, fails the run before it starts (``ConfigError`` naming it): whoever configured it
expects its tools, and a run without them would quietly answer with less.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import tempfile
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, TextIO

from pydantic import BaseModel, ConfigDict

from deepresearch.config import McpServer
from deepresearch.errors import ConfigError
from deepresearch.tools.base import Tool, ToolContext, ToolResult
from deepresearch.tools.execute import error_result
from deepresearch.tools.truncate import truncate

try:
    import httpx2
    import mcp_types
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters, stdio_client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.exceptions import MCPError
except ModuleNotFoundError as missing:  # an optional extra; only a run with mcp_servers needs it
    raise ConfigError(
        f"mcp_servers needs the MCP SDK ({missing.name} is not installed): pip install 'deepresearch[server]'"
    ) from missing

logger = logging.getLogger(__name__)

SEPARATOR = "__"
"""Between the server's name and the tool's in the name the model sees."""
DESCRIPTION_MAX_CHARS = 1024
"""A server's tool description is cut here: it is sent with every request."""
MAX_LIST_PAGES = 50
"""Pages of ``tools/list`` read at most, so a server that paginates without end cannot hang the start."""
HTTP_READ_TIMEOUT_S = 300.0
"""Socket read timeout of an HTTP session (the SDK's default): its event streams idle between
messages. Each request's own deadline is the server's ``timeout_s``."""
STDERR_TAIL_CHARS = 1500
"""How much of a stdio server's stderr a start failure quotes."""
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")


class McpArguments(BaseModel):
    """Any JSON object: the server checks the arguments against its own schema and says what is wrong."""

    model_config = ConfigDict(extra="allow")


class McpSession:
    """One server's session, hosted by a task of its own (see the module docstring)."""

    def __init__(self, server: McpServer) -> None:
        self.server = server
        self.client: Client | None = None
        """Set while the session is open; ``None`` before and after."""
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._errlog: TextIO | None = None

    async def start(self) -> list[mcp_types.Tool]:
        """Connect, list the tools and keep the session open until ``aclose``; a failure is a
        ``ConfigError`` naming the server, raised once whatever was started is stopped again."""
        if self.server.command is not None:  # its stderr: out of the terminal, quoted if the start fails
            self._errlog = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115
        listed: asyncio.Future[list[mcp_types.Tool]] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._host(listed), name=f"mcp:{self.server.name}")
        try:
            return await listed
        except Exception as exc:
            server = self.server
            where = f"command {server.command!r}" if server.command is not None else f"url {server.url}"
            problem = f"{_reason(exc)}{self._stderr_tail()}"
            raise ConfigError(
                f"MCP server {server.name!r} ({where}) could not be started: {problem}"
            ) from exc

    async def aclose(self) -> None:
        """End the session and wait for its task: a stdio server is stopped (stdin closed, then
        SIGTERM, then SIGKILL, each wait bounded by the SDK). Never raises; the run is over."""
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._errlog is not None:
            self._errlog.close()

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolResult:
        """Call ``tool``; every failure is an error result the model reads."""
        name, data = self.server.name, {"server": self.server.name, "tool": tool}
        if self.client is None:
            return error_result(
                f"the MCP server {name!r} is gone; its tools cannot be used now", "McpGone", **data
            )
        try:
            result = await self.client.call_tool(tool, arguments, read_timeout_seconds=self.server.timeout_s)
        except MCPError as exc:
            if exc.code == mcp_types.REQUEST_TIMEOUT:
                message = f"{tool} on MCP server {name!r} did not answer within {self.server.timeout_s:g} s"
                return error_result(message, "McpTimeout", **data)
            return error_result(f"{tool} on MCP server {name!r} failed: {exc}", "McpError", **data)
        except Exception as exc:  # a broken connection: the run goes on without this server
            logger.warning("MCP call %s/%s failed", name, tool, exc_info=True)
            return error_result(
                f"{tool} on MCP server {name!r} failed: {_reason(exc)}", type(exc).__name__, **data
            )
        return result_to_tool_result(name, tool, result)

    async def _host(self, listed: asyncio.Future[list[mcp_types.Tool]]) -> None:
        try:
            async with AsyncExitStack() as stack:
                client = await stack.enter_async_context(
                    Client(await self._transport(stack), read_timeout_seconds=self.server.timeout_s)
                )
                tools = await _list_tools(client)
                if listed.done():  # the start was given up meanwhile
                    return
                self.client = client
                listed.set_result(tools)
                await self._stop.wait()
        except Exception as exc:
            if not listed.done():
                listed.set_exception(exc)
            else:
                logger.warning("MCP server %s: the session ended: %s", self.server.name, _reason(exc))
        finally:
            self.client = None
            if not listed.done():
                listed.cancel()

    async def _transport(self, stack: AsyncExitStack) -> Any:
        server = self.server
        if server.command is not None:
            parameters = StdioServerParameters(
                command=server.command,
                args=server.args,
                env={key: value.get_secret_value() for key, value in server.env.items()},
                cwd=server.cwd,
            )
            assert self._errlog is not None  # opened by start() for every stdio server
            return stdio_client(parameters, errlog=self._errlog)
        assert server.url is not None  # McpServer guarantees one of the two
        http = await stack.enter_async_context(
            httpx2.AsyncClient(
                headers={key: value.get_secret_value() for key, value in server.headers.items()},
                timeout=httpx2.Timeout(server.timeout_s, read=max(HTTP_READ_TIMEOUT_S, server.timeout_s)),
            )
        )
        return streamable_http_client(server.url, http_client=http)

    def _stderr_tail(self) -> str:
        if self._errlog is None:
            return ""
        try:
            self._errlog.seek(0)
            tail = self._errlog.read()[-STDERR_TAIL_CHARS:].strip()
        except (OSError, ValueError):  # ValueError: already closed
            return ""
        return f"\nits stderr ends with:\n{tail}" if tail else ""


@dataclass
class McpTools:
    """The open sessions of one run and the tools they offer."""

    tools: list[Tool]
    sessions: list[McpSession]

    async def aclose(self) -> None:
        """Close every session (concurrently: each stdio shutdown may wait a few seconds)."""
        await asyncio.gather(*(session.aclose() for session in self.sessions))


async def open_servers(servers: Sequence[McpServer]) -> McpTools:
    """Start or connect to every server at once and wrap the tools each lists; when one fails, all are
    closed again and its ``ConfigError`` is raised (the first server's, when several fail)."""
    sessions = [McpSession(server) for server in servers]
    try:
        outcomes = await asyncio.gather(*(session.start() for session in sessions), return_exceptions=True)
        tools: list[Tool] = []
        for session, outcome in zip(sessions, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                raise outcome
            tools.extend(_wrap_tools(session, outcome))
    except BaseException:
        await McpTools([], sessions).aclose()
        raise
    return McpTools(tools, sessions)


def tool_name(server: str, tool: str, taken: set[str]) -> str:
    """``<server>__<tool>`` within OpenAI's ``^[a-zA-Z0-9_-]{1,64}$``; a name that had to be cut, or
    that would repeat one in ``taken`` once sanitized, ends in a hash of the tool's own name."""
    name = _UNSAFE.sub("_", f"{server}{SEPARATOR}{tool}")
    if _NAME.match(name) and name not in taken:
        return name
    return f"{name[:55]}_{hashlib.sha256(tool.encode()).hexdigest()[:8]}"


def result_to_tool_result(server: str, tool: str, result: mcp_types.CallToolResult) -> ToolResult:
    """The model's view of a call's result: text blocks joined, other blocks described in a line."""
    parts = [_describe_block(block) for block in result.content]
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    text = "\n".join(parts) or "(the tool returned nothing)"
    data = {"server": server, "tool": tool, "blocks": [block.type for block in result.content]}
    if result.is_error:
        return error_result(text, "McpToolError", **data)
    return ToolResult(text=text, data=data)


async def _list_tools(client: Client) -> list[mcp_types.Tool]:
    tools: list[mcp_types.Tool] = []
    cursor: str | None = None
    for _ in range(MAX_LIST_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            break
    return tools


def _wrap_tools(session: McpSession, listed: list[mcp_types.Tool]) -> list[Tool]:
    server = session.server
    offered = {spec.name: spec for spec in listed}
    if server.tools is not None:
        missing = [name for name in server.tools if name not in offered]
        if missing:
            raise ConfigError(
                f"MCP server {server.name!r} has no tool named {', '.join(map(repr, missing))}; "
                f"it offers: {', '.join(offered) or 'nothing'}"
            )
        offered = {name: offered[name] for name in server.tools}
    taken: set[str] = set()
    tools = []
    for spec in offered.values():
        name = tool_name(server.name, spec.name, taken)
        taken.add(name)
        tools.append(_wrap(session, spec, name))
    logger.info("MCP server %s: %d tool(s)", server.name, len(tools))
    return tools


def _wrap(session: McpSession, spec: mcp_types.Tool, name: str) -> Tool:
    async def run(args: McpArguments, ctx: ToolContext) -> ToolResult:
        return await session.call(spec.name, args.model_dump())

    description, cut = truncate((spec.description or spec.title or "").strip(), DESCRIPTION_MAX_CHARS)
    schema = {"type": "object", "properties": {}, **spec.input_schema}
    return Tool(name, McpArguments, run, description + (" …" if cut else ""), parameters=schema)


def _describe_block(block: mcp_types.ContentBlock) -> str:
    if isinstance(block, mcp_types.TextContent):
        return block.text
    if isinstance(block, mcp_types.ImageContent | mcp_types.AudioContent):
        size = len(block.data) * 3 // 4 - (len(block.data) - len(block.data.rstrip("=")))  # base64
        return f"[{block.type}: {block.mime_type}, {size} bytes, not shown]"
    if isinstance(block, mcp_types.ResourceLink):
        return f"[resource link: {block.name} {block.uri}]"
    resource = block.resource
    if isinstance(resource, mcp_types.TextResourceContents):
        return f"[resource {resource.uri}]\n{resource.text}"
    return f"[resource {resource.uri}: {resource.mime_type or 'binary'}, not shown]"


def _reason(exc: BaseException) -> str:
    """The innermost cause of ``exc`` in one line (the SDK wraps failures in nested task-group groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}".strip()
