"""Measurement hooks for ``agent_overhead.py``, installed into each measured child before anything else.

The benchmark must not edit ``src/`` to see inside the agent, and whatever it installs must cost the
agent and the floors the same, so this module imports only the standard library and does three things,
all switched on by ``BENCH_MARKS`` (a file the child appends one JSON line per mark to, unbuffered, so
the marks survive however the process exits):

- when ``httpx`` or ``httpx2`` is imported, its ``AsyncClient.send`` is wrapped: a request to
  ``…/chat/completions`` writes a ``request`` mark (monotonic time, process CPU, bytes written so
  far), and the end of its response (``aclose``) a ``reply`` mark: the per-step CPU series, the
  CPU before the first request and after the last reply come from these;
- a ``gc.callbacks`` entry writes a ``gc2`` mark, with the pause, for every generation-2 collection;
- ``run_cli`` runs the ``deepresearch`` command line after ``install`` (the agent side).

"Bytes written" is the ``wchar`` of ``/proc/self/io``: every ``write``-family system call on files and
pipes (socket ``send`` is not counted), i.e. the run directory plus the fetch cache and the console.
"""

from __future__ import annotations

import gc
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

_FD = -1
HTTP_LIBRARIES = ("httpx", "httpx2")
"""The agent sends through ``httpx``; the OpenAI SDK (3.x) through its fork ``httpx2``."""


