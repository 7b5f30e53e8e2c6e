"""The chat client for any OpenAI-compatible endpoint: one ``complete()`` call, one ``Completion``.

This is the llm package's boundary: httpx errors, HTTP statuses, cut streams and malformed bodies are
translated here into ``LLMError`` and its subclasses, after retries. The agent sees content, reasoning
(``reasoning_content``/``reasoning`` fields or ``<think>`` tags), tool calls (native or, in text and
JSON mode, parsed from the reply), the finish reason, and usage with its cost — the same in streaming and
non-streaming mode.

A connection refused before the endpoint ever answered (a wrong URL, a server not started) is retried once,
quickly, then reported naming the URL: backing off for half a minute cannot make a server appear. Once the
endpoint has answered, a refusal is retried like any connection error (a server restarting).

Performance contract: the request body is written by hand so that messages the agent has already
serialised (``Encoded``) are spliced in verbatim and only new dict messages are encoded; one
``httpx.AsyncClient`` lives as long as the ``ChatClient``; httpx is imported when the first client is
built, so importing this module (``LLMConfig`` is part of the settings) stays cheap.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from deepresearch.config import redact_url
from deepresearch.errors import LLMBadResponse, LLMError, LLMRateLimited, LLMTimeout
from deepresearch.llm.messages import Completion, Encoded, Message, Usage
from deepresearch.llm.pricing import Price, cost_usd, price_for
from deepresearch.llm.reasoning import join_reasoning, split_reasoning
from deepresearch.llm.stream import DONE, RawReply, SSEDecoder, StreamAccumulator, prompt_progress, read_body
from deepresearch.retry import parse_retry_after
from deepresearch.tls import shared_ssl_context

if TYPE_CHECKING:
    import httpx

logger = logging.getLogger(__name__)

RETRY_AFTER_CEILING = 300.0
"""Longest ``Retry-After`` we wait (seconds). A server asking for more is treated as a final answer."""

_CONNECT_TIMEOUT = 30.0
_REFUSED_ATTEMPTS = 2
"""Attempts while the endpoint refuses connections and has never answered: one quick retry."""
_REFUSED_RETRY_DELAY = 0.5
_RETRYABLE_STATUSES = frozenset({408, 409, 429})
_RESERVED_BODY_KEYS = frozenset({"messages", "stream"})
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class LLMConfig(BaseModel):
    """How to reach one model endpoint and how patiently to talk to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str
    """Endpoint root including the version, e.g. ``http://localhost:8000/v1``; requests go to
    ``{base_url}/chat/completions``."""
    model: str
    """Model name sent in every request (and used to look up the price)."""
    api_key: SecretStr | None = None
    """Sent as ``Authorization: Bearer …``; never logged, never in an error message or a repr."""
    stream: bool = True
    """Ask for an SSE stream (with ``stream_options.include_usage``) instead of one JSON body."""
    timeout: float = Field(default=300.0, gt=0)
    """Seconds one attempt may take from sending the request to the end of the reply, streaming
    included. Each retry gets the full amount again; backoff sleeps are not counted."""
    max_retries: int = Field(default=6, ge=0)
    """Retries after the first attempt (so up to ``max_retries + 1`` requests) on 408, 409, 429, 5xx,
    timeouts, connection errors, cut streams and malformed bodies."""
    retry_base_delay: float = Field(default=1.0, ge=0)
    """Upper bound of the first backoff in seconds; it doubles per retry (full jitter)."""
    retry_max_delay: float = Field(default=60.0, ge=0)
    """Upper bound of any jittered backoff; a server's ``Retry-After`` may ask for longer."""
    temperature: float | None = None
    """Sampling temperature; ``None`` leaves the server's default (the key is not sent)."""
    max_output_tokens: int | None = Field(default=16384, gt=0)
    """Sent as ``max_tokens``; ``None`` omits it."""
    extra_body: dict[str, Any] = Field(default_factory=dict)
    """Merged into every request body last, so it can set vendor options (``top_p``,
    ``chat_template_kwargs``, …) or override the fields above; ``messages`` and ``stream`` are refused."""
    tool_mode: Literal["native", "json", "text"] = "native"
    """``native``: OpenAI ``tools``/``tool_calls``. ``json``: one JSON action per reply, constrained by a
    ``response_format`` schema built from the tools, for small local models (``llm/jsonmode.py``).
    ``text``: tools described in the system message and calls parsed from ``<tool_call>`` blocks, for
    models without a tool-call parser on the server."""
    prices: dict[str, Price] = Field(default_factory=dict)
    """Per-model prices that override (or extend) the shipped table in ``llm/prices.toml``."""
    prompt_progress: bool = False
    """Ask llama.cpp's server to report prompt processing in the stream (``return_progress``); set it for
    the embedded server only (another server may refuse the field). It takes effect when streaming and
    the ``ChatClient`` has an ``on_progress`` callback."""

    @field_validator("base_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("extra_body")
    @classmethod
    def _refuse_reserved_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        reserved = _RESERVED_BODY_KEYS & value.keys()
        if reserved:
            raise ValueError(f"extra_body may not set {', '.join(sorted(reserved))}")
        return value


class ChatClient:
    """Sends chat requests to one endpoint, with retries, and returns ``Completion``s.

    ``count_tokens`` estimates usage when the server reports none (``Usage.estimated`` is then set);
    without it, a token is taken to be three characters. ``transport`` replaces the network (tests).
    ``on_progress(processed, total)`` hears how far the server is through the prompt (tokens, the
    cached ones included) when ``config.prompt_progress`` is set and the reply streams; it runs on the
    event loop and an exception it raises is logged, never fails the call. ``sleep`` waits out each
    backoff (``asyncio.sleep``; tests pass one that records the delays instead of spending them).
    """

    def __init__(
        self,
        config: LLMConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        count_tokens: Callable[[str], int] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        import httpx

        self.config = config
        self.price: Price | None = price_for(config.model, config.prices)
        """The model's price, or ``None`` when unknown (costs are then 0.0 and cannot be limited)."""
        self._count_tokens = count_tokens or _estimate_tokens
        self._sleep = sleep
        self._url = f"{config.base_url}/chat/completions"
        self._where = f"{config.model} at {redact_url(config.base_url).partition('?')[0]}"
        self._on_progress = on_progress if config.stream and config.prompt_progress else None
        self._answered = False
        """The endpoint has sent an HTTP response (any status) on this client: it exists."""
        self._secret = config.api_key.get_secret_value() if config.api_key else None
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if config.stream else "application/json",
        }
        if self._secret:
            headers["Authorization"] = f"Bearer {self._secret}"
        loopback = urlsplit(config.base_url).hostname in ("127.0.0.1", "localhost", "::1")
        self._http_options: dict[str, Any] = {
            "headers": headers,
            "timeout": httpx.Timeout(config.timeout, connect=min(config.timeout, _CONNECT_TIMEOUT)),
            "transport": transport,
            "trust_env": not loopback,  # HTTP_PROXY must not capture a server on this machine
            "verify": shared_ssl_context(),
            # Connections are kept alive, loopback too: a new one per request cost a tenth of a
            # benchmark runner's event-loop time. llama.cpp's server drops a kept-alive connection
            # after some requests without saying so; ``_attempt`` sends again on a new connection.
            "limits": httpx.Limits(max_keepalive_connections=20),
        }
        self._http = httpx.AsyncClient(**self._http_options)
        self._loop: asyncio.AbstractEventLoop | None = None
        """The event loop the pool's connections belong to (set by the first call)."""
        fields: dict[str, Any] = {"model": config.model, "stream": config.stream}
        if config.stream:
            fields["stream_options"] = {"include_usage": True}
        if self._on_progress is not None:
            fields["return_progress"] = True
        if config.max_output_tokens is not None:
            fields["max_tokens"] = config.max_output_tokens
        if config.temperature is not None:
            fields["temperature"] = config.temperature
        self._fields = fields
        self._fields_tail = _dumps({**fields, **config.extra_body})[1:]  # '"model":…}' after the messages
        self._schema_refused = False
        """JSON mode: the server answered 400 to a ``response_format`` schema; ask in the prompt only."""

    def __repr__(self) -> str:
        return f"ChatClient({self._where!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool (unless its loop has gone, and its connections with it)."""
        if self._loop is None or self._loop is asyncio.get_running_loop():
            await self._http.aclose()

    def _pool(self) -> httpx.AsyncClient:
        """The connection pool of the running event loop. Kept-alive connections belong to the loop
        that opened them, so a client called from a new loop (a synchronous caller running each call
        in its own ``asyncio.run``) gets a new pool, one that keeps no connection: whatever it kept
        would be left behind with its loop too. (The first loop's idle connection is closed when the
        collector frees it.)"""
        import httpx

        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None:
                logger.debug("%s: called from another event loop; connections are not kept", self._where)
                options = self._http_options | {"limits": httpx.Limits(max_keepalive_connections=0)}
                self._http = httpx.AsyncClient(**options)
            self._loop = loop
        return self._http

    async def complete(
        self,
        messages: Sequence[Message | Encoded],
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | None = None,
        schema: dict[str, Any] | None = None,
        sampling: dict[str, Any] | None = None,
    ) -> Completion:
        """One assistant reply to ``messages``; raises ``LLMError`` (or a subclass) after retries.

        In text tool mode ``messages`` must be dicts (``TypeError`` otherwise); ``tool_choice="none"``
        leaves the tool instructions out there. In JSON tool mode ``tool_choice="none"`` narrows the
        schema to the final answer. ``schema`` asks for one JSON reply constrained to it instead of
        an action (the guided strategy's calls); tools are not offered then, whatever the tool mode,
        and a server that refuses the schema is asked again without it (the prompt must describe it).
        ``sampling`` sets request fields for this call only (``temperature``, llama.cpp's
        ``repeat_penalty``…), over the configured ones and under ``extra_body``.
        """
        taken_ids: set[str] | None = None
        response_format: dict[str, Any] | None = None
        final_only = tool_choice == "none"
        if schema is not None:
            from deepresearch.llm import jsonmode

            if not self._schema_refused:
                response_format = jsonmode.response_format(schema)
            tools, tool_choice = None, None
        elif self.config.tool_mode == "text":
            from deepresearch.llm import textmode

            taken_ids = textmode.used_call_ids(messages)
            messages = textmode.to_wire(messages, tools if tool_choice != "none" else None)
            tools, tool_choice = None, None
        elif self.config.tool_mode == "json":
            from deepresearch.llm import jsonmode, textmode

            taken_ids = textmode.used_call_ids(messages)
            max_answer = jsonmode.answer_cap(self.config.max_output_tokens)
            if not self._schema_refused:
                schema = jsonmode.action_schema(tools or [], max_answer=max_answer, final_only=final_only)
                response_format = jsonmode.response_format(schema)
            messages = jsonmode.to_wire(messages, tools or [], max_answer=max_answer)
            tools, tool_choice = None, None
        payload = self._encode(messages, tools, tool_choice, response_format, sampling)
        started = time.monotonic()
        try:
            raw, attempts = await self._send_with_retries(payload)
        except LLMError as exc:
            from deepresearch.llm.jsonmode import rejects_response_format

            if response_format is None or not rejects_response_format(exc):
                raise
            self._schema_refused = True
            logger.warning(
                "LLM %s: the server refused the response_format schema (%s); "
                "asking for JSON actions in the prompt only from now on",
                self.config.model,
                self._redact(str(exc)),
            )
            payload = self._encode(messages, None, None, None, sampling)
            raw, attempts = await self._send_with_retries(payload)
        completion = self._completion(raw, payload, taken_ids, final_only=final_only)
        usage = completion.usage
        logger.info(
            "LLM %s: %d prompt + %d completion tokens%s, finish=%s, %.2fs, %d attempt(s)",
            self.config.model,
            usage.prompt_tokens,
            usage.completion_tokens,
            " (estimated)" if usage.estimated else "",
            completion.finish_reason,
            time.monotonic() - started,
            attempts,
        )
        return completion

    def _encode(
        self,
        messages: Sequence[Message | Encoded],
        tools: list[dict[str, Any]] | None,
        tool_choice: str | None,
        response_format: dict[str, Any] | None = None,
        sampling: dict[str, Any] | None = None,
    ) -> bytes:
        parts = [message if isinstance(message, Encoded) else _dumps(message) for message in messages]
        tail = self._fields_tail
        if tools or tool_choice is not None or response_format is not None or sampling:
            call_fields: dict[str, Any] = dict(sampling or {})
            if tools:
                call_fields["tools"] = tools
            if tool_choice is not None:
                call_fields["tool_choice"] = tool_choice
            if response_format is not None:
                call_fields["response_format"] = response_format
            tail = _dumps({**self._fields, **call_fields, **self.config.extra_body})[1:]
        return ('{"messages":[' + ",".join(parts) + "]," + tail).encode()

    async def _send_with_retries(self, payload: bytes) -> tuple[RawReply, int]:
        """Backoff with full jitter: ``uniform(0, min(retry_max_delay, retry_base_delay * 2**n))``.

        A ``Retry-After`` (or ``retry-after-ms``) header raises the wait to what the server asked,
        even above ``retry_max_delay``, up to ``RETRY_AFTER_CEILING`` (5 minutes); when it asks for
        more we stop retrying and raise at once, carrying ``retry_after`` — a quota that resets in
        an hour is not worth blocking on.
        """
        attempts = self.config.max_retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return await self._attempt_within_timeout(payload), attempt
            except LLMError as exc:
                error = self._scrub(exc)
            retryable = _is_retryable(error)
            too_long = error.retry_after is not None and error.retry_after > RETRY_AFTER_CEILING
            refused = not self._answered and _refused(error)
            if refused:
                attempts = min(attempts, _REFUSED_ATTEMPTS)
            if not retryable or too_long or attempt >= attempts:
                if not retryable:
                    outcome = "not retried"
                elif too_long:
                    outcome = f"attempt {attempt}; the server asks to wait {error.retry_after:.0f}s, too long"
                else:
                    outcome = f"gave up after {attempt} attempt{'s' if attempt > 1 else ''}"
                message = self._redact(f"{self._where}: {error} ({outcome})")
                raise type(error)(message, status=error.status, retry_after=error.retry_after) from error
            delay = self._backoff(attempt, error.retry_after)
            if refused:
                delay = min(delay, _REFUSED_RETRY_DELAY)
            logger.warning(
                "LLM %s: attempt %d of %d failed (%s); retrying in %.2fs",
                self.config.model,
                attempt,
                attempts,
                self._redact(str(error)),
                delay,
            )
            await self._sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(self.config.retry_max_delay, self.config.retry_base_delay * 2.0 ** min(attempt - 1, 30))
        delay = random.uniform(0.0, ceiling)
        return delay if retry_after is None else max(delay, retry_after)

    async def _attempt_within_timeout(self, payload: bytes) -> RawReply:
        try:
            async with asyncio.timeout(self.config.timeout):
                return await self._attempt(payload)
        except TimeoutError as exc:
            raise LLMTimeout(f"no complete reply within {self.config.timeout:g}s") from exc

    async def _attempt(self, payload: bytes) -> RawReply:
        try:
            return await self._exchange(payload, resend=True)
        except _DroppedConnection:
            # The server closed a kept-alive connection before answering on it (llama.cpp does,
            # after a few requests, with no ``Connection: close``): the request got no reply at all,
            # so it is sent once more, on a new connection, as part of the same attempt.
            logger.debug("%s: the connection was dropped before any reply; sending again", self._where)
            return await self._exchange(payload, resend=False)

    async def _exchange(self, payload: bytes, *, resend: bool) -> RawReply:
        import httpx

        replied = False
        try:
            async with self._pool().stream("POST", self._url, content=payload) as response:
                replied = self._answered = True
                if not response.is_success:
                    await response.aread()
                    raise _status_error(response.status_code, response.content, response.headers)
                is_json = response.headers.get("content-type", "").startswith("application/json")
                if self.config.stream and not is_json:
                    return await self._read_stream(response)
                await response.aread()  # a JSON body, also when a server ignores stream=true
                try:
                    body = json.loads(response.content)
                except ValueError as exc:
                    raise LLMBadResponse(f"reply is not JSON: {response.text[:200]!r}") from exc
                return read_body(body)
        except httpx.TimeoutException as exc:
            raise LLMTimeout(f"{type(exc).__name__} after {self.config.timeout:g}s limit") from exc
        except httpx.ConnectError as exc:
            if _refused(exc):  # the message is prefixed with the model and its URL (_send_with_retries)
                raise LLMError(
                    "connection refused: no server is listening there (is it running, and is the URL right?)"
                ) from exc
            raise LLMError(f"request failed: {type(exc).__name__}: {exc}") from exc
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            if resend and not replied:
                raise _DroppedConnection from exc
            raise LLMError(f"request failed: {type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise LLMError(f"request failed: {type(exc).__name__}: {exc}") from exc

    async def _read_stream(self, response: httpx.Response) -> RawReply:
        """Assemble one SSE stream; a fresh accumulator per attempt, so a retry never duplicates text."""
        import httpx

        decoder = SSEDecoder()
        accumulator = StreamAccumulator()
        try:
            lines = response.aiter_lines()
            async for line in lines:
                event = decoder.feed(line)
                if event is DONE:
                    await _drain(lines)
                    return accumulator.result()
                if event is not None:
                    accumulator.feed(event)
                    if self._on_progress is not None:
                        self._report_progress(event)
            event = decoder.flush()
            if event is not None:
                accumulator.feed(event)
        except httpx.HTTPError as exc:
            if accumulator.finish_reason is None:
                if isinstance(exc, httpx.TimeoutException):
                    raise
                raise LLMBadResponse(f"stream cut before the reply finished ({type(exc).__name__})") from exc
            logger.debug("stream broke after finish_reason (%s); keeping the reply", type(exc).__name__)
        if accumulator.finish_reason is None:
            raise LLMBadResponse("stream ended without a finish_reason or [DONE]")
        return accumulator.result()

    def _report_progress(self, chunk: Any) -> None:
        progress = prompt_progress(chunk)
        if progress is None or self._on_progress is None:
            return
        try:
            self._on_progress(*progress)
        except Exception:  # a display bug must not fail the model call
            logger.exception("the prompt progress callback failed")

    def _completion(
        self, raw: RawReply, payload: bytes, taken_ids: set[str] | None, *, final_only: bool = False
    ) -> Completion:
        think, content = split_reasoning(raw.content)
        calls = raw.tool_calls
        if taken_ids is not None and self.config.tool_mode == "json":
            from deepresearch.llm import jsonmode

            if not calls:  # a server that produced native calls anyway is taken at its word
                content, thought, calls = jsonmode.parse_reply(
                    content, taken_ids=taken_ids, final_only=final_only
                )
                think = join_reasoning(think, thought)
        elif taken_ids is not None:
            from deepresearch.llm import textmode

            content, parsed = textmode.parse_tool_calls(content, taken_ids=taken_ids | {c.id for c in calls})
            calls = [*calls, *parsed]
        usage = self._usage(raw, payload)
        usage.cost_usd = cost_usd(usage, self.price)
        return Completion(
            content=content,
            reasoning=join_reasoning(raw.reasoning, think),
            tool_calls=calls,
            finish_reason=raw.finish_reason,
            usage=usage,
            model=raw.model or self.config.model,
        )

    def _usage(self, raw: RawReply, payload: bytes) -> Usage:
        reported = raw.usage
        if reported and ("prompt_tokens" in reported or "completion_tokens" in reported):
            return Usage(
                prompt_tokens=_int(reported.get("prompt_tokens")),
                completion_tokens=_int(reported.get("completion_tokens")),
            )
        generated = (
            raw.content + (raw.reasoning or "") + "".join(c.name + c.arguments for c in raw.tool_calls)
        )
        return Usage(
            prompt_tokens=self._count_tokens(payload.decode()),
            completion_tokens=self._count_tokens(generated),
            estimated=True,
        )

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    def _scrub(self, error: LLMError) -> LLMError:
        """``error`` with the key masked in its message (a careless proxy may echo it back)."""
        if self._secret and any(self._secret in str(arg) for arg in error.args):
            error.args = tuple(self._redact(str(arg)) for arg in error.args)
        return error


class _DroppedConnection(Exception):
    """The connection closed before any byte of a reply (see ``ChatClient._attempt``)."""


def _is_retryable(error: LLMError) -> bool:
    if isinstance(error, LLMTimeout | LLMBadResponse | LLMRateLimited):
        return True
    status = error.status
    return status is None or status in _RETRYABLE_STATUSES or status >= 500


def _refused(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a refused TCP connection (nothing listening), through httpx's and
    anyio's wrappers; with several addresses tried (``localhost``), every one of them refused."""
    seen: set[int] = set()
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        if isinstance(node, ConnectionRefusedError):
            return True
        if isinstance(node, BaseExceptionGroup):
            return all(_refused(inner) for inner in node.exceptions)
        node = node.__cause__ or node.__context__
    return False


def _status_error(status: int, body: bytes, headers: Mapping[str, str]) -> LLMError:
    message = f"HTTP {status}: {_error_detail(body)}"
    retry_after = parse_retry_after(headers)
    if status == 429:
        return LLMRateLimited(message, status=status, retry_after=retry_after)
    return LLMError(message, status=status, retry_after=retry_after)


def _error_detail(body: bytes) -> str:
    """The server's own words: ``error.message`` (OpenAI), ``message``/``detail`` (others), or the text."""
    text = body.decode(errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:300] or "(empty body)"
    if isinstance(data, dict):
        error = data.get("error")
        for candidate in (
            error.get("message") if isinstance(error, dict) else error,
            data.get("message"),
            data.get("detail"),
        ):
            if candidate:
                return str(candidate)[:500]
    return text[:300]


def _estimate_tokens(text: str) -> int:
    return (len(text) + 2) // 3


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


async def _drain(lines: AsyncIterator[str], most: int = 64) -> None:
    """Read what follows ``[DONE]`` — normally nothing but the end of the chunked body — so that the
    connection goes back to the pool: a response closed unread closes its connection, and a new one
    per model call costs a TCP (and TLS) handshake. A server that goes on talking is cut off."""
    seen = 0
    async for _ in lines:
        seen += 1
        if seen >= most:
            return
