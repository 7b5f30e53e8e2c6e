"""The OpenAI-compatible face: ``POST /v1/chat/completions`` with the model ``deepresearch``, so any
OpenAI client (SDKs, chat UIs) can ask for a research report.

It is a thin translation onto ``JobManager``, never a second way to run the agent: a request becomes a
job (counted by the same rate limiter as ``POST /v1/research``), and the answer is that job's report.

- **The question** is the text of the last ``user`` message (a string, or the ``text`` parts of a
  content list). Earlier messages, ``max_tokens``, ``temperature``, ``tools`` and the other sampling
  fields are accepted and ignored: a research run has its own budgets.
- **Run options** travel in the extension field ``research``, a ``ResearchOptions`` object
  (``max_steps``, ``max_cost``, ``max_tokens``, ``max_time``, ``language``); with the OpenAI SDK:
  ``extra_body={"research": {"max_steps": 8}}``. Nothing in a request can name an endpoint, a key, a
  tool or an MCP server — ``ResearchOptions`` refuses any other field.
- **Streaming** (``stream: true``) sends ``chat.completion.chunk`` events: progress as
  ``delta.reasoning_content`` lines derived from the run's events ("step 2: searching: …"), then the
  report Markdown as ``delta.content``, a chunk with ``finish_reason: "stop"``, a usage chunk when
  ``stream_options.include_usage`` is set, and ``data: [DONE]``. A failed run sends an
  ``{"error": …}`` event before ``[DONE]``; without streaming it answers 502 in OpenAI's error shape.
- **The job outlives the connection**: a client that disconnects leaves it running. Its id is in the
  completion id (``chatcmpl-<job id>``) and the ``X-DeepResearch-Job`` header, so the report can be
  fetched later from ``/v1/research/<job id>``.

The app's guard (``server/app.py``) checks every request here first: Host, Origin, the token, and
``Content-Type: application/json`` (a page can post a form or text/plain cross-site, never JSON).

Progress lines come from ``server/progress.py``, shared with the MCP face.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deepresearch.errors import ConfigError
from deepresearch.events import (
    parse_event,
)
from deepresearch.server.jobs import Job, JobManager, ResearchOptions, job_report
from deepresearch.server.progress import progress_line
from deepresearch.tools.execute import describe_validation_error

MODEL_ID = "deepresearch"
"""The one model this endpoint serves; any other name is ``model_not_found``."""
JOB_HEADER = "X-DeepResearch-Job"
REPORT_CHUNK_CHARS = 1000
"""The report is streamed in pieces of about this size, cut at line ends."""
"""Progress lines are cut here: they are a glance at the run, not its record."""


# --- request shape


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatRequest(BaseModel):
    """A standard chat body; fields this endpoint does not use are allowed and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    research: ResearchOptions = Field(default_factory=ResearchOptions)
    """The extension: budgets and language for the run (``extra_body={"research": {...}}``)."""

    def question(self) -> str:
        """The last user message's text; empty when there is none."""
        for message in reversed(self.messages):
            if message.role != "user":
                continue
            if isinstance(message.content, str):
                return message.content.strip()
            parts = [p.get("text") for p in message.content or [] if p.get("type") == "text"]
            return "\n".join(p for p in parts if isinstance(p, str)).strip()
        return ""


