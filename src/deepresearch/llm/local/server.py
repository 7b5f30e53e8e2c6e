"""The embedded model server behind ``--model local``: llama.cpp (through ``xllamacpp``) serving a GGUF file
on ``http://127.0.0.1:<free port>/v1``, so the agent's ordinary OpenAI-compatible chat client talks to it.

Why a child process rather than ``xllamacpp.Server`` in the agent's own process: llama.cpp aborts the whole
process on an internal assertion, can crash on a bad file or an unsupported CPU, and writes its own log to
the process's stdout and stderr. In a child, a crash becomes an ``LLMError`` naming the signal with the last
lines llama.cpp printed, its log goes to ``logging`` at DEBUG, and its compute threads are out of the agent's
way. The child is tied to the agent three ways: ``stop()`` (and leaving the ``with``/``async with`` block,
Ctrl-C included) ends it; it runs in its own session, so the terminal's Ctrl-C reaches only the agent, which
then stops it in order; and it exits as soon as its stdin reaches end-of-file, which also happens when the
agent dies without cleaning up (even ``kill -9``).

What the server is set up for: one slot (``n_parallel=1``) holding the whole context, prompt caching on, so
each step of a growing conversation prefills only its new tokens (responses report ``timings.cache_n`` and
``usage.prompt_tokens_details.cached_tokens``). ``response_format`` ``{"type": "json_schema", "json_schema":
{"name": …, "schema": …}}`` needs no switch: on ``/v1/chat/completions`` llama.cpp turns the schema into a
grammar that constrains sampling, so the reply always parses when ``max_tokens`` leaves room for it. The web
UI is off; the server listens on 127.0.0.1 only (checked again on the address it reports) and demands a random
API key, so other local users cannot borrow it.
"""

from __future__ import annotations

import asyncio
import collections
import importlib.util
import json
import logging
import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self
from urllib.parse import urlsplit

import httpx

from deepresearch.errors import ConfigError, LLMError

logger = logging.getLogger(__name__)

DEFAULT_CONTEXT = 8192
START_TIMEOUT = 300.0
"""Seconds for the model to load: the bundled one needs under a second, a 7B GGUF on a slow disk a minute."""
STOP_TIMEOUT = 5.0
PROMPT_CACHE_MIB = 1024
"""Host memory llama.cpp may use to keep prompts that left the slot (a judge call between agent steps)."""
NEEDS_EXTRA = "--model local needs the local extra: pip install 'deepresearch[local]'"
GGUF_MAGIC = b"GGUF"
LOOPBACK = "127.0.0.1"

_EXIT_NO_XLLAMACPP = 3
_EXIT_LOAD_FAILED = 4
_STDERR_LINES = 200
_CHILD_CODE = "from deepresearch.llm.local.server import _child_main; _child_main()"
_LLAMA_ERROR = re.compile(r"^[\d.]+ E\s+(.*)$")
"""An error line of llama.cpp's log: ``0.00.036.277 E srv    load_model: failed to load model, '…'``."""


