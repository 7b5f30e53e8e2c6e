"""Fixtures for every test: no network beyond loopback, no real user directories or settings, and the
scripted OpenAI-compatible server.

Sub-folders add their own ``conftest.py`` for what only they need.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deepresearch.llm.client import LLMConfig
from tests.fakes.openai_server import FakeOpenAI, start_fake_openai
from tests.fakes.search_providers import FakeSearchProviders, start_fake_search_providers
from tests.fakes.web_server import FakeWebSite, start_fake_web_server


class NetworkBlocked(RuntimeError):
    """A test tried to reach a non-loopback address. Not an ``OSError``, so no code retries it."""


def _is_loopback(address: Any) -> bool:
    host = address[0] if isinstance(address, tuple) and address else address
    if not isinstance(host, str):
        return False
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False  # any other host name
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _check(family: int | None, address: Any) -> None:
    if family == getattr(socket, "AF_UNIX", None) or _is_loopback(address):
        return
    raise NetworkBlocked(f"tests may only connect to loopback addresses, not {address!r}")


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any connection to a non-loopback address fail loudly."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_create_connection = socket.create_connection

    def connect(self: socket.socket, address: Any) -> None:
        _check(self.family, address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _check(self.family, address)
        return real_connect_ex(self, address)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        _check(None, address)
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "create_connection", create_connection)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A fresh home and XDG dirs per test, and no ``DEEPRESEARCH_*``/``OPENAI_*`` settings from the shell."""
    for name in list(os.environ):
        if name.startswith(("DEEPRESEARCH_", "OPENAI_")):
            monkeypatch.delenv(name)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))


@pytest.fixture(scope="session")
def fake_openai_server() -> Iterator[FakeOpenAI]:
    """One scripted OpenAI-compatible server for the whole session; tests use ``fake_llm``."""
    server = start_fake_openai()
    yield server
    server.stop()


@pytest.fixture
def fake_llm(fake_openai_server: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The fake server with an empty queue, no script and no recorded requests."""
    fake_openai_server.reset()
    yield fake_openai_server
    fake_openai_server.reset()


@pytest.fixture
def fake_llm_config(fake_llm: FakeOpenAI) -> LLMConfig:
    """An ``LLMConfig`` for ``fake_llm`` with tiny retry delays (a failing script fails fast)."""
    return LLMConfig(
        base_url=fake_llm.base_url,
        model="fake-model",
        max_retries=2,
        retry_base_delay=0.001,
        retry_max_delay=0.01,
        timeout=30,
    )


@pytest.fixture(scope="session")
def fake_web_server() -> Iterator[FakeWebSite]:
    """One fake website on 127.0.0.1 for the whole session (fetch tests use ``site``)."""
    server = start_fake_web_server()
    yield server
    server.stop()


CORPUS = Path(__file__).parent / "data" / "corpus"


@pytest.fixture(scope="session")
def corpus_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local index of ``tests/data/corpus``, built once per session (read-only use)."""
    from deepresearch.search.local import LocalIndex

    path = tmp_path_factory.mktemp("corpus-index") / "index.sqlite"
    with LocalIndex(path) as index:
        assert index.add_paths([CORPUS]).errors == []
    return path


@pytest.fixture(scope="session")
def search_providers_server() -> Iterator[FakeSearchProviders]:
    """One fake of every web search provider for the whole session; tests use ``search_fake``."""
    server = start_fake_search_providers()
    yield server
    server.stop()


@pytest.fixture
def search_fake(search_providers_server: FakeSearchProviders) -> Iterator[FakeSearchProviders]:
    """The fake search providers with no failure switched on and no recorded request."""
    search_providers_server.reset()
    yield search_providers_server
    search_providers_server.reset()


@pytest.fixture(scope="session")
def real_model() -> Path:
    """The bundled model's GGUF file. Session scope: set up before the per-test environment isolation, so
    it sees the real ``DEEPRESEARCH_TEST_MODEL`` and home directory."""
    from deepresearch.config import default_data_dir
    from deepresearch.llm.local.models import CATALOGUE, DEFAULT_MODEL, installed_path, verify

    candidates = [installed_path(DEFAULT_MODEL, default_data_dir())]
    candidates.append(Path.home() / ".cache" / "deepresearch-test-models" / f"{DEFAULT_MODEL}.gguf")
    if os.environ.get("DEEPRESEARCH_TEST_MODEL"):
        chosen = Path(os.environ["DEEPRESEARCH_TEST_MODEL"])
        if not chosen.is_file():
            pytest.fail(f"DEEPRESEARCH_TEST_MODEL={chosen} does not exist")
        return chosen
    for path in candidates:
        if path.is_file():
            verify(path, CATALOGUE[DEFAULT_MODEL])
            return path
    pytest.fail(
        "the slow local-model tests need the bundled model; run `deepresearch models pull` (or set "
        "DEEPRESEARCH_TEST_MODEL=/path/to/SmolLM2-135M-Instruct.Q4_1.gguf). Looked in: "
        + ", ".join(str(path) for path in candidates)
    )
