"""A real ``deepresearch serve`` app on 127.0.0.1 (uvicorn in a thread, lifespan on) for the server tests,
with the agent talking to the scripted OpenAI server and searching the test corpus."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from deepresearch.config import Settings, load_settings
from deepresearch.server.app import ServerConfig, create_app

API_KEY = "sk-test-never-shown-0123456789"


@dataclass
class RunningServer:
    url: str
    config: ServerConfig
    app: Any
    server: uvicorn.Server
    thread: threading.Thread

    def client(self, **kwargs: Any) -> httpx.Client:
        headers = {}
        if self.config.token is not None:
            headers["Authorization"] = f"Bearer {self.config.token.get_secret_value()}"
        return httpx.Client(base_url=self.url, timeout=30, headers=headers, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the server did not shut down"


def start_server(settings: Settings, config: ServerConfig) -> RunningServer:
    app = create_app(settings, config)
    server = uvicorn.Server(
        uvicorn.Config(app, host=config.host, port=0, log_config=None, access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="deepresearch-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    return RunningServer(f"http://127.0.0.1:{port}", config, app, server, thread)


def agent_settings(fake: Any, index: Path, **extra: Any) -> Settings:
    return load_settings(
        {
            "base_url": fake.base_url,
            "model": "fake-model",
            "api_key": API_KEY,
            "index": index,
            "max_retries": 1,
            "retry_base_delay": 0.001,
            "retry_max_delay": 0.01,
            **extra,
        },
        env={},
    )


@pytest.fixture
def make_server(fake_llm, corpus_index, tmp_path) -> Iterator[Callable[..., RunningServer]]:
    """Start servers (stopped after the test) over one data dir unless told otherwise."""
    started: list[RunningServer] = []

    def make(settings: Settings | None = None, **config: Any) -> RunningServer:
        config.setdefault("data_dir", tmp_path / "server-data")
        config.setdefault("grace_s", 5.0)
        running = start_server(settings or agent_settings(fake_llm, corpus_index), ServerConfig(**config))
        started.append(running)
        return running

    yield make
    for running in started:
        if running.thread.is_alive():
            running.stop()
