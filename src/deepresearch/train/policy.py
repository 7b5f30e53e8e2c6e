"""The policy under training, served to our own agent as an OpenAI-compatible endpoint on 127.0.0.1.

Why a server: an RL rollout must be *our* agent loop — the same code as ``deepresearch research``,
with its tools, context policy and stops — not a copy written for the trainer. The agent already talks
to any OpenAI-compatible endpoint, so the trainer serves the policy as one and keeps, for every
rollout, the exact token sequence the policy saw and wrote.

Token in, token out: each rollout has its own path (``/s/<name>/v1``). The first request of a rollout
is rendered with the tokenizer's chat template; every later request that continues the conversation
(its rendering starts with the rendering of the previous request plus the reply we gave) is *not*
re-tokenised: the tokens the policy generated are kept as they were, and only the new turns (the
end of the assistant turn as the template writes it, tool results, nudges, the next generation
prompt) are appended, marked as the environment's. So the sequence trained on is the sequence
sampled, and ``env_mask`` is 1 exactly on the tokens the policy generated. A request that does not
continue the conversation (the agent compacted its context) starts a new segment; the trajectory is
the last segment, and ``segments`` says how many there were, so a recipe whose budget lets the agent
compact is visible in the metrics.

The chat template must not rewrite earlier turns (``train format`` refuses such templates for the same
reason); tool calls are read back from the generated text with the agent's own parser for
``<tool_call>{…}</tool_call>`` blocks (``llm.textmode``). A request whose prompt reaches ``max_length``
gets HTTP 400 ``context_length_exceeded``, which ends the run the way a real server's would.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from deepresearch.llm.textmode import parse_tool_calls, used_call_ids
from deepresearch.train.format import FormatError, chat_text, template_messages

Generate = Callable[[list[int], int], list[int]]
"""``(prompt token ids, most new tokens) -> the new token ids`` (ending with EOS when the policy ended
its turn)."""

POLICY_MODEL = "policy"
"""The model name the server answers to (any name is accepted)."""


@dataclass
class Trajectory:
    """One rollout as the trainer sees it: ``prompt_ids + completion_ids`` is what the policy saw."""

    prompt_ids: list[int] = field(default_factory=list)
    completion_ids: list[int] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    """1 on tokens the policy generated, 0 on tokens the environment added (tool results, turn ends)."""
    calls: int = 0
    """Model calls in the rollout (all segments)."""
    segments: int = 0
    """Times the conversation started afresh (the first request counts as one)."""
    overflowed: bool = False
    """A request reached ``max_length`` and was refused."""

    @property
    def generated(self) -> int:
        return sum(self.env_mask)


@dataclass
class _Session:
    ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    prompt_length: int = 0
    last_text: str | None = None
    """The rendering of the last request plus our reply, without a generation prompt."""
    ended: bool = True
    """The last generation ended with EOS (else the turn's end is the environment's)."""
    calls: int = 0
    segments: int = 0
    overflowed: bool = False


class PolicyServer:
    """``/s/<name>/v1/chat/completions`` on 127.0.0.1 behind a random key, generating with ``generate``.

    Requests are served one at a time (one model); the agent's tool calls of other rollouts run
    meanwhile. Use as a context manager, or ``start``/``stop``."""

    def __init__(
        self,
        tokenizer: Any,
        generate: Generate,
        *,
        max_length: int,
        max_new_tokens: int,
    ) -> None:
        if max_new_tokens < 1 or max_length <= max_new_tokens:
            raise ValueError("max_length must exceed max_new_tokens, which must be at least 1")
        self.tokenizer = tokenizer
        self.generate = generate
        self.max_length = max_length
        self.max_new_tokens = max_new_tokens
        self.api_key = secrets.token_urlsafe(24)
        eos = getattr(tokenizer, "eos_token", None)
        self._eos_text: str = eos or ""
        self._eos_id: int | None = getattr(tokenizer, "eos_token_id", None)
        self._special = [token for token in (eos, getattr(tokenizer, "pad_token", None)) if token]
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()  # one generation at a time
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                server._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # quiet: the trainer logs
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="policy-server", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> PolicyServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the policy server is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def base_url(self, name: str) -> str:
        """The OpenAI base URL of rollout ``name`` (a fresh one starts with no history)."""
        if not name or "/" in name:
            raise ValueError(f"bad rollout name {name!r}")
        with self._lock:
            self._sessions[name] = _Session()
        return f"{self.url}/s/{name}/v1"

    def trajectory(self, name: str) -> Trajectory:
        """The tokens of rollout ``name`` so far (its last segment)."""
        with self._lock:
            session = self._sessions[name]
            cut = session.prompt_length
            return Trajectory(
                prompt_ids=list(session.ids[:cut]),
                completion_ids=list(session.ids[cut:]),
                env_mask=list(session.mask),
                calls=session.calls,
                segments=session.segments,
                overflowed=session.overflowed,
            )

    def forget(self, name: str) -> None:
        with self._lock:
            self._sessions.pop(name, None)

    # --- one request ----------------------------------------------------------------------------

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        parts = request.path.strip("/").split("/")
        if len(parts) != 5 or parts[0] != "s" or parts[2:] != ["v1", "chat", "completions"]:
            return _send(request, HTTPStatus.NOT_FOUND, _error("not_found", f"no route {request.path}"))
        if not secrets.compare_digest(request.headers.get("Authorization", ""), f"Bearer {self.api_key}"):
            return _send(request, HTTPStatus.UNAUTHORIZED, _error("invalid_api_key", "wrong API key"))
        name = parts[1]
        try:
            length = int(request.headers.get("Content-Length") or 0)
            body = json.loads(request.rfile.read(length) or b"{}")
            messages = body["messages"]
            if not isinstance(messages, list) or not messages:
                raise ValueError("messages must be a non-empty list")
        except (ValueError, KeyError, TypeError) as exc:
            return _send(request, HTTPStatus.BAD_REQUEST, _error("invalid_request_error", f"bad body: {exc}"))
        try:
            with self._lock:
                if name not in self._sessions:
                    return _send(request, HTTPStatus.NOT_FOUND, _error("not_found", f"no rollout {name!r}"))
                reply, usage = self._complete(self._sessions[name], body)
        except _Overflow as exc:
            return _send(request, HTTPStatus.BAD_REQUEST, _error("context_length_exceeded", str(exc)))
        except FormatError as exc:
            return _send(request, HTTPStatus.BAD_REQUEST, _error("invalid_request_error", str(exc)))
        _send(request, HTTPStatus.OK, _completion(reply, usage))

    def _complete(self, session: _Session, body: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
        messages = _for_template(body["messages"])
        tools = body.get("tools") or None
        text = chat_text(self.tokenizer, messages, tools, generation=True)
        if session.last_text is not None and text.startswith(session.last_text):
            close = self._turn_end(session)
            added = close + self._encode(text[len(session.last_text) :])
            session.ids += added
            session.mask += [0] * len(added)
        else:  # the first request, or the agent rewrote its history: a new segment
            session.ids = self._encode(text)
            session.mask = []
            session.prompt_length = len(session.ids)
            session.segments += 1
        session.calls += 1
        room = self.max_length - len(session.ids)
        if room <= 0:
            session.overflowed = True
            raise _Overflow(
                f"the prompt has {len(session.ids)} tokens; the policy's limit is {self.max_length}"
            )
        asked = int(body.get("max_completion_tokens") or body.get("max_tokens") or self.max_new_tokens)
        new = list(self.generate(list(session.ids), max(1, min(asked, self.max_new_tokens, room))))
        session.ids += new
        session.mask += [1] * len(new)
        session.ended = bool(new) and new[-1] == self._eos_id
        raw = self.tokenizer.decode(new, skip_special_tokens=False)
        for token in self._special:  # the end of the turn is not part of the reply
            raw = raw.replace(token, "")
        content, calls = parse_tool_calls(raw, taken_ids=used_call_ids(body["messages"]))
        reply: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            reply["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in calls
            ]
        session.last_text = chat_text(self.tokenizer, [*messages, *_for_template([reply])], tools)
        finish = "tool_calls" if calls else ("stop" if session.ended else "length")
        usage = {
            "prompt_tokens": len(session.ids) - len(new),
            "completion_tokens": len(new),
            "total_tokens": len(session.ids),
        }
        return {"message": reply, "finish_reason": finish}, usage

    def _turn_end(self, session: _Session) -> list[int]:
        """The tokens the template writes after the last generated token to close the assistant turn:
        EOS when the generation was cut, then what follows EOS (most templates put a newline there)."""
        assert session.last_text is not None
        close: list[int] = [] if session.ended or self._eos_id is None else [self._eos_id]
        at = session.last_text.rfind(self._eos_text) if self._eos_text else -1
        if at >= 0:
            close += self._encode(session.last_text[at + len(self._eos_text) :])
        return close

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def _for_template(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``format.template_messages``, except that a call whose arguments are not JSON (a block the
    parser could not read) is rendered as ``{"raw": text}`` instead of refused: the rollout goes on
    and the agent tells the policy its call was malformed."""
    readable = []
    for message in messages:
        calls = message.get("tool_calls") or []
        if any(not _is_json(call.get("function", {}).get("arguments")) for call in calls):
            message = {**message, "tool_calls": [_readable(call) for call in calls]}
        readable.append(message)
    return template_messages(readable)


