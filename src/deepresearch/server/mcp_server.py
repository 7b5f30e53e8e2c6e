"""The MCP face: one tool, ``deep_research``, for agents and chat apps that speak the Model Context
Protocol — over stdio (``deepresearch mcp``, its own ``JobManager``) or streamable HTTP (``/mcp`` on the
server app, sharing the app's ``JobManager``, behind its Bearer token and rate limiter).

Like the OpenAI face it only translates: a call submits a job, follows the job's events as MCP progress
notifications (``progress_line``: "step 2: searching: …"), and returns the report when the job ends —
the Markdown report and a list of its sources as text, and the same as structured content
(``ResearchResult``). A run that fails comes back as an ``isError`` result naming the job.

The job belongs to the manager, not to the call: a client that cancels the call or drops the
connection leaves the job running (its id is in the first progress message, and the HTTP server's
``/v1/research/<id>`` has the report later). On stdio the jobs live in the data dir, so a job cut off
by the client closing the server is resumed the next time ``deepresearch mcp`` starts on that dir.

The tool's arguments are a question and a step budget: nothing a caller sends can name a model
endpoint, a key, a shell setting, another tool or an MCP server to start (``ResearchOptions`` refuses
extra fields). The low-level SDK ``Server`` is used rather than ``MCPServer`` because the latter
configures the root logger when it is built, and the library installs no log handlers.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.session import ServerSession
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp_types import (
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
    ToolAnnotations,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.routing import Route

from deepresearch.config import Settings
from deepresearch.errors import ConfigError
from deepresearch.events import parse_event
from deepresearch.server.jobs import (
    DEFAULT_GRACE_S,
    DEFAULT_WORKERS,
    QUESTION_MAX_CHARS,
    Job,
    JobManager,
    ResearchOptions,
    job_report,
)
from deepresearch.server.progress import progress_line
from deepresearch.tools.execute import describe_validation_error

SERVER_NAME = "deepresearch"
TOOL_NAME = "deep_research"
MCP_PATH = "/mcp"
INSTRUCTIONS = (
    "deep_research runs a research agent that searches, reads sources and writes a cited Markdown "
    "report. A call takes minutes; progress notifications say what it is doing."
)


class DeepResearchArgs(BaseModel):
    """Research a question: the agent plans, searches, reads the sources it finds, cross-checks them and
    writes a Markdown report whose every citation points to a source it read. Takes minutes; send a
    progress token to follow it. Returns the report and its sources."""

    model_config = ConfigDict(extra="forbid")

    question: str = Field(
        min_length=1,
        max_length=QUESTION_MAX_CHARS,
        description="The research question, with any context or constraints the report should respect.",
    )
    max_steps: int | None = Field(
        default=None,
        ge=1,
        le=200,
        description="Model calls before the report is forced (omit for the server's default).",
    )


class ReportSource(BaseModel):
    """A source the report cites (``n`` is its number there) or that the agent read without citing."""

    n: int | None = None
    key: str
    url: str
    title: str = ""
    fetched: bool = False


class ResearchResult(BaseModel):
    """The structured result of ``deep_research``."""

    job_id: str
    report: str
    """The report, Markdown, with ``[n]`` citations and a References section."""
    sources: list[ReportSource]
    steps: int
    usage: dict[str, Any]
    outcome: str | None = None
    """``report`` (a cited report), ``extractive`` (quoted passages), ``uncited`` or ``empty`` (no usable
    report: the text says why)."""
    outcome_reason: str | None = None


def build_server(jobs: JobManager, *, admit: Callable[[Request], str] | None = None) -> Server[Any]:
    """The MCP server over ``jobs``. ``admit`` is the HTTP app's rate-limit gate (it returns the client's
    key or raises a 429 ``HTTPException``); without it (stdio) every call is admitted."""
    tool = Tool(
        name=TOOL_NAME,
        title="Deep research",
        description=inspect.cleandoc(DeepResearchArgs.__doc__ or ""),
        input_schema=DeepResearchArgs.model_json_schema(),
        output_schema=ResearchResult.model_json_schema(),
        annotations=ToolAnnotations(read_only_hint=True, open_world_hint=True),
    )

    async def list_tools(
        ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        return ListToolsResult(tools=[tool])

    async def call_tool(ctx: ServerRequestContext[Any], params: CallToolRequestParams) -> CallToolResult:
        if params.name != TOOL_NAME:
            return _error(f"there is no tool {params.name!r}; this server offers {TOOL_NAME!r}")
        try:
            args = DeepResearchArgs.model_validate(params.arguments or {})
        except ValidationError as exc:
            return _error(f"invalid arguments: {describe_validation_error(exc)}")
        client = "mcp"
        if admit is not None and isinstance(ctx.request, Request):
            try:
                client = admit(ctx.request)
            except HTTPException as exc:
                retry = (exc.headers or {}).get("Retry-After")
                return _error(f"{exc.detail}" + (f" (retry in {retry} s)" if retry else ""))
        try:
            job = jobs.submit(args.question, ResearchOptions(max_steps=args.max_steps), client=client)
        except ConfigError as exc:
            return _error(str(exc))
        return await _follow(jobs, job.id, ctx.session)

    return Server(
        SERVER_NAME,
        version=_version(),
        title="deepresearch",
        instructions=INSTRUCTIONS,
        get_tool_input_schema=lambda name: tool.input_schema if name == TOOL_NAME else None,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


async def _follow(jobs: JobManager, job_id: str, session: ServerSession) -> CallToolResult:
    """Relay the job's events as progress until it ends, then answer with its report."""
    sent = 0

    async def say(message: str) -> None:
        nonlocal sent
        sent += 1  # progress must grow with every notification; steps repeat, so count messages
        await session.report_progress(sent, None, message)

    await say(f"research job {job_id} queued")
    async for item in jobs.events(job_id):
        line = progress_line(parse_event(item.data))
        if line:
            await say(line)
    job = await jobs.wait(job_id)
    if job is None or job.status != "done":
        return _error(_failure(job, job_id))
    return _result(job)


