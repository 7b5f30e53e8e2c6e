"""The HTTP face of the server: research jobs over a small JSON API with live Server-Sent Events.

Everything a request starts goes through ``JobManager`` — the same ``research``/``resume`` as the CLI,
the same run directories. This module is the guard at the door:

- **Bind and auth**: 127.0.0.1 by default; any other address needs an API token (``Authorization:
  Bearer``), checked in constant time on every route but the health check (the page itself loads
  without it and asks for the token).
- **CORS** is closed unless origins are listed.
- **Limits**: request bodies over ``max_body_bytes`` are refused (413) before they are read whole; each
  client (token, else address) gets ``rate_per_minute`` job submissions (429 with ``Retry-After``).
- **Secrets**: responses carry run files and events, which hold ``Settings.public()`` only; error
  bodies are one line and never echo headers or settings.
- A client that disconnects from an event stream leaves the job running.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deepresearch.config import Settings
from deepresearch.errors import ConfigError
from deepresearch.server.jobs import (
    QUESTION_MAX_CHARS,
    Job,
    JobManager,
    JobStatus,
    ResearchOptions,
    job_report,
)
from deepresearch.server.mcp_server import mount_mcp
from deepresearch.server.openai_compat import openai_router
from deepresearch.server.ui import ui_router

KEEPALIVE_S = 15.0
DEFAULT_PORT = 8000


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: SecretStr | None = None
    data_dir: Path = Path("server-data")
    workers: int = 4
    grace_s: float = 30.0
    cors_origins: list[str] = field(default_factory=list)
    max_body_bytes: int = 64 * 1024
    rate_per_minute: int = 30
    """Job submissions per client per minute (a burst of this many is allowed)."""

    def check(self) -> None:
        """Refuse a configuration that would expose the agent: a public bind without a token."""
        if not is_loopback(self.host) and (self.token is None or not self.token.get_secret_value()):
            raise ConfigError(
                f"binding to {self.host} exposes the agent (it fetches URLs and runs shell commands): "
                "set an API token (--token or DEEPRESEARCH_SERVER_TOKEN), or bind to 127.0.0.1"
            )
        if self.token is not None and 0 < len(self.token.get_secret_value()) < 16:
            raise ConfigError("the API token must be at least 16 characters")
        if self.workers < 1:
            raise ConfigError("the server needs at least one worker")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- request and response shapes


class ResearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=QUESTION_MAX_CHARS)
    options: ResearchOptions = Field(default_factory=ResearchOptions)


class JobLinks(BaseModel):
    self: str
    events: str
    cancel: str
    report_markdown: str
    report_html: str


class JobSummary(BaseModel):
    id: str
    question: str
    status: JobStatus
    created: str
    started: str = ""
    ended: str = ""
    error: str = ""
    links: JobLinks


class JobDetail(JobSummary):
    options: dict[str, Any] = Field(default_factory=dict)
    steps: int = 0
    usage: dict[str, Any] = Field(default_factory=dict)
    citations: dict[str, Any] = Field(default_factory=dict)
    report: dict[str, str] | None = None
    """``markdown`` and ``html`` once the run has written its report."""
    sources: list[dict[str, Any]] = Field(default_factory=list)


class JobList(BaseModel):
    jobs: list[JobSummary]


def _links(job_id: str) -> JobLinks:
    base = f"/v1/research/{job_id}"
    return JobLinks(
        self=base,
        events=f"{base}/events",
        cancel=f"{base}/cancel",
        report_markdown=f"{base}/report.md",
        report_html=f"{base}/report.html",
    )


def summary(job: Job) -> JobSummary:
    return JobSummary(
        id=job.id,
        question=job.question,
        status=job.status,
        created=job.created,
        started=job.started,
        ended=job.ended,
        error=job.error,
        links=_links(job.id),
    )


def detail(job: Job) -> JobDetail:
    return JobDetail(
        **summary(job).model_dump(),
        options=job.research_options().model_dump(exclude_none=True),
        **job_report(job),
    )


# --- guards


class BodyLimit:
    """413 for a body over ``limit`` bytes, by its Content-Length or as it streams in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _plain(send, 413, "request body too large")
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _plain(send, 413, "request body too large")


