"""A scripted OpenAI-compatible chat server: the test double for every part of the project that talks
to a model.

It speaks the real wire protocol over a real socket (uvicorn in a daemon thread on 127.0.0.1, port
0): JSON bodies, and SSE streams whose content and tool-call arguments arrive split over several
chunks, followed by a finish chunk, a usage chunk (``choices: []``) when the request asked for one,
and ``data: [DONE]``. Tests queue ``Reply`` objects (or functions of the request body) with
``enqueue``; when the queue is empty the ``script`` answers; when there is neither, the server answers
500 with a body that says the script ran out. Every request body is kept in ``requests``.

Faults are part of a ``Reply``: an HTTP status and raw body, extra headers (``Retry-After``), a delay,
a stream cut after N chunks, or a whole stream written in one burst.

Run it in its own process (for tests that kill the agent with SIGKILL)::

    python -m tests.fakes.openai_server --port 0 --script package.module:function

It prints ``listening on <base_url>`` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import math
import signal
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.serve import ThreadedServer

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass
class Reply:
    """One scripted answer."""

    content: str = ""
    reasoning: str | None = None
    reasoning_field: str = "reasoning_content"  # or "reasoning"
    tool_calls: list[tuple[str, dict[str, Any] | str]] = field(default_factory=list)
    """(name, arguments as a dict or as a raw JSON string, possibly malformed)."""
    finish_reason: str | None = None
    """Default ``"tool_calls"`` when there are tool calls, else ``"stop"``."""
    usage: dict[str, Any] | None = None
    """Default: computed (prompt ≈ request JSON chars // 4, completion ≈ content + arguments chars // 4);
    ``{}`` sends no usage at all."""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    """Raw body sent as is (error or malformed replies); the other fields are then ignored."""
    cut_after_chunks: int | None = None
    """Streaming: close the connection after this many data chunks — no finish chunk, no [DONE]."""
    delay: float = 0.0
    """Seconds to wait before answering."""
    one_burst: bool = False
    """Streaming: write all chunks, the usage chunk and [DONE] in a single write."""


ReplySource = Reply | Callable[[dict[str, Any]], Reply]


class FakeOpenAI:
    """The server's state and its ASGI app; start it with ``start_fake_openai()``."""

    def __init__(self) -> None:
        self.base_url = ""
        self.requests: list[dict[str, Any]] = []
        """Every JSON body received, in order."""
        self.request_headers: list[dict[str, str]] = []
        """The headers of each request in ``requests`` (lower-case names)."""
        self.request_peers: list[tuple[str, int] | None] = []
        """The client address of each request: one port for several requests means one connection."""
        self.script: Callable[[dict[str, Any]], Reply] | None = None
        """Answers from the request body when the queue is empty."""
        self._queue: deque[ReplySource] = deque()
        self._lock = threading.Lock()
        self._serving: ThreadedServer | None = None

    # --- test API

    def enqueue(self, *replies: ReplySource) -> None:
        """Queue replies; each request takes the next one (a function gets the request body)."""
        with self._lock:
            self._queue.extend(replies)

    def reset(self) -> None:
        """Forget queued replies, the script and the recorded requests."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.request_headers.clear()
            self.request_peers.clear()
            self.script = None

    @property
    def pending(self) -> int:
        """Replies still queued."""
        with self._lock:
            return len(self._queue)

    @staticmethod
    def tool_results(request: dict[str, Any]) -> dict[str, str]:
        """``{tool_call_id: content}`` of the tool messages in a request (native tool mode)."""
        return {
            message.get("tool_call_id", ""): _text(message.get("content"))
            for message in request.get("messages", [])
            if message.get("role") == "tool"
        }

    @staticmethod
    def last_tool_text(request: dict[str, Any]) -> str:
        """The text of the latest tool result in a request (a tool message, or a text-mode
        ``<tool_response>`` user message); ``""`` when there is none."""
        for message in reversed(request.get("messages", [])):
            text = _text(message.get("content"))
            if message.get("role") == "tool" or (message.get("role") == "user" and "<tool_response" in text):
                return text
        return ""

    # --- lifecycle

    def start(self, port: int = 0) -> None:
        """Serve on 127.0.0.1:``port`` (0 = any free port) in a daemon thread; sets ``base_url``."""
        logging.getLogger("uvicorn.error").addFilter(_drop_expected_cut_errors)
        self._serving = ThreadedServer(self, "fake-openai")
        port = self._serving.start(port)
        self.base_url = f"http://127.0.0.1:{port}/v1"

    def stop(self) -> None:
        """Shut the server down and wait for its thread."""
        if self._serving is not None:
            self._serving.stop()
        self._serving = None

    # --- the ASGI app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw = await _read_body(receive)
        if scope["method"] != "POST" or not scope["path"].rstrip("/").endswith("/chat/completions"):
            await _send_json(send, 404, _error(f"FakeOpenAI: no route for {scope['method']} {scope['path']}"))
            return
        try:
            request = json.loads(raw)
        except ValueError:
            await _send_json(send, 400, _error("FakeOpenAI: request body is not JSON"))
            return
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        with self._lock:
            self.requests.append(request)
            self.request_headers.append(headers)
            self.request_peers.append(tuple(scope["client"]) if scope.get("client") else None)
            number = len(self.requests)
            source: ReplySource | None = self._queue.popleft() if self._queue else self.script
        if source is None:
            message = (
                f"FakeOpenAI: request #{number} found no queued reply and no script (the script ran out)"
            )
            await _send_json(send, 500, _error(message))
            return
        try:
            reply = source if isinstance(source, Reply) else source(request)
        except Exception as exc:  # the test's script is broken: say so in the reply
            await _send_json(send, 500, _error(f"FakeOpenAI: script failed: {type(exc).__name__}: {exc}"))
            return
        if reply.delay and await _client_left_within(receive, reply.delay):
            return  # the client timed out; nobody is listening
        request_chars = len(raw.decode())
        if reply.body is not None or reply.status != 200:
            body = reply.body if reply.body is not None else json.dumps(_error(f"fake error {reply.status}"))
            headers = {"content-type": "application/json", **reply.headers}
            await _send_raw(send, reply.status, body.encode(), headers)
        elif request.get("stream"):
            await _send_stream(send, reply, request, number, request_chars)
        else:
            completion = _completion(reply, request, number, request_chars)
            headers = {"content-type": "application/json", **reply.headers}
            await _send_raw(send, 200, json.dumps(completion, ensure_ascii=False).encode(), headers)


async def _send_stream(
    send: Send, reply: Reply, request: dict[str, Any], number: int, request_chars: int
) -> None:
    model = request.get("model", "")
    chunks = _delta_chunks(reply, model, number)
    headers = {"content-type": "text/event-stream", "cache-control": "no-cache", **reply.headers}
    await send({"type": "http.response.start", "status": 200, "headers": _header_list(headers)})
    if reply.cut_after_chunks is not None:
        for chunk in chunks[: reply.cut_after_chunks]:
            await send({"type": "http.response.body", "body": _event(chunk), "more_body": True})
        return  # returning without the last body message makes uvicorn drop the connection
    chunks.append(_chunk(model, number, [{"index": 0, "delta": {}, "finish_reason": _finish(reply)}]))
    usage = _usage(reply, request_chars)
    if usage is not None and (request.get("stream_options") or {}).get("include_usage"):
        chunks.append({**_chunk(model, number, []), "usage": usage})
    events = [_event(chunk) for chunk in chunks] + [b"data: [DONE]\n\n"]
    if reply.one_burst:
        await send({"type": "http.response.body", "body": b"".join(events), "more_body": False})
        return
    for event in events:
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def start_fake_openai(port: int = 0) -> FakeOpenAI:
    """A running ``FakeOpenAI``; call ``.stop()`` when done."""
    fake = FakeOpenAI()
    fake.start(port)
    return fake


# --- the wire format


def _finish(reply: Reply) -> str:
    return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")


def _arguments(arguments: dict[str, Any] | str) -> str:
    return arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)


def _usage(reply: Reply, request_chars: int) -> dict[str, Any] | None:
    if reply.usage is not None:
        return reply.usage or None
    generated = reply.content + "".join(_arguments(arguments) for _, arguments in reply.tool_calls)
    prompt, completion = request_chars // 4, len(generated) // 4
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _call_id(number: int, index: int) -> str:
    return f"call_{number}_{index}"


def _completion(reply: Reply, request: dict[str, Any], number: int, request_chars: int) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": reply.content or (None if reply.tool_calls else ""),
    }
    if reply.reasoning is not None:
        message[reply.reasoning_field] = reply.reasoning
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": _call_id(number, i),
                "type": "function",
                "function": {"name": name, "arguments": _arguments(args)},
            }
            for i, (name, args) in enumerate(reply.tool_calls)
        ]
    body: dict[str, Any] = {
        "id": f"chatcmpl-fake-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", ""),
        "choices": [{"index": 0, "message": message, "finish_reason": _finish(reply), "logprobs": None}],
    }
    usage = _usage(reply, request_chars)
    if usage is not None:
        body["usage"] = usage
    return body


def _chunk(model: str, number: int, choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-fake-{number}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }


def _delta_chunks(reply: Reply, model: str, number: int) -> list[dict[str, Any]]:
    """The data chunks before the finish chunk: reasoning, content, then each tool call's pieces."""
    deltas: list[dict[str, Any]] = []
    if reply.reasoning:
        deltas += [{reply.reasoning_field: piece} for piece in _pieces(reply.reasoning, 8)]
    if reply.content:
        deltas += [{"content": piece} for piece in _pieces(reply.content, 8)]
    for index, (name, arguments) in enumerate(reply.tool_calls):
        head = {"index": index, "id": _call_id(number, index), "type": "function"}
        deltas.append({"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]})
        deltas += [
            {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            for piece in _pieces(_arguments(arguments), 3)
        ]
    if not deltas:
        deltas.append({"content": ""})
    deltas[0] = {"role": "assistant", **deltas[0]}
    return [_chunk(model, number, [{"index": 0, "delta": delta, "finish_reason": None}]) for delta in deltas]


def _pieces(text: str, count: int) -> list[str]:
    size = max(1, math.ceil(len(text) / count))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _event(chunk: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "fake_error", "code": None}}


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


# --- ASGI plumbing


async def _read_body(receive: Receive) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return bytes(body)


async def _client_left_within(receive: Receive, seconds: float) -> bool:
    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    try:
        await asyncio.wait_for(disconnected(), seconds)
    except TimeoutError:
        return False
    return True


def _header_list(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(key.lower().encode("latin-1"), value.encode("latin-1")) for key, value in headers.items()]


async def _send_raw(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _header_list(headers)})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_json(send: Send, status: int, data: dict[str, Any]) -> None:
    await _send_raw(send, status, json.dumps(data).encode(), {"content-type": "application/json"})


def _drop_expected_cut_errors(record: logging.LogRecord) -> bool:
    """uvicorn reports the deliberately cut streams (``cut_after_chunks``) as errors; they are expected."""
    return "without completing response" not in record.getMessage()


# --- a separate process


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.openai_server", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--script", required=True, help="module:function mapping a request body to a Reply")
    args = parser.parse_args(argv)
    module_name, _, function_name = args.script.partition(":")
    fake = FakeOpenAI()
    fake.script = getattr(importlib.import_module(module_name), function_name)
    fake.start(args.port)
    print(f"listening on {fake.base_url}", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        stopped.wait()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