class LocalModelServer:
    """A llama.cpp server for one GGUF file, alive between ``start()`` and ``stop()`` (or inside ``with`` /
    ``async with``). Point the chat client at ``base_url`` with ``model_name`` and ``api_key``."""

    def __init__(
        self,
        model_path: Path,
        *,
        context: int = DEFAULT_CONTEXT,
        threads: int | None = None,
        model_name: str | None = None,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        if context < 256:
            raise ConfigError(f"local_context must be at least 256 tokens, not {context}")
        if threads is not None and threads < 1:
            raise ConfigError(f"local_threads must be at least 1, not {threads}")
        self.model_path = model_path
        self.context = context
        self.threads = threads
        self.model_name = model_name or model_path.stem
        """Sent as ``model`` in requests and listed by ``/v1/models``."""
        self.api_key = secrets.token_urlsafe(24)
        """The bearer key the server demands (``/health`` is open)."""
        self.start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._address: str | None = None
        self._handshake: queue.Queue[str] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        self._readers: list[threading.Thread] = []
        self._crash: LLMError | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` while running."""
        if self._address is None:
            raise RuntimeError("the local model server is not running")
        return f"{self._address}/v1"

    @property
    def pid(self) -> int | None:
        """The server process's id while it exists."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None and self._address is not None

    def start(self) -> None:
        """Start the server and return once it answers ``/health``; raise ``ConfigError`` when the extra or
        the model is the problem, ``LLMError`` when llama.cpp failed."""
        self._spawn()
        try:
            deadline = time.monotonic() + self.start_timeout
            while (address := self._poll_ready(deadline)) is None:
                time.sleep(0.02)
            self._confirm(address)
            self._go_live(address)
        except BaseException:
            self.stop()
            raise

    async def astart(self) -> None:
        """``start()`` without blocking the event loop while the model loads; cancelling stops the child."""
        self._spawn()
        try:
            deadline = time.monotonic() + self.start_timeout
            while (address := self._poll_ready(deadline)) is None:
                await asyncio.sleep(0.02)
            await asyncio.to_thread(self._confirm, address)
            self._go_live(address)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """End the server (close its stdin, then SIGTERM, then SIGKILL); safe to call twice."""
        process = self._process
        if process is None:
            return
        self._crash_error()  # a crash before the stop is still reported by check() and __exit__
        if process.poll() is None:
            if process.stdin is not None:
                process.stdin.close()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for reader in self._readers:
            reader.join(timeout=2)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()
        if self._address is not None:
            logger.info("stopped the local model server %s (pid %d)", self._address, process.pid)
        self._process, self._address, self._readers = None, None, []

    def check(self) -> None:
        """Raise the ``LLMError`` describing a crash if the server died on its own; else do nothing."""
        error = self._crash_error()
        if error is not None:
            raise error

    async def watch(self, interval: float = 1.0) -> None:
        """Return when the server is stopped; raise ``LLMError`` as soon as it crashes. Run it next to the
        agent (a task group) so a crash ends the run with its cause instead of connection errors."""
        while self._process is not None:
            self.check()
            await asyncio.sleep(interval)
        self.check()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._finish(exc)

    async def __aenter__(self) -> Self:
        await self.astart()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._finish(exc)

    def _finish(self, exc: BaseException | None) -> None:
        """Stop; if the block failed because the server had crashed, say so instead of what the client saw."""
        crash = self._crash_error() if isinstance(exc, Exception) else None
        self.stop()
        if crash is not None and exc is not crash:
            raise crash from exc

    def _spawn(self) -> None:
        if self._process is not None:
            raise RuntimeError("the local model server is already started")
        if importlib.util.find_spec("xllamacpp") is None:
            raise ConfigError(NEEDS_EXTRA)
        _check_model_file(self.model_path)
        config = {
            "model": str(self.model_path),
            "alias": self.model_name,
            "context": self.context,
            "threads": self.threads,
            "api_key": self.api_key,
        }
        self._crash = None
        self._stderr.clear()
        self._handshake = queue.Queue()
        self._process = subprocess.Popen(
            [sys.executable, "-c", _CHILD_CODE, json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        assert self._process.stdout is not None and self._process.stderr is not None
        self._readers = [
            threading.Thread(target=self._read_handshake, args=(self._process.stdout,), daemon=True),
            threading.Thread(target=self._read_log, args=(self._process.stderr,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        logger.debug("started the local model server process %d for %s", self._process.pid, self.model_path)

    def _read_handshake(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self._handshake.put(raw.decode("utf-8", "replace").strip())

    def _read_log(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            self._stderr.append(line)
            logger.debug("llama.cpp: %s", line)

    def _poll_ready(self, deadline: float) -> str | None:
        """The address once the child reported it, ``None`` while loading; raise if it died or is too slow."""
        assert self._process is not None
        try:
            return str(json.loads(self._handshake.get_nowait())["address"])
        except queue.Empty:
            pass
        except (ValueError, KeyError, TypeError) as exc:
            raise LLMError(f"the local model server sent an unexpected handshake ({exc})") from exc
        code = self._process.poll()
        if code is not None:
            raise self._startup_error(code)
        if time.monotonic() > deadline:
            raise LLMError(
                f"the local model server did not load {self.model_path} within {self.start_timeout:.0f} s"
                + self._tail(" Last output: ")
            )
        return None

    def _confirm(self, address: str) -> None:
        """Check that the reported address is loopback and that ``/health`` answers."""
        if urlsplit(address).hostname != LOOPBACK:
            raise LLMError(f"the local model server listens on {address}, not on {LOOPBACK}; refused")
        try:
            response = httpx.get(f"{address}/health", timeout=10.0, trust_env=False)
            healthy = response.status_code == 200 and response.json().get("status") == "ok"
        except (httpx.HTTPError, ValueError) as exc:
            raise LLMError(f"the local model server at {address} does not answer /health ({exc})") from exc
        if not healthy:
            raise LLMError(f"the local model server at {address} is not healthy: {response.text[:200]}")

    def _go_live(self, address: str) -> None:
        assert self._process is not None
        self._address = address
        logger.info(
            "local model server for %s on %s (pid %d, context %d)",
            self.model_path.name,
            address,
            self._process.pid,
            self.context,
        )

    def _startup_error(self, code: int) -> ConfigError | LLMError:
        self._join_readers()
        if code == _EXIT_NO_XLLAMACPP:
            return ConfigError(f"{NEEDS_EXTRA} ({self._tail()})")
        if code == _EXIT_LOAD_FAILED:
            errors = [m.group(1).strip() for line in self._stderr.copy() if (m := _LLAMA_ERROR.match(line))]
            reason = "; ".join(errors[-3:]) if errors else self._tail()
            return ConfigError(f"{self.model_path}: llama.cpp could not load this model ({reason})")
        return LLMError(
            f"the local model server exited while loading {self.model_path} ({_describe_exit(code)})"
            + self._tail(". Last output: ")
        )

    def _crash_error(self) -> LLMError | None:
        """The error for a server that died while it was meant to run (made once, then the same object)."""
        if self._crash is None and self._address is not None and self._process is not None:
            code = self._process.poll()
            if code is not None:
                self._join_readers()
                self._crash = LLMError(
                    f"the local model server ({self.model_name}) stopped unexpectedly "
                    f"({_describe_exit(code)})" + self._tail(". Last output: ")
                )
        return self._crash

    def _join_readers(self) -> None:
        for reader in self._readers:
            reader.join(timeout=2)

    def _tail(self, prefix: str = "", lines: int = 5) -> str:
        recent = list(self._stderr.copy())[-lines:]  # copy() is atomic; iterating a growing deque is not
        tail = " | ".join(line for line in recent if line.strip())
        return f"{prefix}{tail}" if tail else ""


def _check_model_file(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(GGUF_MAGIC))
    except FileNotFoundError:
        raise ConfigError(f"model file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the model file {path}: {exc}") from exc
    if magic != GGUF_MAGIC:
        raise ConfigError(f"{path} is not a GGUF model file")


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _child_main() -> None:
    """The server process (run with ``python -c``): load the model, print ``{"address": …}`` on stdout, then
    serve until stdin reaches end-of-file."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the agent's; it stops us in order
    config = json.loads(sys.argv[1])
    handshake = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # llama.cpp prints to stdout too: keep stdout for the handshake alone
    try:
        import xllamacpp
    except ImportError as exc:
        print(f"cannot import xllamacpp: {exc}", file=sys.stderr, flush=True)
        os._exit(_EXIT_NO_XLLAMACPP)
    params = xllamacpp.CommonParams()
    params.model.path = config["model"]
    params.model_alias = [config["alias"]]
    params.n_ctx = config["context"]
    params.n_parallel = 1
    params.cache_prompt = True
    params.cache_ram_mib = PROMPT_CACHE_MIB
    params.hostnames = [LOOPBACK]
    params.port = 0
    params.ui = False
    params.api_keys = [config["api_key"]]
    threads = config["threads"] or -1  # -1: llama.cpp picks the number of physical cores
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    try:
        server = xllamacpp.Server(params)
    except (RuntimeError, ValueError) as exc:
        print(f"xllamacpp: {exc}", file=sys.stderr, flush=True)
        os._exit(_EXIT_LOAD_FAILED)
    handshake.write(json.dumps({"address": server.listening_address}) + "\n")
    handshake.flush()
    sys.stdin.buffer.read()  # returns at end-of-file: the agent stopped us, exited or died
    os._exit(0)
