"""Choosing the search backend from the settings: every name, ``auto``, missing keys, the endpoint
override, and closing whatever was opened. Providers built here search the fake providers server,
so a test also proves the settings reached the request."""

from __future__ import annotations

import asyncio
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest

from deepresearch.config import Settings, default_data_dir
from deepresearch.errors import ConfigError
from deepresearch.search import SearchBackend, SearchHit
from deepresearch.search.backends import (
    BACKENDS,
    PREFERENCE,
    backend_name,
    configured_providers,
    open_backend,
    open_search,
)
from deepresearch.search.local import LocalIndex
from deepresearch.search.providers._http import HTTPProvider
from deepresearch.search.providers.tavily import TavilySearch
from tests.fakes.search_providers import API_KEY, PROVIDERS, FakeSearchProviders

KEYS = {
    "tavily": "tavily_api_key",
    "brave": "brave_api_key",
    "serper": "serper_api_key",
    "exa": "exa_api_key",
    "jina": "jina_api_key",
    "stepfun": "stepfun_search_api_key",
}


def make_settings(**fields: Any) -> Settings:
    """``Settings`` from plain values (keys as ``str``, as they come from the environment)."""
    return Settings.model_validate(fields)


def everything_set(**overrides: Any) -> dict[str, Any]:
    """Settings fields with every provider's key and URL set."""
    return {"searxng_url": "http://searx.invalid:8888", **dict.fromkeys(KEYS.values(), API_KEY), **overrides}


def search_through(backend: SearchBackend, query: str = "bloom filter") -> list[SearchHit]:
    async def main() -> list[SearchHit]:
        try:
            return await backend.search(query, limit=2)
        finally:
            await backend.aclose()

    return asyncio.run(main())


def test_every_name_maps_to_a_class_with_that_name_that_is_a_search_backend() -> None:
    assert list(BACKENDS) == [
        "local",
        "searxng",
        "tavily",
        "exa",
        "brave",
        "serper",
        "jina",
        "stepfun",
        "ddg",
    ]
    for name, target in BACKENDS.items():
        module, _, attribute = target.partition(":")
        cls = getattr(import_module(module), attribute)
        assert cls.name == name
        assert callable(cls.search)
    assert set(PREFERENCE) == set(BACKENDS) - {"local", "ddg"}


@pytest.mark.parametrize("name", PROVIDERS)
def test_open_backend_builds_each_provider_on_the_search_endpoint(
    name: str, search_fake: FakeSearchProviders
) -> None:
    settings = make_settings(search=name, search_endpoint=search_fake.endpoint(name), **everything_set())
    backend = open_backend(settings)
    assert isinstance(backend, HTTPProvider)
    assert isinstance(backend, SearchBackend)
    assert backend.name == name
    assert backend.endpoint == search_fake.endpoint(name)
    hits = search_through(backend)
    assert [hit.rank for hit in hits] == [1, 2]
    assert len(search_fake.sent(name)) == 1


def test_open_backend_passes_the_key_and_the_timeout(search_fake: FakeSearchProviders) -> None:
    settings = make_settings(
        search="tavily",
        tavily_api_key=API_KEY,
        search_endpoint=search_fake.endpoint("tavily"),
        search_timeout=7,
    )
    backend = open_backend(settings)
    assert backend._http.timeout == 7  # type: ignore[attr-defined]
    search_through(backend)
    assert search_fake.sent("tavily")[0].headers["authorization"] == f"Bearer {API_KEY}"


def test_without_search_endpoint_providers_use_their_real_api() -> None:
    expected = {
        "tavily": "https://api.tavily.com",
        "brave": "https://api.search.brave.com",
        "serper": "https://google.serper.dev",
        "exa": "https://api.exa.ai",
        "jina": "https://s.jina.ai",
        "stepfun": "https://api.stepfun.com",
        "ddg": "https://html.duckduckgo.com",
        "searxng": "http://searx.invalid:8888",
    }
    for name, endpoint in expected.items():
        backend = open_backend(make_settings(search=name, **everything_set()))
        assert backend.endpoint == endpoint, name  # type: ignore[attr-defined]
        asyncio.run(backend.aclose())


def test_searxng_accepts_the_search_endpoint_as_its_instance(search_fake: FakeSearchProviders) -> None:
    backend = open_backend(make_settings(search="searxng", search_endpoint=search_fake.endpoint("searxng")))
    assert len(search_through(backend)) == 2