def _failure(job: Job | None, job_id: str) -> str:
    if job is None:
        return f"research job {job_id} disappeared"
    if job.status == "failed":
        return f"research job {job.id} failed: {job.error or 'no error recorded'}"
    return f"research job {job.id} ended {job.status}"


def _result(job: Job) -> CallToolResult:
    found = job_report(job)
    written = found.get("report") or {}
    sources = [
        ReportSource.model_validate(s)
        for s in found["sources"]
        if isinstance(s, dict) and (s.get("n") is not None or s.get("fetched"))
    ]
    sources.sort(key=lambda s: (s.n is None, s.n or 0))
    result = ResearchResult(
        job_id=job.id,
        report=str(written.get("markdown", "")),
        sources=sources,
        steps=int(found["steps"]),
        usage=dict(found["usage"]),
        outcome=found.get("outcome"),
        outcome_reason=found.get("outcome_reason"),
    )
    return CallToolResult(
        content=[
            TextContent(type="text", text=result.report),
            TextContent(type="text", text=_sources_text(result)),
        ],
        structured_content=result.model_dump(mode="json"),
    )


def _sources_text(result: ResearchResult) -> str:
    cited = [s for s in result.sources if s.n is not None]
    read = [s for s in result.sources if s.n is None]
    lines = [f"Sources of research job {result.job_id} ({result.steps} steps):"]
    if result.outcome:
        lines.append(f"Outcome: {result.outcome} — {result.outcome_reason or ''}".rstrip(" —"))
    lines += [f"[{s.n}] {s.title or s.url} — {s.url}" for s in cited] or ["(none cited)"]
    if read:
        lines += ["", "Read but not cited:"] + [f"- {s.title or s.url} — {s.url}" for s in read]
    return "\n".join(lines)


def _error(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)


# --- transports


def mount_mcp(
    app: Starlette,
    jobs: JobManager,
    *,
    admit: Callable[[Request], str] | None = None,
) -> StreamableHTTPSessionManager:
    """Serve the MCP server at ``/mcp`` on ``app`` (streamable HTTP). The caller runs the returned
    session manager's ``run()`` inside the app's lifespan; requests before that fail.

    The SDK's own Host/Origin check (DNS rebinding protection) is left off: the app checks Host,
    Origin and the content type of every route, ``/mcp`` included, by one rule that also knows the
    hosts a user named (``server/app.py``); two rules would disagree behind a reverse proxy.
    """
    sessions = StreamableHTTPSessionManager(app=build_server(jobs, admit=admit))
    # a Route, not a Mount: a Mount answers "/mcp" with a redirect to "/mcp/", which clients need not follow
    app.router.routes.append(Route(MCP_PATH, StreamableHTTPASGIApp(sessions), include_in_schema=False))
    return sessions


async def serve_stdio(
    settings: Settings,
    *,
    data_dir: Path,
    workers: int = DEFAULT_WORKERS,
    grace_s: float = DEFAULT_GRACE_S,
) -> None:
    """Serve MCP on this process's stdin/stdout until the client closes stdin; jobs run in-process
    over ``data_dir`` and a shutdown lets running ones finish their step (``grace_s``)."""
    jobs = JobManager(settings, data_dir=data_dir, workers=workers, grace_s=grace_s)
    server = build_server(jobs)
    await jobs.start()
    try:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
    finally:
        await jobs.shutdown()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("deepresearch")
    except PackageNotFoundError:
        return "0"
