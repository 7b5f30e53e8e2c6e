"""The embedded llama.cpp server: clear errors before anything starts, and — with the real bundled model,
marked ``slow`` — the OpenAI-compatible endpoint (non-stream, stream, the official SDK), schema-constrained
JSON through ``response_format``, deterministic greedy decoding, prompt caching across a growing
conversation, a server process that never outlives its owner, an API key kept off its command line, thread
counts measured once and cached, token counts by the model's own tokenizer, and prompt progress reported
through the chat client.

The real model is not downloaded here (the socket guard allows loopback only): it is taken from
``DEEPRESEARCH_TEST_MODEL``, the default data dir (``deepresearch models pull``, which ``.ci/run`` runs
before the tests) or ``~/.cache/deepresearch-test-models``. When none has it the slow tests fail and say how
to get it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from deepresearch.errors import ConfigError, LLMError
from deepresearch.llm.client import ChatClient, LLMConfig
from deepresearch.llm.local import server as server_module
from deepresearch.llm.local import threads
from deepresearch.llm.local.server import (
    FALLBACK_TOKEN_FACTOR,
    NEEDS_EXTRA,
    TOKENIZE_EXACT_CHARS,
    LocalModelServer,
)
from deepresearch.llm.tokens import count_tokens as o200k_tokens

CONTEXT = 4096
LONG_SYSTEM = "You are a careful research assistant. " + " ".join(
    f"Rule {n}: cite every claim with the source key you were given, never invent a URL, and keep the "
    "answer short and factual."
    for n in range(1, 16)
)


@pytest.fixture(scope="session")
def local_server(real_model: Path) -> Iterator[LocalModelServer]:
    """One server for the read-only tests of the session. One thread: on a loaded 2-core machine two
    threads wait for each other at every layer and ran ten times slower (the suite beside a CPU hog)."""
    with LocalModelServer(real_model, context=CONTEXT, threads=1) as server:
        yield server


@pytest.fixture
def client(local_server: LocalModelServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {local_server.api_key}"}
    with httpx.Client(base_url=local_server.base_url, headers=headers, timeout=300) as http:
        yield http


def _chat(client: httpx.Client, messages: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    response = client.post("/chat/completions", json={"model": "smollm2-135m", "messages": messages, **extra})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie left for a non-reaping init counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def _wait_gone(pid: int, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


# --- errors found before any process starts


def test_missing_extra_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(64))
    monkeypatch.setitem(sys.modules, "xllamacpp", None)  # what find_spec sees when it is not installed
    server = LocalModelServer(model)
    with pytest.raises(ConfigError) as caught:
        server.start()
    assert (
        str(caught.value)
        == NEEDS_EXTRA
        == "--model local needs the local extra: pip install 'deepresearch[local]'"
    )
    assert server.pid is None


def test_a_missing_or_foreign_model_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model file not found"):
        LocalModelServer(tmp_path / "absent.gguf").start()
    text = tmp_path / "notes.gguf"
    text.write_text("just text")
    with pytest.raises(ConfigError, match="is not a GGUF model file"):
        LocalModelServer(text).start()
    with pytest.raises(ConfigError, match="local_context"):
        LocalModelServer(text, context=16)
    with pytest.raises(ConfigError, match="local_threads"):
        LocalModelServer(text, threads=0)
    server = LocalModelServer(text)
    assert server.model_name == "notes" and not server.running
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.base_url
    server.stop()  # stopping what never started is harmless


@pytest.mark.slow
def test_a_corrupt_gguf_is_a_config_error_with_llama_cpp_reason(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(b"GGUF" + os.urandom(4096))
    server = LocalModelServer(corrupt)
    with pytest.raises(ConfigError) as caught:
        server.start()
    assert f"{corrupt}: llama.cpp could not load this model" in str(caught.value)
    assert "failed to load model" in str(caught.value)
    assert server.pid is None and not server.running


# --- the real model


@pytest.mark.slow
def test_the_server_listens_on_loopback_with_a_key(
    local_server: LocalModelServer, client: httpx.Client
) -> None:
    assert local_server.running and local_server.model_name == "smollm2-135m"
    assert local_server.base_url.startswith("http://127.0.0.1:") and local_server.base_url.endswith("/v1")
    root = local_server.base_url.removesuffix("/v1")
    assert httpx.get(f"{root}/health").json() == {"status": "ok"}
    assert httpx.get(f"{local_server.base_url}/models").status_code == 401  # no key
    [model] = client.get("/models").json()["data"]
    assert model["id"] == "smollm2-135m" and model["meta"]["n_ctx"] == CONTEXT
    [slot] = client.get(f"{root}/slots").json()  # one slot with the whole context
    assert slot["n_ctx"] == CONTEXT


@pytest.mark.slow
def test_chat_completions_non_stream_and_stream_through_the_sdk(local_server: LocalModelServer) -> None:
    messages: list[Any] = [{"role": "user", "content": "Name three colours."}]
    with openai.OpenAI(base_url=local_server.base_url, api_key=local_server.api_key, max_retries=0) as sdk:
        reply = sdk.chat.completions.create(
            model=local_server.model_name, messages=messages, max_tokens=24, temperature=0
        )
        chunks = list(
            sdk.chat.completions.create(
                model=local_server.model_name,
                messages=messages,
                max_tokens=24,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    [choice] = reply.choices
    assert choice.message.role == "assistant" and (choice.message.content or "").strip()
    assert choice.finish_reason in ("stop", "length")
    assert (
        reply.usage is not None and reply.usage.prompt_tokens > 0 and 0 < reply.usage.completion_tokens <= 24
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == choice.message.content  # same greedy decode, delivered in pieces
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert (
        chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == reply.usage.completion_tokens
    )


ACTION_SCHEMA = {
    "type": "object",
    "properties": {
        "tool": {"type": "string", "enum": ["batch_web_surfer", "file", "todo", "answer"]},
        "query": {"type": "string", "maxLength": 60},
        "topk": {"type": "integer", "minimum": 1, "maximum": 50},
    },
    "required": ["tool", "query", "topk"],
    "additionalProperties": False,
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "question",
    [
        "What is the capital of France?",
        "Find recent papers about protein folding and summarize them.",
        "写一份关于量子计算的报告。",
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_response_format_json_schema_always_parses(client: httpx.Client, question: str, stream: bool) -> None:
    messages = [
        {"role": "system", "content": "You are a research agent. Answer with one JSON action."},
        {"role": "user", "content": question},
    ]
    body = {
        "model": "smollm2-135m",
        "messages": messages,
        "max_tokens": 300,  # far above what 60 characters of query need
        "temperature": 0,
        "stream": stream,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "action", "strict": True, "schema": ACTION_SCHEMA},
        },
    }
    if stream:
        with client.stream("POST", "/chat/completions", json=body) as response:
            assert response.status_code == 200
            events = [
                line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")
            ]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(event) for event in events[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1]
    else:
        choice = _chat(client, messages, **{k: v for k, v in body.items() if k not in ("model", "messages")})
        text = choice["choices"][0]["message"]["content"]
        finish = choice["choices"][0]["finish_reason"]
    assert finish == "stop", text
    action = json.loads(text)
    assert set(action) == {"tool", "query", "topk"}
    assert action["tool"] in ACTION_SCHEMA["properties"]["tool"]["enum"]  # type: ignore[index]
    assert isinstance(action["query"], str) and len(action["query"]) <= 60
    assert isinstance(action["topk"], int) and 1 <= action["topk"] <= 50


@pytest.mark.slow
def test_greedy_decoding_is_deterministic(client: httpx.Client) -> None:
    messages = [{"role": "user", "content": "Write one sentence about lighthouses."}]
    options = {"max_tokens": 40, "temperature": 0, "cache_prompt": False}
    first, second = _chat(client, messages, **options), _chat(client, messages, **options)
    text = first["choices"][0]["message"]["content"]
    assert text and text == second["choices"][0]["message"]["content"]
    assert first["timings"]["cache_n"] == second["timings"]["cache_n"] == 0  # both prefilled from scratch
    assert first["usage"] == second["usage"]


@pytest.mark.slow
def test_a_growing_conversation_prefills_only_new_tokens(client: httpx.Client) -> None:
    messages = [
        {"role": "system", "content": LONG_SYSTEM},
        {"role": "user", "content": "What is a Bloom filter?"},
    ]
    first = _chat(client, messages, max_tokens=16, temperature=0)
    messages += [
        {"role": "assistant", "content": first["choices"][0]["message"]["content"]},
        {"role": "user", "content": "And how large should it be for a million items?"},
    ]
    second = _chat(client, messages, max_tokens=16, temperature=0)
    shared = first["usage"]["prompt_tokens"]
    assert shared > 300  # the long system prompt
    timings, usage = second["timings"], second["usage"]
    assert timings["cache_n"] >= shared  # the whole first prompt (and some of the reply) came from the cache
    assert timings["cache_n"] + timings["prompt_n"] == usage["prompt_tokens"]
    assert timings["prompt_n"] < usage["prompt_tokens"] - shared + 8  # only the new turn was prefilled
    assert usage["prompt_tokens_details"]["cached_tokens"] == timings["cache_n"]


@pytest.mark.slow
def test_async_context_manager(real_model: Path) -> None:
    async def run() -> tuple[int, str]:
        async with LocalModelServer(real_model, context=1024, threads=1, model_name="tiny") as server:
            headers = {"Authorization": f"Bearer {server.api_key}"}
            async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=300) as http:
                response = await http.post(
                    "/chat/completions",
                    json={"model": "tiny", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
                )
            assert server.pid is not None
            return server.pid, response.json()["model"]

    pid, model = asyncio.run(run())
    assert model == "tiny"
    assert not _alive(pid)


@pytest.mark.slow
def test_a_crash_is_reported_with_its_cause(real_model: Path) -> None:
    server = LocalModelServer(real_model, context=1024, threads=1)
    with pytest.raises(LLMError) as caught, server:
        assert server.pid is not None
        os.kill(server.pid, signal.SIGKILL)  # what an abort inside llama.cpp looks like from outside
        assert _wait_gone(server.pid)
        httpx.post(f"{server.base_url}/chat/completions", json={})  # the client's view: connection refused
    assert "stopped unexpectedly (killed by SIGKILL)" in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    with pytest.raises(LLMError, match="stopped unexpectedly"):
        server.check()  # still known after the stop
    assert server.pid is None

    async def watch() -> None:
        async with LocalModelServer(real_model, context=1024, threads=1) as watched:
            assert watched.pid is not None
            os.kill(watched.pid, signal.SIGKILL)
            await asyncio.wait_for(watched.watch(interval=0.05), timeout=10)

    with pytest.raises(LLMError, match="killed by SIGKILL"):
        asyncio.run(watch())


OWNER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from deepresearch.llm.local.server import LocalModelServer
    with LocalModelServer(Path(sys.argv[1]), context=1024, threads=1) as server:
        print(server.pid, flush=True)
        while True:
            time.sleep(0.1)
    """
)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_the_server_never_outlives_its_owner(real_model: Path, how: signal.Signals) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", OWNER, str(real_model)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as owner:
        assert owner.stdout is not None and owner.stderr is not None
        try:
            line = owner.stdout.readline()
            assert line.strip().isdigit(), owner.stderr.read()
            server_pid = int(line)
            assert _alive(server_pid)
            owner.send_signal(how)  # SIGINT: Ctrl-C → KeyboardInterrupt → the with block stops the server
            owner.wait(timeout=30)
            assert _wait_gone(server_pid), f"server {server_pid} still runs after its owner got {how.name}"
        finally:
            if owner.poll() is None:
                owner.kill()
            owner.communicate()