def test_local_opens_the_index_from_settings_or_the_default_path(tmp_path: Path) -> None:
    chosen = open_backend(make_settings(search="local", index=tmp_path / "mine.sqlite"))
    assert isinstance(chosen, LocalIndex)
    assert chosen.path == tmp_path / "mine.sqlite"
    default = open_backend(make_settings())
    assert isinstance(default, LocalIndex)
    assert default.path == default_data_dir() / "index.sqlite"
    assert not default.path.exists()  # opening creates nothing


def test_names_are_case_insensitive_and_unknown_names_list_the_choices() -> None:
    assert backend_name(make_settings(search=" Tavily ", tavily_api_key=API_KEY)) == "tavily"
    with pytest.raises(ConfigError) as info:
        open_backend(make_settings().model_copy(update={"search": "google"}))
    assert str(info.value) == (
        "unknown search backend 'google'; choose one of: auto, local, searxng, tavily, exa, brave, serper, "
        "jina, stepfun, ddg"
    )


@pytest.mark.parametrize("name", list(KEYS))
def test_a_provider_without_its_key_is_a_config_error_naming_the_setting(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        open_backend(make_settings(search=name, searxng_url="http://searx.invalid"))
    message = str(info.value)
    setting = KEYS[name]
    assert message.startswith(f"search backend {name!r} needs an API key: set {setting} (environment ")
    assert f"DEEPRESEARCH_{setting.upper()}" in message
    assert f"`{setting}` in deepresearch.toml" in message


def test_searxng_without_a_url_names_its_settings() -> None:
    with pytest.raises(ConfigError) as info:
        open_backend(make_settings(search="searxng", tavily_api_key=API_KEY))
    assert str(info.value) == (
        "search backend 'searxng' needs an instance URL: set searxng_url (environment "
        "SEARXNG_URL/DEEPRESEARCH_SEARXNG_URL, or `searxng_url` in deepresearch.toml)"
    )


def test_ddg_needs_no_key_but_is_never_picked_by_auto() -> None:
    backend = open_backend(make_settings(search="ddg"))
    assert backend.name == "ddg"
    asyncio.run(backend.aclose())
    assert configured_providers(make_settings()) == []
    assert isinstance(open_backend(make_settings(search="auto")), LocalIndex)


def test_configured_providers_follow_the_preference_order() -> None:
    assert configured_providers(make_settings(**everything_set())) == list(PREFERENCE)
    assert configured_providers(make_settings(brave_api_key=API_KEY, exa_api_key=API_KEY)) == ["exa", "brave"]
    assert configured_providers(make_settings(tavily_api_key=" ")) == []  # a blank key is no key


@pytest.mark.parametrize(
    ("fields", "chosen"),
    [
        (everything_set(), "searxng"),
        (everything_set(searxng_url=None), "tavily"),
        ({"brave_api_key": API_KEY, "exa_api_key": API_KEY}, "exa"),
        ({"jina_api_key": API_KEY, "stepfun_search_api_key": API_KEY, "serper_api_key": API_KEY}, "serper"),
        ({"stepfun_search_api_key": API_KEY}, "stepfun"),
        ({}, "local"),
    ],
)
def test_auto_takes_the_first_configured_provider_else_local(fields: dict[str, Any], chosen: str) -> None:
    backend = open_backend(make_settings(search="auto", **fields))
    assert backend.name == chosen
    asyncio.run(backend.aclose())


def test_auto_uses_the_search_endpoint_for_the_provider_it_picks(search_fake: FakeSearchProviders) -> None:
    settings = make_settings(search="auto", exa_api_key=API_KEY, search_endpoint=search_fake.endpoint("exa"))
    hits = search_through(open_backend(settings))
    assert hits[0].content  # Exa's page text came through
    assert [request.provider for request in search_fake.requests] == ["exa"]


def test_every_backend_closes_through_aclose(tmp_path: Path, corpus_index: LocalIndex) -> None:
    provider = TavilySearch(API_KEY)
    asyncio.run(provider.aclose())
    assert provider._http._client.is_closed

    with LocalIndex(tmp_path / "index.sqlite") as index:
        index.add_paths([])
        asyncio.run(index.aclose())
        assert index._db is None

    wrapped = open_search(make_settings(index=corpus_index.path))
    asyncio.run(wrapped.aclose())  # the authority re-ranker closes the index it wraps
    assert wrapped.backend._db is None  # type: ignore[attr-defined]


def test_the_settings_know_every_backend_by_name() -> None:
    from deepresearch.config import SEARCH_BACKENDS

    assert tuple(BACKENDS) == SEARCH_BACKENDS  # config validates names without importing search
