"""ChatClient against the fake server (real HTTP and SSE) and, where the byte layout matters, against
an in-process httpx transport. Backoff sleeps that a test looks at are recorded instead of spent."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from deepresearch.errors import LLMBadResponse, LLMError, LLMRateLimited, LLMTimeout
from deepresearch.llm.client import ChatClient, LLMConfig
from deepresearch.llm.messages import Completion, Encoded, Message
from tests.fakes.openai_server import FakeOpenAI, Reply, start_fake_openai

USER: list[Message] = [{"role": "user", "content": "What is the capital of France?"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the web.",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        },
    }
]
SECRET = "sk-test-0123456789abcdef"
both_modes = pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])


def make_config(fake: FakeOpenAI, **overrides: Any) -> LLMConfig:
    values: dict[str, Any] = {
        "base_url": fake.base_url,
        "model": "fake-model",
        "max_retries": 3,
        "retry_base_delay": 0.001,
        "retry_max_delay": 0.01,
        "timeout": 30,
    }
    values.update(overrides)
    return LLMConfig(**values)


def complete(
    config: LLMConfig,
    messages: list[Any] | None = None,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    count_tokens: Callable[[str], int] | None = None,
    sleeps: list[float] | None = None,
    **kwargs: Any,
) -> Completion:
    """One call on a fresh client; with ``sleeps``, each backoff is appended there instead of waited."""

    async def call() -> Completion:
        extra: dict[str, Any] = {} if sleeps is None else {"sleep": recorded(sleeps)}
        async with ChatClient(config, transport=transport, count_tokens=count_tokens, **extra) as client:
            return await client.complete(USER if messages is None else messages, **kwargs)

    return asyncio.run(call())


def recorded(sleeps: list[float]) -> Callable[[float], Awaitable[None]]:
    """A ``sleep`` that notes the delay and returns at once."""

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0)

    return sleep


def retry_delay(record: logging.LogRecord) -> float:
    """The delay a retry WARNING announced (its last %-argument)."""
    assert isinstance(record.args, tuple)
    return float(record.args[-1])  # type: ignore[arg-type]


# --- parity of the two modes


@both_modes
def test_content_usage_and_request_shape(fake_llm: FakeOpenAI, stream: bool) -> None:
    text = "Paris is the capital of France. " * 4
    fake_llm.enqueue(
        Reply(content=text, usage={"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46})
    )

    completion = complete(make_config(fake_llm, stream=stream))

    assert completion.content == text
    assert completion.reasoning is None
    assert completion.tool_calls == []
    assert completion.finish_reason == "stop"
    assert completion.model == "fake-model"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (12, 34)
    assert not completion.usage.estimated
    [request] = fake_llm.requests
    assert request["messages"] == USER
    assert request["model"] == "fake-model"
    assert request["stream"] is stream
    assert request["max_tokens"] == 16384
    assert "temperature" not in request and "tools" not in request
    if stream:
        assert request["stream_options"] == {"include_usage": True}
    else:
        assert "stream_options" not in request


@both_modes
def test_consecutive_calls_reuse_one_connection_loopback_too(fake_llm: FakeOpenAI, stream: bool) -> None:
    """A new connection per call cost a tenth of a benchmark runner's event-loop time; a server that
    drops kept-alive connections (llama.cpp) is handled where it happens (the tests below)."""
    fake_llm.enqueue(*(Reply(content=f"reply {i}") for i in range(3)))

    async def calls() -> list[str]:
        async with ChatClient(make_config(fake_llm, stream=stream)) as client:
            return [(await client.complete(USER)).content for _ in range(3)]

    assert asyncio.run(calls()) == ["reply 0", "reply 1", "reply 2"]
    assert len(set(fake_llm.request_peers)) == 1


@both_modes
@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_field(fake_llm: FakeOpenAI, stream: bool, field: str) -> None:
    fake_llm.enqueue(Reply(content="Paris.", reasoning="France's capital is Paris.", reasoning_field=field))

    completion = complete(make_config(fake_llm, stream=stream))

    assert completion.reasoning == "France's capital is Paris."
    assert completion.content == "Paris."
    assert completion.to_message()["reasoning_content"] == "France's capital is Paris."


@both_modes
def test_think_tags_in_content(fake_llm: FakeOpenAI, stream: bool) -> None:
    fake_llm.enqueue(
        Reply(content="<think>Step one.\nStep two.</think>\n\nParis."),
        Reply(content="<think>Still thinking when the limit hit", finish_reason="length"),
        Reply(content="<think>From the tags.</think>Paris.", reasoning="From the field."),
    )
    config = make_config(fake_llm, stream=stream)

    closed = complete(config)
    unclosed = complete(config)
    joined = complete(config)

    assert (closed.reasoning, closed.content) == ("Step one.\nStep two.", "Paris.")
    assert (unclosed.reasoning, unclosed.content, unclosed.finish_reason) == (
        "Still thinking when the limit hit",
        "",
        "length",
    )
    assert (joined.reasoning, joined.content) == ("From the field.\n\nFrom the tags.", "Paris.")


@both_modes
def test_parallel_tool_calls(fake_llm: FakeOpenAI, stream: bool) -> None:
    arguments: list[dict[str, Any]] = [
        {"q": "capital of France"},
        {"q": "Paris population 2024", "lang": "fr"},
        {"updates": {}},
    ]
    fake_llm.enqueue(
        Reply(
            content="Let me check.",
            tool_calls=[("search", arguments[0]), ("search", arguments[1]), ("todo", arguments[2])],
        )
    )

    completion = complete(make_config(fake_llm, stream=stream), tools=TOOLS, tool_choice="auto")

    assert completion.content == "Let me check."
    assert completion.finish_reason == "tool_calls"
    assert [call.name for call in completion.tool_calls] == ["search", "search", "todo"]
    assert [json.loads(call.arguments) for call in completion.tool_calls] == arguments
    # the argument text is what the server sent, byte for byte, however it was split
    assert [call.arguments for call in completion.tool_calls] == [json.dumps(a) for a in arguments]
    ids = [call.id for call in completion.tool_calls]
    assert all(ids) and len(set(ids)) == 3
    [request] = fake_llm.requests
    assert request["tools"] == TOOLS
    assert request["tool_choice"] == "auto"


@both_modes
def test_usage_estimated_when_server_sends_none(fake_llm: FakeOpenAI, stream: bool) -> None:
    content = "巴黎是法国的首都。" * 10
    fake_llm.enqueue(Reply(content=content, usage={}))
    counted: list[str] = []

    def count_tokens(text: str) -> int:
        counted.append(text)
        return len(text)  # one token per character, as for CJK

    completion = complete(make_config(fake_llm, stream=stream), count_tokens=count_tokens)

    assert completion.usage.estimated
    assert completion.usage.completion_tokens == len(content)
    prompt_text, _ = counted
    assert json.loads(prompt_text) == fake_llm.requests[0]
    assert completion.usage.prompt_tokens == len(prompt_text)


def test_usage_estimate_without_counter(fake_llm: FakeOpenAI) -> None:
    fake_llm.enqueue(Reply(content="x" * 300, usage={}))

    completion = complete(make_config(fake_llm))

    assert completion.usage.estimated
    assert completion.usage.completion_tokens == 100  # three characters per token
    assert completion.usage.prompt_tokens > 0


@both_modes
def test_cost_from_the_price_table(fake_llm: FakeOpenAI, stream: bool) -> None:
    fake_llm.enqueue(Reply(content="ok", usage={"prompt_tokens": 1_000_000, "completion_tokens": 100_000}))

    completion = complete(make_config(fake_llm, stream=stream, model="gpt-4o-2024-08-06"))

    assert completion.usage.cost_usd == pytest.approx(2.50 + 1.00)


def test_unknown_model_costs_nothing_and_has_no_price(fake_llm: FakeOpenAI) -> None:
    fake_llm.enqueue(Reply(content="ok", usage={"prompt_tokens": 1000, "completion_tokens": 1000}))
    config = make_config(fake_llm, model="my-local-model")

    assert ChatClient(config).price is None
    assert complete(config).usage.cost_usd == 0.0


@both_modes
def test_finish_length_keeps_cut_tool_arguments(fake_llm: FakeOpenAI, stream: bool) -> None:
    cut = '{"action": "write", "path": "report.md", "content": "# Report\\n\\nThe first sec'
    fake_llm.enqueue(Reply(tool_calls=[("file", cut)], finish_reason="length"))

    completion = complete(make_config(fake_llm, stream=stream))

    assert completion.finish_reason == "length"
    [call] = completion.tool_calls
    assert (call.name, call.arguments) == ("file", cut)


@both_modes
def test_empty_reply(fake_llm: FakeOpenAI, stream: bool) -> None:
    fake_llm.enqueue(Reply())

    completion = complete(make_config(fake_llm, stream=stream))

    assert (completion.content, completion.reasoning, completion.tool_calls) == ("", None, [])
    assert completion.finish_reason == "stop"
    assert len(fake_llm.requests) == 1


def test_request_options(fake_llm: FakeOpenAI) -> None:
    fake_llm.enqueue(Reply(content="ok"))
    config = make_config(
        fake_llm,
        temperature=0.2,
        max_output_tokens=None,
        extra_body={"top_p": 0.5, "chat_template_kwargs": {"enable_thinking": False}},
        api_key=SECRET,
    )

    complete(config)

    [request] = fake_llm.requests
    assert request["temperature"] == 0.2
    assert "max_tokens" not in request
    assert request["top_p"] == 0.5
    assert request["chat_template_kwargs"] == {"enable_thinking": False}
    assert fake_llm.request_headers[0]["authorization"] == f"Bearer {SECRET}"
    with pytest.raises(ValidationError):
        make_config(fake_llm, extra_body={"messages": []})


def test_encoded_messages_are_spliced_verbatim(fake_llm: FakeOpenAI) -> None:
    system = Encoded('{"role":"system","content":"Be brief."}')
    odd = Encoded('{"role": "assistant",   "content": "spaced  out"}')
    messages = [system, {"role": "user", "content": "héllo 你好"}, odd, {"role": "user", "content": "again"}]
    sent: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.content)
        body = {
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
            ]
        }
        return httpx.Response(200, json=body)

    complete(make_config(fake_llm, stream=False), messages, transport=httpx.MockTransport(handler))
    fake_llm.enqueue(Reply(content="ok"))
    complete(make_config(fake_llm), messages)

    [body] = sent
    expected_messages = '[{"role":"system","content":"Be brief."},{"role":"user","content":"héllo 你好"},'
    expected_messages += (
        '{"role": "assistant",   "content": "spaced  out"},{"role":"user","content":"again"}]'
    )
    assert body.startswith(b'{"messages":' + expected_messages.encode() + b",")
    assert json.loads(body)["model"] == "fake-model"
    assert fake_llm.requests[0]["messages"] == [json.loads(m) if isinstance(m, str) else m for m in messages]


# --- streams that end badly


def _sse(*chunks: dict[str, Any], done: bool = True) -> bytes:
    events = [b"data: " + json.dumps(chunk).encode() + b"\n\n" for chunk in chunks]
    return b"".join(events) + (b"data: [DONE]\n\n" if done else b"")


def _delta(**delta: Any) -> dict[str, Any]:
    return {"model": "fake-model", "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}


FINISH = {"model": "fake-model", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
USAGE = {"model": "fake-model", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 5}}


def _stream_transport(*bodies: Callable[[], AsyncIterator[bytes]]) -> tuple[httpx.MockTransport, list[int]]:
    """A transport that answers the n-th request with the n-th byte stream."""
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        stream = bodies[min(len(calls), len(bodies)) - 1]()
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=stream)

    return httpx.MockTransport(handler), calls


def test_one_burst_tail_over_the_socket(fake_llm: FakeOpenAI) -> None:
    content = "The last delta, the finish chunk, the usage chunk and [DONE] arrive together."
    fake_llm.enqueue(
        Reply(content=content, one_burst=True, usage={"prompt_tokens": 3, "completion_tokens": 4})
    )

    completion = complete(make_config(fake_llm))

    assert completion.content == content
    assert completion.finish_reason == "stop"
    assert (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
        completion.usage.estimated,
    ) == (
        3,
        4,
        False,
    )


@pytest.mark.parametrize("split", [None, 1, 2, 5, 13, 64])
def test_tail_burst_at_any_byte_split(fake_llm: FakeOpenAI, split: int | None) -> None:
    """The head arrives chunk by chunk; the tail (last delta, finish, usage, [DONE]) in one write,
    or the whole stream cut into pieces of ``split`` bytes regardless of line boundaries."""
    head = _sse(_delta(role="assistant", content="Hello, "), _delta(content="wor"), done=False)
    tail = _sse(_delta(content="ld!"), FINISH, USAGE)

    async def body() -> AsyncIterator[bytes]:
        if split is None:
            yield head
            yield tail
        else:
            data = head + tail
            for start in range(0, len(data), split):
                yield data[start : start + split]

    transport, _ = _stream_transport(body)
    completion = complete(make_config(fake_llm), transport=transport)

    assert completion.content == "Hello, world!"
    assert completion.finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (7, 5)


def test_cut_stream_is_retried_from_a_fresh_start(
    fake_llm: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    fake_llm.enqueue(
        Reply(content="A partial answer that the network will cut short.", cut_after_chunks=3),
        Reply(content="The full answer."),
    )

    with caplog.at_level(logging.WARNING, logger="deepresearch"):
        completion = complete(make_config(fake_llm))

    assert completion.content == "The full answer."  # nothing of the cut attempt leaks in
    assert completion.finish_reason == "stop"
    assert len(fake_llm.requests) == 2
    [warning] = [r for r in caplog.records if r.name == "deepresearch.llm.client"]
    assert warning.levelno == logging.WARNING
    assert "stream cut" in warning.getMessage()


def test_cut_stream_every_time_is_a_bad_response(fake_llm: FakeOpenAI) -> None:
    fake_llm.enqueue(*[Reply(content="never finished", cut_after_chunks=1) for _ in range(3)])

    with pytest.raises(LLMBadResponse, match="gave up after 3 attempts") as caught:
        complete(make_config(fake_llm, max_retries=2))

    assert len(fake_llm.requests) == 3
    assert isinstance(caught.value.__cause__, LLMBadResponse)


def test_stream_without_done_but_finished_is_accepted(fake_llm: FakeOpenAI) -> None:
    async def no_done() -> AsyncIterator[bytes]:
        yield _sse(_delta(content="Complete"), _delta(content=" answer."), FINISH, done=False)

    async def broken_after_finish() -> AsyncIterator[bytes]:
        yield _sse(_delta(content="Also complete."), FINISH, done=False)
        raise httpx.ReadError("connection reset")

    for body, expected in [(no_done, "Complete answer."), (broken_after_finish, "Also complete.")]:
        transport, calls = _stream_transport(body)
        completion = complete(make_config(fake_llm), transport=transport)
        assert (completion.content, completion.finish_reason, len(calls)) == (expected, "stop", 1)
        assert completion.usage.estimated  # the usage chunk never came


def test_stream_broken_before_finish_is_retried(fake_llm: FakeOpenAI) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield _sse(_delta(content="Half an ans"), done=False)
        raise httpx.RemoteProtocolError("peer closed connection")

    async def good() -> AsyncIterator[bytes]:
        yield _sse(_delta(content="Whole answer."), FINISH, USAGE)

    transport, calls = _stream_transport(broken, good)
    completion = complete(make_config(fake_llm), transport=transport)

    assert completion.content == "Whole answer."
    assert len(calls) == 2


def test_stream_error_event_is_reported(fake_llm: FakeOpenAI) -> None:
    async def error_event() -> AsyncIterator[bytes]:
        yield _sse(_delta(content="Hel"), done=False)
        yield b'event: error\ndata: {"error": {"message": "upstream overloaded"}}\n\n'

    transport, calls = _stream_transport(error_event)
    with pytest.raises(LLMBadResponse, match="upstream overloaded"):
        complete(make_config(fake_llm, max_retries=1), transport=transport)
    assert len(calls) == 2


# --- HTTP errors and retries


def test_rate_limit_honours_retry_after(fake_llm: FakeOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    fake_llm.enqueue(Reply(status=429, headers={"Retry-After": "1"}), Reply(content="ok"))
    sleeps: list[float] = []

    with caplog.at_level(logging.WARNING, logger="deepresearch"):
        completion = complete(make_config(fake_llm), sleeps=sleeps)

    assert completion.content == "ok"
    assert sleeps == [1.0]  # Retry-After wins over the 0.01 s maximum backoff
    assert len(fake_llm.requests) == 2
    [warning] = caplog.records
    assert "HTTP 429" in warning.getMessage()
    assert retry_delay(warning) == 1.0


def test_backoff_is_jittered_and_capped(fake_llm: FakeOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    fake_llm.enqueue(
        Reply(status=500),
        Reply(status=502),
        Reply(status=503, headers={"Retry-After": "0.05"}),
        Reply(status=500),
        Reply(content="ok"),
    )

    sleeps: list[float] = []
    with caplog.at_level(logging.WARNING, logger="deepresearch"):
        config = make_config(fake_llm, max_retries=4, retry_base_delay=0.004, retry_max_delay=0.006)
        complete(config, sleeps=sleeps)

    delays = [retry_delay(record) for record in caplog.records]
    assert len(delays) == 4 and sleeps == delays  # what is announced is what is waited
    assert 0 <= delays[0] <= 0.004
    assert 0 <= delays[1] <= 0.006
    assert delays[2] == 0.05  # Retry-After above retry_max_delay is still honoured
    assert 0 <= delays[3] <= 0.006


@pytest.mark.parametrize("status", [408, 409, 500, 502, 503, 504])
def test_retryable_status_then_success(fake_llm: FakeOpenAI, status: int) -> None:
    fake_llm.enqueue(Reply(status=status), Reply(content="ok"))

    assert complete(make_config(fake_llm)).content == "ok"
    assert len(fake_llm.requests) == 2


def test_server_error_forever(fake_llm: FakeOpenAI) -> None:
    fake_llm.enqueue(*[Reply(status=500, body='{"error": {"message": "model crashed"}}') for _ in range(3)])

    with pytest.raises(LLMError) as caught:
        complete(make_config(fake_llm, max_retries=2))

    error = caught.value
    assert type(error) is LLMError
    assert error.status == 500
    assert "model crashed" in str(error)
    assert "gave up after 3 attempts" in str(error)
    assert "fake-model at http://127.0.0.1:" in str(error)
    assert isinstance(error.__cause__, LLMError)
    assert len(fake_llm.requests) == 3


def test_rate_limited_forever(fake_llm: FakeOpenAI) -> None:
    fake_llm.enqueue(*[Reply(status=429, headers={"retry-after-ms": "5"}) for _ in range(2)])
    sleeps: list[float] = []

    with pytest.raises(LLMRateLimited) as caught:
        complete(make_config(fake_llm, max_retries=1), sleeps=sleeps)

    assert caught.value.status == 429
    assert caught.value.retry_after == 0.005
    assert sleeps == [0.005]  # one wait, between the two attempts
    assert len(fake_llm.requests) == 2


def test_retry_after_beyond_five_minutes_gives_up_at_once(fake_llm: FakeOpenAI) -> None:
    fake_llm.enqueue(Reply(status=429, headers={"Retry-After": "3600"}))
    sleeps: list[float] = []

    with pytest.raises(LLMRateLimited) as caught:
        complete(make_config(fake_llm), sleeps=sleeps)

    assert caught.value.retry_after == 3600
    assert sleeps == []
    assert "3600s" in str(caught.value)
    assert len(fake_llm.requests) == 1


def test_unauthorized_fails_at_once_and_never_shows_the_key(
    fake_llm: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    # A careless proxy echoes the key; it must still not reach the message or the logs.
    body = json.dumps(
        {"error": {"message": f"Incorrect API key provided: {SECRET}", "code": "invalid_api_key"}}
    )
    fake_llm.enqueue(Reply(status=401, body=body))
    config = make_config(fake_llm, api_key=SECRET)

    with caplog.at_level(logging.DEBUG), pytest.raises(LLMError) as caught:
        complete(config)

    error = caught.value
    assert error.status == 401
    assert "Incorrect API key provided" in str(error)
    assert "not retried" in str(error)
    assert len(fake_llm.requests) == 1
    assert fake_llm.request_headers[0]["authorization"] == f"Bearer {SECRET}"
    for text in (str(error), repr(error), str(error.__cause__), repr(config), str(config), caplog.text):
        assert SECRET not in text
    assert SECRET not in repr(ChatClient(config))


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_client_errors_are_not_retried(fake_llm: FakeOpenAI, status: int) -> None:
    fake_llm.enqueue(Reply(status=status, body='{"message": "bad request shape"}'))

    with pytest.raises(LLMError, match="bad request shape") as caught:
        complete(make_config(fake_llm))

    assert caught.value.status == status
    assert len(fake_llm.requests) == 1


def test_key_stays_out_of_logs_across_retries(fake_llm: FakeOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    fake_llm.enqueue(Reply(status=503, body=f"upstream said {SECRET}"), Reply(content="ok"))

    with caplog.at_level(logging.DEBUG):
        complete(make_config(fake_llm, api_key=SECRET))

    assert "upstream said ***" in caplog.text
    assert SECRET not in caplog.text
    info = [r for r in caplog.records if r.name == "deepresearch.llm.client" and r.levelno == logging.INFO]
    assert len(info) == 1 and "2 attempt(s)" in info[0].getMessage()


@both_modes
def test_malformed_body_is_retried_then_reported(fake_llm: FakeOpenAI, stream: bool) -> None:
    fake_llm.enqueue(Reply(body='{"choices": [{"mess'), Reply(content="ok"))
    assert complete(make_config(fake_llm, stream=stream)).content == "ok"

    fake_llm.enqueue(
        Reply(body='{"id": "x", "object": "chat.completion"}'), Reply(body="<html>Bad Gateway</html>")
    )
    with pytest.raises(LLMBadResponse) as caught:
        complete(make_config(fake_llm, stream=stream, max_retries=1))
    assert "not JSON" in str(caught.value)
    assert isinstance(caught.value.__cause__, LLMBadResponse)
    assert len(fake_llm.requests) == 4


def test_timeout(fake_llm: FakeOpenAI) -> None:
    fake_llm.enqueue(Reply(content="late", delay=2), Reply(content="late", delay=2))

    with pytest.raises(LLMTimeout, match="gave up after 2 attempts"):
        complete(make_config(fake_llm, timeout=0.3, max_retries=1))

    assert len(fake_llm.requests) == 2


def test_timeout_bounds_a_trickling_stream(fake_llm: FakeOpenAI) -> None:
    """Each read is quick, so only the whole-call limit can stop a stream that never ends."""

    async def trickle() -> AsyncIterator[bytes]:
        while True:
            yield _sse(_delta(content="."), done=False)
            await asyncio.sleep(0.02)

    transport, calls = _stream_transport(trickle)
    with pytest.raises(LLMTimeout):
        complete(make_config(fake_llm, timeout=0.3, max_retries=0), transport=transport)
    assert len(calls) == 1


def test_a_connect_error_that_is_not_a_refusal_is_retried_then_reported(fake_llm: FakeOpenAI) -> None:
    """An unreachable host or a failed TLS handshake may pass; every retry is spent as configured."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("network is unreachable", request=request)

    with pytest.raises(LLMError, match="ConnectError") as caught:
        complete(make_config(fake_llm, max_retries=2), transport=httpx.MockTransport(handler))
    assert caught.value.status is None
    assert "gave up after 3 attempts" in str(caught.value)