# --- threads, the key, token counts, prompt progress


def test_thread_candidates_go_from_all_cpus_to_one() -> None:
    assert threads.candidates(1) == [1]
    assert threads.candidates(2) == [2, 1]
    assert threads.candidates(3) == [3, 1]
    assert threads.candidates(4) == [4, 2, 1]
    assert threads.candidates(12) == [12, 6, 1]
    assert threads.candidates(96) == [16, 8, 1]  # capped: a CPU run is bound by memory bandwidth


def test_the_thread_cache_keeps_the_newest_choices_and_survives_a_bad_file(tmp_path: Path) -> None:
    cache = tmp_path / "deeper" / "local-threads.json"
    assert threads.read_cache(cache) == {}  # no file yet
    threads.write_cache(cache, "model-a|cpus=2", 1, {2: 3551.0, 1: 900.5})
    assert threads.read_cache(cache) == {
        "model-a|cpus=2": {
            "threads": 1,
            "timings_ms": {"2": 3551.0, "1": 900.5},
            "measured": json.loads(cache.read_text())["choices"]["model-a|cpus=2"]["measured"],
        }
    }
    for n in range(threads.CACHE_ENTRIES + 3):
        threads.write_cache(cache, f"model-{n}", 2, {2: 1.0, 1: 2.0})
    kept = threads.read_cache(cache)
    assert len(kept) == threads.CACHE_ENTRIES and "model-a|cpus=2" not in kept
    assert f"model-{threads.CACHE_ENTRIES + 2}" in kept
    assert [p.name for p in cache.parent.iterdir()] == ["local-threads.json"]  # no temporary left behind
    for junk in ("{not json", "[1, 2]", '{"choices": 7}'):
        cache.write_text(junk)
        assert threads.read_cache(cache) == {}