def _wchar() -> int:
    """Bytes this process has passed to write() so far (``/proc/self/io``); -1 where there is none."""
    try:
        with open("/proc/self/io", "rb") as io:
            for line in io:
                if line.startswith(b"wchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def mark(kind: str, **extra: Any) -> None:
    """Append one mark (kind, monotonic seconds, process CPU seconds) to the marks file."""
    if _FD < 0:
        return
    record = {"kind": kind, "t": time.monotonic(), "cpu": time.process_time(), "rss_mb": _rss_mb(), **extra}
    os.write(_FD, (json.dumps(record) + "\n").encode())


def _rss_mb() -> float:
    """Resident memory now (``/proc/self/statm``): where in a run the peak falls."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return round(int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return 0.0


def _is_model_request(request: Any) -> bool:
    return str(request.url.path).rstrip("/").endswith("/chat/completions")


def _wrap_httpx(module: ModuleType) -> None:
    """Mark model requests and the end of their replies, whoever sends them through httpx."""
    client_class = module.AsyncClient
    original_send = client_class.send

    async def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        model = _is_model_request(request)
        if model:
            mark("request", wchar=_wchar())
        response = await original_send(self, request, *args, **kwargs)
        if model:
            original_close = response.aclose

            async def aclose() -> None:
                await original_close()
                mark("reply")

            response.aclose = aclose
        return response

    client_class.send = send


class _PatchOnImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Lets one HTTP library load normally, then wraps it — so the hook imports nothing the child
    does not."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._inner: importlib.abc.Loader | None = None

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != self._name or self._inner is not None:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        self._inner, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        assert self._inner is not None
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        assert self._inner is not None
        self._inner.exec_module(module)
        _wrap_httpx(module)
        sys.meta_path.remove(self)


_gc_started = 0.0
_gc_started_cpu = 0.0


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    global _gc_started, _gc_started_cpu
    if info.get("generation") != 2:
        return
    if phase == "start":
        _gc_started, _gc_started_cpu = time.monotonic(), time.process_time()
    else:
        mark("gc2", pause=time.monotonic() - _gc_started, pause_cpu=time.process_time() - _gc_started_cpu)


def install() -> None:
    """Switch the marks on when ``BENCH_MARKS`` names a file; a no-op otherwise."""
    global _FD
    path = os.environ.get("BENCH_MARKS")
    if not path or _FD >= 0:
        return
    _FD = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    mark("start")
    gc.callbacks.append(_on_gc)
    for name in HTTP_LIBRARIES:
        if name in sys.modules:
            _wrap_httpx(sys.modules[name])
        else:
            sys.meta_path.insert(0, _PatchOnImport(name))


def run_cli(argv: list[str]) -> None:
    """``deepresearch ARGV`` in this process, with the marks on (the agent side of the benchmark)."""
    install()
    sys.argv = ["deepresearch", *argv]
    profile_to = os.environ.get("BENCH_PROFILE")
    if profile_to:  # --profile: cProfile the whole agent process, dumped before its fast exit
        import cProfile

        import deepresearch.lifecycle as lifecycle

        profiler = cProfile.Profile()
        leave = lifecycle.exit_now

        def dump_then_leave(code: int) -> None:
            profiler.disable()
            profiler.dump_stats(profile_to)
            leave(code)

        lifecycle.exit_now = dump_then_leave  # type: ignore[assignment]
        profiler.enable()
    memory_to = os.environ.get("BENCH_TRACEMALLOC")
    if memory_to:  # what Python objects are alive at the end, by the line that allocated them
        import tracemalloc

        import deepresearch.lifecycle as lifecycle

        tracemalloc.start(int(os.environ.get("BENCH_TRACEMALLOC_FRAMES", "1")))
        leave_process = lifecycle.exit_now

        def snapshot_then_leave(code: int) -> None:
            tracemalloc.take_snapshot().dump(memory_to)
            Path(memory_to + ".modules").write_text("\n".join(sorted(sys.modules)))
            leave_process(code)

        lifecycle.exit_now = snapshot_then_leave  # type: ignore[assignment]
    from deepresearch.cli import main

    main()


# --- the floors: a bare OpenAI-SDK loop replaying the agent's own requests --------------------------

_SDK_PARAMS = frozenset(
    {
        "messages",
        "model",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "seed",
        "response_format",
    }
)


def _requests(path: str) -> Any:
    """The recorded request bodies, one at a time: the floor never holds the whole run in memory."""
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


async def _one_call(client: Any, body: dict[str, Any]) -> list[dict[str, str]]:
    """Send ``body`` as the SDK would, read the stream to its end; the reply's tool calls."""
    known = {key: value for key, value in body.items() if key in _SDK_PARAMS}
    extra = {key: value for key, value in body.items() if key not in _SDK_PARAMS}
    stream = await client.chat.completions.create(**known, extra_body=extra or None)
    calls: dict[int, dict[str, str]] = {}
    content = ""
    async for chunk in stream:
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for call in choice.delta.tool_calls or []:
                slot = calls.setdefault(call.index, {"name": "", "arguments": ""})
                if call.function:
                    slot["name"] = call.function.name or slot["name"]
                    slot["arguments"] += call.function.arguments or ""
    return list(calls.values())


async def _same_io(http: Any, calls: list[dict[str, str]], searches: list[dict[str, Any]], url: str) -> None:
    """The network I/O the agent's tools did for these calls: the recorded search requests (as sent)
    and a GET of every page, concurrently, bodies read and dropped (no parsing, no extraction)."""
    import asyncio

    jobs = []
    for call in calls:
        args = json.loads(call["arguments"] or "{}")
        if args.get("action") == "batch_search":
            for _ in args.get("queries") or []:
                sent = searches.pop(0)
                jobs.append(http.post(url, content=sent["body"].encode(), headers=sent["headers"]))
        elif args.get("action") == "batch_open":
            jobs.extend(http.get(page) for page in args.get("urls") or [])
    for response in await asyncio.gather(*jobs):
        response.read()


def run_floor(with_io: bool) -> None:
    """Floor 1 (``with_io`` false): replay the agent's model requests in order through the OpenAI SDK.
    Floor 2: the same, plus the agent's search requests and page GETs after each reply."""
    install()
    import asyncio

    import openai

    # the same I/O through the HTTP library the SDK has already loaded (3.x: httpx2), not a second one
    http_library: Any = sys.modules.get("httpx2")
    if http_library is None:
        import httpx as http_library

    async def loop() -> None:
        client = openai.AsyncOpenAI(
            base_url=os.environ["BENCH_BASE_URL"], api_key="sk-bench", max_retries=0, timeout=300
        )
        http = http_library.AsyncClient(timeout=60)
        searches: list[dict[str, Any]] = []
        if with_io:
            with open(os.environ["BENCH_SEARCH_REQUESTS"], encoding="utf-8") as lines:
                searches = [json.loads(line) for line in lines if line.strip()]
        for body in _requests(os.environ["BENCH_MODEL_REQUESTS"]):
            calls = await _one_call(client, body)
            if with_io and calls:
                await _same_io(http, calls, searches, os.environ["BENCH_SEARCH_URL"])
        await http.aclose()
        await client.close()

    asyncio.run(loop())
