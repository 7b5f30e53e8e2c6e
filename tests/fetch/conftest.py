"""Fixtures for the fetch tests: the fake website, and a fetcher configuration that may reach it."""

from __future__ import annotations

import pytest

from deepresearch.fetch.http import FetchConfig
from tests.fakes.web_server import FakeWebSite


@pytest.fixture
def site(fake_web_server: FakeWebSite) -> FakeWebSite:
    """The fake website with its request records cleared."""
    fake_web_server.reset()
    return fake_web_server


@pytest.fixture
def config() -> FetchConfig:
    """Private addresses allowed (the site is on 127.0.0.1), small limits, a near-instant retry, no
    politeness delay and no cache (the tests of those turn them on)."""
    return FetchConfig(
        allow_private=True,
        timeout_s=2.0,
        total_timeout_s=10.0,
        max_bytes=1_000_000,
        retry_backoff_s=0.01,
        host_delay_s=0,
    )
