"""The HTTP face of the server: research jobs over a small JSON API with live Server-Sent Events.

Everything a request starts goes through ``JobManager`` — the same ``research``/``resume`` as the CLI,
the same run directories. This module is the guard at the door, for every route (the JSON API, the
OpenAI-compatible face, ``/mcp`` and the page alike):

- **Bind and auth**: 127.0.0.1 by default; any other address needs an API token (``Authorization:
  Bearer``), checked in constant time on every route but the health check (the page itself loads
  without it and asks for the token).
- **Host** (DNS rebinding: a web page that points its own name at 127.0.0.1 reaches the server with
  its own name as ``Host``): on a loopback bind only loopback names (``127.0.0.1``, ``localhost``,
  ``[::1]``, any port), the bound address and the names in ``allowed_hosts`` (``--allowed-host``: a
  reverse proxy's public name; ``*`` turns the check off) are answered; anything else gets 421. On
  any other bind the token already keeps strangers out, so the check is on only when hosts are listed.
- **Origin** (cross-site requests): a state-changing request (POST, PUT, PATCH, DELETE) whose
  ``Origin`` is foreign gets 403 on every bind. Allowed are no Origin (not a browser), the server's
  own origin (its host and port are the ``Host``), a listed CORS origin and a listed host;
  ``Origin: null`` (sandboxed frames, local files) is foreign.
- **Bodies are JSON**: a state-changing request with a body must say ``Content-Type:
  application/json`` (415 otherwise). The types a page may send cross-site without a CORS preflight —
  text/plain, form, multipart, none — are the ones refused, so a posted form cannot start a research.
  A body-less POST (cancel) needs no type; what stops a page from sending it is the Origin check, as
  browsers send ``Origin`` with every cross-site POST.
- **CORS** is closed unless origins are listed.
- **Limits**: request bodies over ``max_body_bytes`` are refused (413) before they are read whole; each
  client gets ``rate_per_minute`` job submissions (429 with ``Retry-After``). The client is the peer
  address: ``X-Forwarded-For`` names it only with ``trust_forwarded_for`` (behind a proxy that sets
  the header), since anyone may send a fresh one per request; and the token is no key, as there is
  one for everybody (an ``Authorization`` header a tokenless server never checks was a free new key).
  uvicorn by default puts a value from ``X-Forwarded-For`` in place of a loopback peer, so a peer
  found in that header counts as loopback, and all loopback requests share one bucket.
- **Errors and secrets**: responses carry run files and events, which hold ``Settings.public()`` only;
  error bodies are one line (validation errors: where and what, 422) and never echo headers, settings
  or the input — which may be ``NaN`` or a lone surrogate, neither of which JSON can carry.
- A client that disconnects from an event stream leaves the job running.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr

from deepresearch.config import Settings
from deepresearch.errors import ConfigError
from deepresearch.runs import RunDir
from deepresearch.server.guards import (
    BodyLimit,
    HostPolicy,
    RateLimiter,
    authorized,
    client_of,
    config_host,
    is_loopback,
    refusal,
)
from deepresearch.server.jobs import (
    QUESTION_MAX_CHARS,
    Job,
    JobManager,
    JobStatus,
    ResearchOptions,
    check_text,
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
    allowed_hosts: list[str] = field(default_factory=list)
    """More names the ``Host`` header may carry (``name`` for any port, ``name:port`` for one), e.g. a
    reverse proxy's public name; ``*`` turns the Host check off. See the module docstring."""
    trust_forwarded_for: bool = False
    """Take the client's address for the rate limit from ``X-Forwarded-For`` (its last entry): only
    behind a proxy that sets the header, since a client may send any."""

    def check(self) -> None:
        """Refuse a configuration that would expose the agent: a public bind without a token."""
        if not is_loopback(self.host) and (self.token is None or not self.token.get_secret_value()):
            raise ConfigError(
                f"binding to {self.host} exposes the agent (it fetches URLs and runs shell commands): "
                "set an API token (--token or DEEPRESEARCH_SERVER_TOKEN), or bind to 127.0.0.1"
            )
        for name in self.allowed_hosts:
            if name != "*" and config_host(name) is None:
                raise ConfigError(f"--allowed-host {name!r} is not a host name, address or name:port")
        if self.token is not None and 0 < len(self.token.get_secret_value()) < 16:
            raise ConfigError("the API token must be at least 16 characters")
        if self.workers < 1:
            raise ConfigError("the server needs at least one worker")


# --- request and response shapes


class ResearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: Annotated[str, AfterValidator(check_text)] = Field(min_length=1, max_length=QUESTION_MAX_CHARS)
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
    outcome: str | None = None
    """``report``, ``extractive``, ``uncited`` or ``empty`` once the run is done (``run.json``)."""
    outcome_reason: str | None = None
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


OPEN_PATHS = frozenset({"/", "/healthz", "/favicon.ico"})
"""Served without the token: the page (it asks for the token) and the health check."""


def _printable(value: object) -> str | int:
    """A location part or message as JSON can carry it: lone surrogates escaped."""
    if isinstance(value, int):
        return value
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """422 with where and what is wrong; never the input, which may be NaN or a lone surrogate."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [
        {"type": e["type"], "loc": [_printable(p) for p in e["loc"]], "msg": _printable(e["msg"])}
        for e in errors[:20]
    ]
    return JSONResponse({"detail": detail}, status_code=422)


# --- the app


def create_app(settings: Settings, config: ServerConfig, *, manager: JobManager | None = None) -> FastAPI:
    """The ASGI app; the job manager starts with it (lifespan) and shuts down gracefully with it."""
    config.check()
    jobs = manager or JobManager(
        settings, data_dir=config.data_dir, workers=config.workers, grace_s=config.grace_s
    )
    limiter = RateLimiter(config.rate_per_minute)
    policy = HostPolicy.of(config.host, config.allowed_hosts, config.cors_origins)

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
    app.add_exception_handler(RequestValidationError, _invalid_request)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        refused = refusal(request, policy)
        if refused is not None:
            return refused
        path = request.url.path
        guarded = path not in OPEN_PATHS and not path.startswith("/static/")
        if guarded and not authorized(request, config.token):
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
        client = client_of(request, trust_forwarded_for=config.trust_forwarded_for)
        wait = limiter.take(client)
        if wait > 0:
            raise HTTPException(
                429, "too many research requests; slow down", headers={"Retry-After": str(math.ceil(wait))}
            )
        return client

    # the OpenAI-compatible and MCP faces: the same jobs, the same guard and rate limit
    app.include_router(openai_router(jobs, admit=admit, keepalive_s=KEEPALIVE_S))
    mcp_sessions = mount_mcp(app, jobs, admit=admit)  # its Host/Origin checks are the guard's

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
        run = RunDir(Path(found(job_id).run_dir))
        path = run.report_path if kind == "md" else run.report_html_path
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