def openai_router(jobs: JobManager, *, admit: Callable[[Request], str], keepalive_s: float) -> APIRouter:
    """``/v1/models`` and ``/v1/chat/completions`` over ``jobs``; ``admit`` is the app's rate-limit gate
    (it returns the client's key, or raises a 429 ``HTTPException``); ``keepalive_s``: the longest silence in
    a stream before a comment line keeps proxies from closing it."""
    router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])

    @router.get("/models")
    async def list_models() -> dict[str, Any]:
        """The models an OpenAI client may name: only ``deepresearch``."""
        return {"object": "list", "data": [_model_card()]}

    @router.get("/models/{model}", response_model=None)
    async def get_model(model: str) -> dict[str, Any] | JSONResponse:
        if model != MODEL_ID:
            return _model_not_found(model)
        return _model_card()

    @router.post("/chat/completions", response_model=None)
    async def chat_completions(request: Request) -> Response:
        """A research report as a chat completion (see the module docstring for the extension field
        ``research`` and the streamed progress)."""
        try:
            body = ChatRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            return openai_error(400, describe_validation_error(exc), code="invalid_request")
        if body.model != MODEL_ID:
            return _model_not_found(body.model)
        question = body.question()
        if not question:
            return openai_error(400, "no user message with text: the last user message is the question")
        try:
            client = admit(request)
        except HTTPException as exc:
            return openai_error(
                exc.status_code,
                str(exc.detail),
                kind="rate_limit_error",
                code="rate_limit_exceeded",
                headers=dict(exc.headers or {}),
            )
        try:
            job = jobs.submit(question, body.research, client=client)
        except ConfigError as exc:
            closing = "shutting down" in str(exc)
            return openai_error(503 if closing else 400, str(exc), kind="server_error" if closing else None)
        completion = _Completion(f"chatcmpl-{job.id}", int(time.time()))
        headers = {JOB_HEADER: job.id}
        if body.stream:
            include_usage = body.stream_options is not None and body.stream_options.include_usage
            return StreamingResponse(
                _stream(jobs, job.id, completion, include_usage=include_usage, keepalive_s=keepalive_s),
                media_type="text/event-stream",
                headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        final = await jobs.wait(job.id)
        if final is None or final.status != "done":
            return _run_error(final, job.id, headers=headers)
        report = job_report(final)
        return JSONResponse(completion.whole(_markdown(report), report["usage"]), headers=headers)

    return router


def _model_card() -> dict[str, Any]:
    return {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "deepresearch"}


def openai_error(
    status: int,
    message: str,
    *,
    kind: str | None = None,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error in OpenAI's shape, which every OpenAI client knows how to show."""
    error = _error_body(message, kind or "invalid_request_error", code, param)
    return JSONResponse(error, status_code=status, headers=headers)


def _error_body(message: str, kind: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _model_not_found(model: str) -> JSONResponse:
    return openai_error(
        404,
        f"The model {model!r} does not exist; this server offers {MODEL_ID!r}.",
        code="model_not_found",
        param="model",
    )


def _failure(job: Job | None, job_id: str) -> tuple[str, str]:
    """The message and code for a run that ended without a report."""
    if job is None:
        return f"research job {job_id} disappeared", "research_failed"
    if job.status == "failed":
        return f"research job {job.id} failed: {job.error or 'no error recorded'}", "research_failed"
    return f"research job {job.id} ended {job.status}", f"research_{job.status}"


def _run_error(job: Job | None, job_id: str, *, headers: dict[str, str]) -> JSONResponse:
    message, code = _failure(job, job_id)
    return openai_error(502, message, kind="server_error", code=code, headers=headers)


def _markdown(report: dict[str, Any]) -> str:
    written = report.get("report") or {}
    return str(written.get("markdown", ""))


def _usage(usage: dict[str, Any]) -> dict[str, int]:
    prompt, completion = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class _Completion:
    """The fixed parts of one completion's responses (id, time) and the objects built from them."""

    def __init__(self, completion_id: str, created: int) -> None:
        self.id, self.created = completion_id, created

    def whole(self, content: str, usage: dict[str, Any]) -> dict[str, Any]:
        message = {"role": "assistant", "content": content}
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": MODEL_ID,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
            "usage": _usage(usage),
        }

    def chunk(
        self,
        delta: dict[str, str],
        finish: Literal["stop"] | None = None,
        *,
        usage: dict[str, Any] | None = None,
    ) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        payload: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": MODEL_ID,
            "choices": [] if usage is not None else [choice],
        }
        if usage is not None:
            payload["usage"] = _usage(usage)
        return _data(payload)


def _data(payload: dict[str, Any] | str) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {text}\n\n".encode()


async def _stream(
    jobs: JobManager, job_id: str, completion: _Completion, *, include_usage: bool, keepalive_s: float
) -> AsyncIterator[bytes]:
    """The SSE body. A disconnect ends this generator only: the job goes on in its worker."""
    # a pump task, so that waiting with a timeout (keep-alives) never cancels the event generator
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    async def pump() -> None:
        try:
            async for item in jobs.events(job_id):
                line = progress_line(parse_event(item.data))
                if line:
                    queue.put_nowait(line)
        finally:
            queue.put_nowait(None)

    task = asyncio.create_task(pump())
    try:
        yield completion.chunk({"role": "assistant", "content": "", "reasoning_content": ""})
        yield completion.chunk({"reasoning_content": f"research job {job_id} queued\n"})
        while True:
            try:
                line = await asyncio.wait_for(queue.get(), keepalive_s)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if line is None:
                break
            yield completion.chunk({"reasoning_content": line + "\n"})
        await task  # surfaces an error in reading the events rather than ending the stream quietly
        job = await jobs.wait(job_id)
        if job is None or job.status != "done":
            message, code = _failure(job, job_id)
            yield _data(_error_body(message, "server_error", code))
            yield _data("[DONE]")
            return
        report = job_report(job)
        for piece in _pieces(_markdown(report), REPORT_CHUNK_CHARS):
            yield completion.chunk({"content": piece})
        yield completion.chunk({}, "stop")
        if include_usage:
            yield completion.chunk({}, usage=report["usage"])
        yield _data("[DONE]")
    finally:
        task.cancel()


def _pieces(text: str, size: int) -> list[str]:
    """``text`` in pieces of about ``size`` characters, cut after a line end where one is near."""
    pieces: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        if current and len(current) + len(line) > size:
            pieces.append(current)
            current = ""
        current += line
    if current:
        pieces.append(current)
    return pieces