def _is_json(value: Any) -> bool:
    if not isinstance(value, str) or not value.strip():
        return True  # an object, or nothing: the template takes it as it is
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


def _readable(call: Mapping[str, Any]) -> dict[str, Any]:
    function = dict(call.get("function") or {})
    if not _is_json(function.get("arguments")):
        function["arguments"] = json.dumps({"raw": function["arguments"]}, ensure_ascii=False)
    return {**call, "function": function}


class _Overflow(Exception):
    pass


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": code, "code": code}}


def _completion(choice: Mapping[str, Any], usage: Mapping[str, int]) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{secrets.token_hex(8)}",
        "object": "chat.completion",
        "model": POLICY_MODEL,
        "choices": [{"index": 0, **choice}],
        "usage": dict(usage),
    }


def _send(request: BaseHTTPRequestHandler, status: HTTPStatus, payload: Mapping[str, Any]) -> None:
    data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    request.send_response(status)
    request.send_header("Content-Type", "application/json")
    request.send_header("Content-Length", str(len(data)))
    request.end_headers()
    request.wfile.write(data)


def model_generator(model: Any, tokenizer: Any, *, temperature: float = 1.0, top_p: float = 1.0) -> Generate:
    """Sampling from a transformers causal LM (a PEFT-wrapped one too), in eval mode for the call."""
    import torch

    def generate(ids: list[int], most: int) -> list[int]:
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                device = next(model.parameters()).device
                prompt = torch.tensor([ids], device=device)
                out = model.generate(
                    input_ids=prompt,
                    attention_mask=torch.ones_like(prompt),
                    max_new_tokens=most,
                    do_sample=temperature > 0,
                    temperature=temperature if temperature > 0 else None,
                    top_p=top_p if temperature > 0 else None,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                )
        finally:
            model.train(was_training)
        new: list[int] = out[0, len(ids) :].tolist()
        eos = tokenizer.eos_token_id
        return new[: new.index(eos) + 1] if eos in new else new

    return generate


def scripted_generator(tokenizer: Any, replies: Sequence[str | Callable[[str], str]]) -> Generate:
    """A generator that writes ``replies`` in turn (each closed with EOS; a callable gets the prompt's
    text), for checking the token bookkeeping against a known conversation; past the end it repeats
    the last reply."""
    turns = iter(range(len(replies)))

    def generate(ids: list[int], most: int) -> list[int]:
        reply = replies[next(turns, len(replies) - 1)]
        text = reply(tokenizer.decode(ids, skip_special_tokens=False)) if callable(reply) else reply
        encoded = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        return [*encoded, int(tokenizer.eos_token_id)][:most]

    return generate