def _thread_inits(caplog: pytest.LogCaptureFixture) -> list[int]:
    """The thread counts llama.cpp reported creating its thread pool with, in order (its own log)."""
    found = []
    for record in caplog.records:
        message = record.getMessage()
        if "threadpool init, n_threads = " in message:
            found.append(int(message.rsplit("=", 1)[1]))
    return found


def _wait_for_inits(caplog: pytest.LogCaptureFixture, count: int) -> list[int]:
    """The log lines arrive through a reader thread; give it a moment after the start returned."""
    deadline = time.monotonic() + 10
    while len(_thread_inits(caplog)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return _thread_inits(caplog)


@pytest.mark.slow
@pytest.mark.skipif(threads.available_cpus() < 2, reason="one CPU: nothing to measure")
def test_threads_are_measured_at_the_first_start_then_cached(
    real_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "local-threads.json"
    candidates = threads.candidates(threads.available_cpus())
    caplog.set_level(logging.DEBUG, logger="deepresearch.llm.local.server")
    with LocalModelServer(real_model, context=1024, threads_cache=cache) as server:
        assert server.threads_decided == "measured"
        assert list(server.thread_timings) == candidates
        timings = {n: ms for n, ms in server.thread_timings.items() if ms is not None}
        assert len(timings) == len(candidates) and all(ms > 0 for ms in timings.values())
        assert server.threads_used == min(timings, key=timings.__getitem__)  # the fastest
        chosen = server.threads_used
        reloaded = chosen != candidates[-1]  # the last candidate loaded stays; another is loaded again
        inits = _wait_for_inits(caplog, len(candidates) + reloaded)
        assert inits == ([*candidates, chosen] if reloaded else candidates)  # one load per candidate …
        assert inits[-1] == chosen  # … and the server that serves uses the chosen count
        assert _chat_ok(server)
    [entry] = json.loads(cache.read_text())["choices"].values()
    assert entry["threads"] == chosen and set(entry["timings_ms"]) == {str(n) for n in candidates}

    caplog.clear()
    with LocalModelServer(real_model, context=1024, threads_cache=cache) as again:
        assert (again.threads_decided, again.threads_used, again.thread_timings) == ("cached", chosen, {})
        assert _wait_for_inits(caplog, 1) == [chosen]  # loaded once, with the cached count
    caplog.clear()
    with LocalModelServer(real_model, context=1024, threads=1, threads_cache=cache) as fixed:
        assert (fixed.threads_decided, fixed.threads_used) == ("setting", 1)
        assert _wait_for_inits(caplog, 1) == [1]


def _chat_ok(server: LocalModelServer) -> bool:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    body = {"model": server.model_name, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    response = httpx.post(f"{server.base_url}/chat/completions", json=body, headers=headers, timeout=300)
    return response.status_code == 200 and response.json()["usage"]["completion_tokens"] > 0


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc")
def test_the_api_key_is_not_on_the_command_line(local_server: LocalModelServer, client: httpx.Client) -> None:
    """Any local user can read a process's arguments (``ps``); the key goes through the child's stdin."""
    assert local_server.pid is not None
    key = local_server.api_key.encode()
    cmdline = Path(f"/proc/{local_server.pid}/cmdline").read_bytes()
    assert b"_child_main" in cmdline and key not in cmdline
    assert key not in Path(f"/proc/{local_server.pid}/environ").read_bytes()
    assert client.get("/models").status_code == 200  # and the server still demands it (401 without)
    assert httpx.get(f"{local_server.base_url}/models").status_code == 401


SAMPLE_TEXT = (
    "PostgreSQL can build an index without locking out writes: CREATE INDEX CONCURRENTLY scans the table "
    "twice and waits for transactions that could use the index. 它比普通的建索引慢，但不会阻塞写入。"
)


@pytest.mark.slow
def test_count_tokens_uses_the_models_own_tokenizer(
    real_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = LocalModelServer(real_model, context=1024, threads=1)
    with server:
        headers = {"Authorization": f"Bearer {server.api_key}"}
        root = server.base_url.removesuffix("/v1")

        def tokenized(text: str) -> int:
            response = httpx.post(f"{root}/tokenize", json={"content": text}, headers=headers, timeout=60)
            return len(response.json()["tokens"])

        exact = tokenized(SAMPLE_TEXT)
        assert server.count_tokens(SAMPLE_TEXT) == exact
        assert exact > o200k_tokens(SAMPLE_TEXT) * 1.2  # what o200k undercounts for this model
        assert server.count_tokens("") == 0
        words = " ".join(f"word{n % 997} of sentence {n}." for n in range(40_000))
        assert len(words) > 2 * TOKENIZE_EXACT_CHARS
        estimated, whole = server.count_tokens(words), tokenized(words)
        assert abs(estimated - whole) < whole * 0.05  # counted in part, sampled beyond
    with caplog.at_level(logging.WARNING, logger="deepresearch.llm.local.server"):
        assert server.count_tokens(SAMPLE_TEXT) == exact  # remembered: no server needed
        fresh = SAMPLE_TEXT + " Once more."
        assert server.count_tokens(fresh) == math.ceil(o200k_tokens(fresh) * FALLBACK_TOKEN_FACTOR)
        assert server.count_tokens(fresh + "!") == math.ceil(
            o200k_tokens(fresh + "!") * FALLBACK_TOKEN_FACTOR
        )
    [warning] = caplog.records  # said once
    assert "counting tokens as o200k × 1.35" in warning.getMessage()


@pytest.mark.slow
def test_prompt_progress_reaches_the_chat_client(real_model: Path) -> None:
    """A prompt of two batches reports its progress batch by batch, ending at its whole length."""
    seen: list[tuple[int, int]] = []
    text = " ".join(f"Fact {n}: index number {n} covers column c{n}." for n in range(36))

    async def call(server: LocalModelServer) -> int:
        config = LLMConfig(
            base_url=server.base_url,
            model=server.model_name,
            api_key=server.api_key,
            prompt_progress=True,
            max_output_tokens=2,
            temperature=0,
            max_retries=0,
        )
        async with ChatClient(config, on_progress=lambda done, total: seen.append((done, total))) as chat:
            completion = await chat.complete([{"role": "user", "content": text}])
        return completion.usage.prompt_tokens

    with LocalModelServer(real_model, context=2048, threads=1) as server:
        prompt_tokens = asyncio.run(call(server))
    assert server_module.PROMPT_BATCH < prompt_tokens <= 2 * server_module.PROMPT_BATCH
    assert seen[-1] == (prompt_tokens, prompt_tokens)
    assert {total for _, total in seen} == {prompt_tokens}
    done = [processed for processed, _ in seen]
    assert done == sorted(done) and len(set(done)) >= 3  # 0, 512, 1024, … the whole prompt
    assert all(b - a <= server_module.PROMPT_BATCH for a, b in itertools.pairwise(done))