def test_a_refused_endpoint_fails_after_one_quick_retry(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing listens (a bound socket that never listens refuses every connection): with the default
    six retries and their backoff this took 38 s; now one retry at most half a second later."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # held, so no other process takes the port meanwhile
        port = closed.getsockname()[1]
        config = LLMConfig(base_url=f"http://127.0.0.1:{port}/v1", model="m", retry_base_delay=4.0)
        assert config.max_retries == 6
        sleeps: list[float] = []
        with (
            caplog.at_level(logging.WARNING, logger="deepresearch.llm.client"),
            pytest.raises(LLMError) as caught,
        ):
            complete(config, sleeps=sleeps)
    message = str(caught.value)
    assert message.startswith(f"m at http://127.0.0.1:{port}/v1: connection refused"), message
    assert "is it running" in message and "gave up after 2 attempts" in message
    assert type(caught.value) is LLMError and caught.value.status is None
    [retry] = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert sleeps == [retry_delay(retry)] and 0 <= sleeps[0] <= 0.5


def test_a_refusal_after_the_endpoint_answered_is_retried_as_before(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server that answered and then went away is probably restarting: keep the configured patience."""
    server = start_fake_openai()
    try:
        server.enqueue(Reply(content="first"))
        config = LLMConfig(
            base_url=server.base_url, model="m", max_retries=3, retry_base_delay=0.001, retry_max_delay=0.01
        )

        async def calls() -> tuple[str, BaseException]:
            async with ChatClient(config) as client:
                first = await client.complete(USER)
                server.stop()
                try:
                    await client.complete(USER)
                except LLMError as exc:
                    return first.content, exc
                raise AssertionError("the second call succeeded without a server")

        with caplog.at_level(logging.WARNING, logger="deepresearch.llm.client"):
            content, error = asyncio.run(calls())
    finally:
        server.stop()
    assert content == "first"
    assert "connection refused" in str(error) and "gave up after 4 attempts" in str(error)
    assert len([r for r in caplog.records if "retrying" in r.getMessage()]) == 3


def _progress(processed: int, total: int = 3600) -> dict[str, Any]:
    return {
        **_delta(role="assistant", content=None),
        "prompt_progress": {"total": total, "cache": 0, "processed": processed, "time_ms": 5},
    }


PROGRESS_STREAM = _sse(
    _progress(0), _progress(2048), _progress(3600), _delta(content="Paris."), FINISH, USAGE
)


@pytest.mark.parametrize("asked", [True, False], ids=["asked", "not-asked"])
def test_prompt_progress_reaches_the_callback_when_asked(fake_llm: FakeOpenAI, asked: bool) -> None:
    """llama.cpp's ``prompt_progress`` chunks (``return_progress``) become ``on_progress(processed, total)``
    calls; without ``prompt_progress`` in the config nothing is asked and a chunk's progress is ignored."""
    raw = PROGRESS_STREAM.decode()
    fake_llm.enqueue(Reply(body=raw, headers={"content-type": "text/event-stream"}))
    seen: list[tuple[int, int]] = []

    async def call() -> Completion:
        config = make_config(fake_llm, prompt_progress=asked)
        async with ChatClient(config, on_progress=lambda done, total: seen.append((done, total))) as client:
            return await client.complete(USER)

    completion = asyncio.run(call())
    assert completion.content == "Paris." and completion.finish_reason == "stop"
    assert completion.usage.prompt_tokens == 7
    if asked:
        assert fake_llm.requests[-1]["return_progress"] is True
        assert seen == [(0, 3600), (2048, 3600), (3600, 3600)]
    else:
        assert "return_progress" not in fake_llm.requests[-1]
        assert seen == []


def test_progress_is_not_asked_without_a_callback_or_a_stream(fake_llm: FakeOpenAI) -> None:
    fake_llm.enqueue(Reply(content="a"), Reply(content="b"))
    assert complete(make_config(fake_llm, prompt_progress=True)).content == "a"

    async def unstreamed() -> str:
        config = make_config(fake_llm, prompt_progress=True, stream=False)
        async with ChatClient(config, on_progress=lambda done, total: None) as client:
            return (await client.complete(USER)).content

    assert asyncio.run(unstreamed()) == "b"
    assert ["return_progress" in body for body in fake_llm.requests] == [False, False]


def test_a_failing_progress_callback_never_fails_the_call(
    fake_llm: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    fake_llm.enqueue(Reply(body=PROGRESS_STREAM.decode(), headers={"content-type": "text/event-stream"}))

    def broken(done: int, total: int) -> None:
        raise RuntimeError("display bug")

    async def call() -> Completion:
        async with ChatClient(make_config(fake_llm, prompt_progress=True), on_progress=broken) as client:
            return await client.complete(USER)

    with caplog.at_level(logging.ERROR, logger="deepresearch.llm.client"):
        assert asyncio.run(call()).content == "Paris."
    assert len(fake_llm.requests) == 1  # not retried either
    assert [r.getMessage() for r in caplog.records] == ["the prompt progress callback failed"] * 3


def test_one_http_client_for_many_calls(fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    created: list[httpx.AsyncClient] = []

    class CountingClient(httpx.AsyncClient):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            created.append(self)

    monkeypatch.setattr(httpx, "AsyncClient", CountingClient)
    fake_llm.enqueue(*[Reply(content=f"answer {i}") for i in range(3)])

    async def calls() -> list[str]:
        async with ChatClient(make_config(fake_llm)) as client:
            return [(await client.complete(USER)).content for _ in range(3)]

    assert asyncio.run(calls()) == ["answer 0", "answer 1", "answer 2"]
    assert len(created) == 1
    assert created[0].is_closed


class DroppingServer:
    """A raw HTTP/1.1 server on 127.0.0.1 that keeps connections alive and, like llama.cpp's, drops
    one after ``answers_per_connection`` replies without a ``Connection: close``: the next request
    sent on it gets no reply at all, the connection just closes."""

    def __init__(self, answers_per_connection: int) -> None:
        self.answers_per_connection = answers_per_connection
        self.connections = 0
        self.replies = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/v1"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        answered = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                if answered == self.answers_per_connection:
                    return  # dropped: the request read, no byte of a reply
                self.replies += 1
                body = json.dumps(
                    {
                        "id": "c",
                        "object": "chat.completion",
                        "model": "m",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": f"reply {self.replies}"},
                                "finish_reason": "stop",
                            }
                        ],
                    }
                ).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
                answered += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def test_a_kept_alive_connection_dropped_before_any_reply_is_sent_again_on_a_new_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = DroppingServer(answers_per_connection=2)

    async def calls() -> list[str]:
        base_url = await server.start()
        config = LLMConfig(base_url=base_url, model="m", stream=False, max_retries=0)
        try:
            async with ChatClient(config) as client:
                return [(await client.complete(USER)).content for _ in range(5)]
        finally:
            await server.stop()

    with caplog.at_level(logging.WARNING, logger="deepresearch.llm.client"):
        contents = asyncio.run(calls())
    assert contents == [f"reply {n}" for n in range(1, 6)]  # with no retry left, none was needed
    assert server.connections == 3  # connections are reused, and a dropped one is replaced
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]


def test_a_server_that_drops_every_request_is_not_sent_it_forever() -> None:
    server = DroppingServer(answers_per_connection=0)

    async def call() -> None:
        base_url = await server.start()
        config = LLMConfig(base_url=base_url, model="m", stream=False, max_retries=1, retry_base_delay=0.001)
        try:
            async with ChatClient(config) as client:
                await client.complete(USER)
        finally:
            await server.stop()

    with pytest.raises(LLMError, match=r"RemoteProtocolError.*gave up after 2 attempts"):
        asyncio.run(call())
    assert server.connections == 4  # each attempt: the request, then once more on a new connection


def test_a_client_called_from_one_event_loop_after_another_still_answers(fake_llm: FakeOpenAI) -> None:
    """Kept-alive connections belong to the loop that opened them: one ``asyncio.run`` per call (a
    synchronous caller) gets a new pool each time instead of "Event loop is closed"."""
    fake_llm.enqueue(*(Reply(content=f"reply {i}") for i in range(3)))
    client = ChatClient(make_config(fake_llm, max_retries=0))
    with warnings.catch_warnings():  # the first loop's idle connection is closed by the collector
        warnings.simplefilter("ignore", ResourceWarning)
        answers = [asyncio.run(client.complete(USER)).content for _ in range(3)]
        asyncio.run(client.aclose())
        del client
        gc.collect()
    assert answers == ["reply 0", "reply 1", "reply 2"]
    assert len(set(fake_llm.request_peers)) == 3  # after the first loop, no connection is kept