class _TooLarge(Exception):
    pass


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RateLimiter:
    """A token bucket per client: ``per_minute`` submissions, refilled continuously."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, client: str) -> float:
        """0 when allowed, else the seconds until the next submission would be."""
        if self.capacity <= 0:
            return 0.0
        now = time.monotonic()
        tokens, since = self._buckets.get(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - since) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens - 1.0, now)
        if len(self._buckets) > 10_000:  # forget idle clients rather than grow without bound
            self._buckets = {c: b for c, b in self._buckets.items() if now - b[1] < 120}
        return 0.0


OPEN_PATHS = frozenset({"/", "/healthz", "/favicon.ico"})
"""Served without the token: the page (it asks for the token) and the health check."""


def _authorized(request: Request, token: SecretStr | None) -> bool:
    if token is None or not token.get_secret_value():
        return True
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.get_secret_value().encode())


def client_of(request: Request) -> str:
    given = request.headers.get("authorization", "")
    if given:
        return "token:" + given[-8:]  # the bucket key, never logged or echoed
    return request.client.host if request.client else "unknown"


# --- the app


def create_app(settings: Settings, config: ServerConfig, *, manager: JobManager | None = None) -> FastAPI:
    """The ASGI app; the job manager starts with it (lifespan) and shuts down gracefully with it."""
    config.check()
    jobs = manager or JobManager(
        settings, data_dir=config.data_dir, workers=config.workers, grace_s=config.grace_s
    )
    limiter = RateLimiter(config.rate_per_minute)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await jobs.start()
        try:
            async with mcp_sessions.run():  # the /mcp sessions end before the jobs stop
                yield
        finally:
            await jobs.shutdown()

    app = FastAPI(
        title="deepresearch",
        summary="Research jobs: one ReAct agent that plans, searches, reads and writes a cited report.",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.jobs = jobs
    app.state.config = config

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        guarded = path not in OPEN_PATHS and not path.startswith("/static/")
        if guarded and not _authorized(request, config.token):
            return JSONResponse(
                {"detail": "missing or wrong API token"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    def admit(request: Request) -> str:
        client = client_of(request)
        wait = limiter.take(client)
        if wait > 0:
            raise HTTPException(
                429, "too many research requests; slow down", headers={"Retry-After": str(math.ceil(wait))}
            )
        return client

    # the OpenAI-compatible and MCP faces: the same jobs, the same guard and rate limit
    app.include_router(openai_router(jobs, admit=admit, keepalive_s=KEEPALIVE_S))
    mcp_sessions = mount_mcp(app, jobs, admit=admit, loopback=is_loopback(config.host))

    def found(job_id: str) -> Job:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r}")
        return job

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/research", status_code=202, response_model=JobSummary)
    async def create_research(body: ResearchRequest, request: Request) -> JobSummary:
        """Queue a research job; follow it at ``links.events``."""
        client = admit(request)
        try:
            job = jobs.submit(body.question, body.options, client=client)
        except ConfigError as exc:
            raise HTTPException(400 if "shutting down" not in str(exc) else 503, str(exc)) from None
        return summary(job)

    @app.get("/v1/research", response_model=JobList)
    async def list_research(
        status: JobStatus | None = None,
        limit: int = Query(50, ge=1, le=500),
        before: str | None = None,
    ) -> JobList:
        """Jobs, newest first (``before``: a job id, to page on)."""
        return JobList(
            jobs=[summary(job) for job in jobs.store.recent(status=status, limit=limit, before=before)]
        )

    @app.get("/v1/research/{job_id}", response_model=JobDetail)
    async def get_research(job_id: str) -> JobDetail:
        """Status, usage, the report (Markdown and HTML) and the sources."""
        return detail(found(job_id))

    @app.post("/v1/research/{job_id}/cancel", response_model=JobSummary)
    async def cancel_research(job_id: str) -> JobSummary:
        """Cancel a queued or running job; a finished job is returned unchanged."""
        found(job_id)
        job = jobs.cancel(job_id)
        assert job is not None
        return summary(job)

    @app.get("/v1/research/{job_id}/report.{kind}", response_class=PlainTextResponse)
    async def download_report(job_id: str, kind: Literal["md", "html"]) -> Response:
        """The report as a file to download."""
        run_dir = Path(found(job_id).run_dir)
        path = run_dir / ("report.md" if kind == "md" else "report.html")
        if not path.is_file():
            raise HTTPException(404, "the report is not written yet")
        media = "text/markdown; charset=utf-8" if kind == "md" else "text/html; charset=utf-8"
        headers = {"Content-Disposition": f'attachment; filename="deepresearch-{job_id}.{kind}"'}
        if kind == "html":  # opened in a browser: nothing in it may run or load from elsewhere
            headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
        return Response(path.read_text(encoding="utf-8"), media_type=media, headers=headers)

    @app.get("/v1/research/{job_id}/events")
    async def research_events(job_id: str, request: Request) -> StreamingResponse:
        """Server-Sent Events: the run's events from the start (or after ``Last-Event-ID``), then live,
        then an ``end`` event with the job's final status."""
        found(job_id)
        after = _last_event_id(request.headers.get("last-event-id") or request.query_params.get("after"))
        return StreamingResponse(
            _sse(jobs, job_id, after),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
        )
    app.include_router(ui_router())  # the web page: /, /favicon.ico, /static/* (open, see OPEN_PATHS)
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    return app


def _last_event_id(value: str | None) -> int:
    try:
        return max(int(value or 0), 0)
    except ValueError:
        raise HTTPException(400, "Last-Event-ID must be an event number") from None


async def _sse(jobs: JobManager, job_id: str, after: int) -> AsyncIterator[bytes]:
    # a pump task, so that waiting with a timeout (keep-alives) never cancels the event generator
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def pump() -> None:
        async for item in jobs.events(job_id, after):
            queue.put_nowait(item)
        queue.put_nowait(None)

    task = asyncio.create_task(pump())
    try:
        yield b": deepresearch events\n\n"
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if item is None:
                break
            yield f"id: {item.seq}\nevent: {item.type}\ndata: {item.data}\n\n".encode()
        job = jobs.get(job_id)
        status = job.status if job is not None else "unknown"
        yield f'event: end\ndata: {{"status": "{status}"}}\n\n'.encode()
    finally:
        task.cancel()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("deepresearch")
    except PackageNotFoundError:
        return "0"
