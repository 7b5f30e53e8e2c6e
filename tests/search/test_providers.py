"""Every web search provider against the fake providers server (real sockets on 127.0.0.1).

For each provider: a normal search (fields mapped, ranks, dates, page text), the request it sent
(auth header, body or parameters), the limit, a genuine empty answer, and every failure mode of the
fake turned into a ``SearchError`` that names the provider and the cause and never shows the key.
Last, ``batch_web_surfer`` with a provider that fails for one query: the error is in that query's
block of the tool text, and the other queries still have their hits.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deepresearch.errors import SearchError
from deepresearch.search import SearchBackend, SearchHit
from deepresearch.search.providers import _http
from deepresearch.search.providers._http import HTTPProvider
from deepresearch.search.providers.brave import BraveSearch
from deepresearch.search.providers.duckduckgo import DuckDuckGoSearch, parse_results, unwrap
from deepresearch.search.providers.exa import ExaSearch
from deepresearch.search.providers.jina import JinaSearch
from deepresearch.search.providers.searxng import SearxngSearch
from deepresearch.search.providers.serper import SerperSearch
from deepresearch.search.providers.stepfun import StepFunSearch
from deepresearch.search.providers.tavily import TavilySearch
from deepresearch.sources import SourceRegistry
from deepresearch.tools.base import ToolContext
from deepresearch.tools.web import WebArgs, batch_search
from tests.fakes.search_providers import (
    API_KEY,
    CANNED,
    PROVIDERS,
    FakeSearchProviders,
    ddg_link,
    ddg_results_page,
    matching,
)

KEYED = ("tavily", "brave", "serper", "exa", "jina", "stepfun")
JSON_APIS = ("searxng", *KEYED)
CLASSES: dict[str, Callable[..., HTTPProvider]] = {
    "tavily": TavilySearch,
    "brave": BraveSearch,
    "serper": SerperSearch,
    "exa": ExaSearch,
    "jina": JinaSearch,
    "stepfun": StepFunSearch,
}
BLOOM = matching("bloom filter")
"""What the fake holds for "bloom filter": five hits, the first dated 2024-03-05."""
RESULTS_FIELD = {
    "searxng": "results",
    "tavily": "results",
    "brave": "web.results",
    "serper": "organic",
    "exa": "results",
    "jina": "data",
    "stepfun": "results",
}


@pytest.fixture(autouse=True)
def _quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one retry waits 10 ms instead of half a second."""
    monkeypatch.setattr(_http, "RETRY_DELAY", 0.01)


def make(name: str, fake: FakeSearchProviders, *, key: str = API_KEY, **options: Any) -> HTTPProvider:
    """``name``'s provider pointed at the fake."""
    options.setdefault("timeout", 10.0)
    if name == "searxng":
        return SearxngSearch(fake.endpoint(name), **options)
    if name == "ddg":
        return DuckDuckGoSearch(endpoint=fake.endpoint(name), **options)
    return CLASSES[name](key, endpoint=fake.endpoint(name), **options)


def search(provider: SearchBackend, query: str = "bloom filter", limit: int = 3) -> list[SearchHit]:
    """One search on a fresh event loop, closing the provider afterwards."""

    async def main() -> list[SearchHit]:
        try:
            return await provider.search(query, limit=limit)
        finally:
            await provider.aclose()  # type: ignore[attr-defined]

    return asyncio.run(main())


def failure(provider: SearchBackend, query: str = "bloom filter", limit: int = 3) -> str:
    """The message of the ``SearchError`` the search raises."""
    with pytest.raises(SearchError) as info:
        search(provider, query, limit)
    message = str(info.value)
    assert API_KEY not in message
    return message


# --- normal searches


@pytest.mark.parametrize("name", PROVIDERS)
def test_hits_are_ranked_in_provider_order_with_titles_urls_and_snippets(
    name: str, search_fake: FakeSearchProviders
) -> None:
    hits = search(make(name, search_fake), "bloom filter", limit=3)
    assert [hit.rank for hit in hits] == [1, 2, 3]
    assert [hit.url for hit in hits] == [canned.url for canned in BLOOM[:3]]
    assert [hit.title for hit in hits] == [canned.title for canned in BLOOM[:3]]
    if name != "exa":  # Exa returns page text only
        assert [hit.snippet for hit in hits] == [canned.snippet for canned in BLOOM[:3]]
    assert len(search_fake.sent(name)) == 1


# published date of the first two hits, page text of the first hit, score of the first hit
MAPPED = {
    "searxng": (("2024-03-05T00:00:00", ""), "", 3.88),
    "tavily": (("", ""), "", 0.97),
    "brave": (("2024-03-05T08:00:00", "2023-11-20T08:00:00"), BLOOM[0].content, None),
    "serper": (("Mar 5, 2024", ""), "", None),
    "exa": (("2024-03-05T00:00:00.000Z", "2023-11-20T00:00:00.000Z"), BLOOM[0].content, 0.97),
    "jina": (("Mar 5, 2024", "Nov 20, 2023"), BLOOM[0].content, None),
    "stepfun": (("2024-03-05T20:34:32", "2023-11-20T20:34:32"), BLOOM[0].content, None),
    "ddg": (("2024-03-05", ""), "", None),
}


@pytest.mark.parametrize("name", PROVIDERS)
def test_dates_page_text_and_scores_are_mapped_when_the_provider_gives_them(
    name: str, search_fake: FakeSearchProviders
) -> None:
    published, content, score = MAPPED[name]
    hits = search(make(name, search_fake), "bloom filter", limit=2)
    assert (hits[0].published, hits[1].published) == published
    assert hits[0].content == content
    assert hits[0].score == score
    assert all("<" not in hit.snippet and "&" not in hit.snippet for hit in hits)  # highlights removed


def test_tavily_news_topic_and_raw_content_give_dates_and_page_text(search_fake: FakeSearchProviders) -> None:
    provider = make("tavily", search_fake, topic="news", include_raw_content=True, search_depth="advanced")
    hits = search(provider, "bloom filter", limit=2)
    assert hits[0].published == "Tue, 05 Mar 2024 09:30:00 GMT"
    assert hits[0].content == BLOOM[0].content
    assert hits[0].snippet == BLOOM[0].snippet
    assert search_fake.sent("tavily")[0].json == {
        "query": "bloom filter",
        "max_results": 2,
        "search_depth": "advanced",
        "topic": "news",
        "include_raw_content": True,
    }


# --- what each provider sends


@pytest.mark.parametrize(
    ("name", "header", "value"),
    [
        ("tavily", "authorization", f"Bearer {API_KEY}"),
        ("brave", "x-subscription-token", API_KEY),
        ("serper", "x-api-key", API_KEY),
        ("exa", "x-api-key", API_KEY),
        ("jina", "authorization", f"Bearer {API_KEY}"),
        ("stepfun", "authorization", f"Bearer {API_KEY}"),
    ],
)
def test_the_key_travels_in_the_providers_own_header_and_never_in_the_url(
    name: str, header: str, value: str, search_fake: FakeSearchProviders
) -> None:
    search(make(name, search_fake))
    request = search_fake.sent(name)[0]
    assert request.headers[header] == value
    assert API_KEY not in request.path and API_KEY not in str(request.params)


@pytest.mark.parametrize(
    ("name", "method", "path", "sent"),
    [
        ("searxng", "GET", "/search", {"q": "bloom filter", "format": "json"}),
        ("tavily", "POST", "/search", {"query": "bloom filter", "max_results": 20}),
        ("brave", "GET", "/res/v1/web/search", {"q": "bloom filter", "count": "20"}),
        ("serper", "POST", "/search", {"q": "bloom filter", "num": 50}),
        (
            "exa",
            "POST",
            "/search",
            {"query": "bloom filter", "numResults": 50, "contents": {"text": {"maxCharacters": 4000}}},
        ),
        ("jina", "GET", "/", {"q": "bloom filter", "num": "20"}),
        ("stepfun", "POST", "/v1/search", {"query": "bloom filter", "n": 20}),
        ("ddg", "POST", "/html/", {"q": "bloom filter"}),
    ],
)
def test_each_provider_sends_its_documented_request_with_the_count_clamped(
    name: str, method: str, path: str, sent: dict[str, Any], search_fake: FakeSearchProviders
) -> None:
    search(make(name, search_fake), "bloom filter", limit=50)
    request = search_fake.sent(name)[0]
    assert (request.method, request.path) == (method, path)
    if name == "ddg":
        assert request.form == sent
        assert request.headers["user-agent"].startswith("Mozilla/5.0")
    elif method == "GET":
        assert request.params == sent
    else:
        assert request.json == sent
        assert request.headers["content-type"] == "application/json"


def test_searxng_language_and_ddg_region_are_sent_when_set(search_fake: FakeSearchProviders) -> None:
    search(make("searxng", search_fake, language="zh"))
    search(make("ddg", search_fake, region="cn-zh"))
    assert search_fake.sent("searxng")[0].params["language"] == "zh"
    assert search_fake.sent("ddg")[0].form == {"q": "bloom filter", "kl": "cn-zh"}


# --- limits and empty answers


@pytest.mark.parametrize("name", PROVIDERS)
def test_the_limit_holds_even_when_the_provider_returns_more(
    name: str, search_fake: FakeSearchProviders
) -> None:
    assert len(search(make(name, search_fake), "bloom filter", limit=2)) == 2
    assert len(search(make(name, search_fake), "bloom filter", limit=10)) == len(BLOOM)
    assert search(make(name, search_fake), "bloom filter", limit=0) == []
    assert search(make(name, search_fake), "   ", limit=5) == []
    assert len(search_fake.sent(name)) == 2  # no request for a zero limit or a blank query


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_genuine_empty_answer_is_an_empty_list(name: str, search_fake: FakeSearchProviders) -> None:
    assert search(make(name, search_fake), "zzyzx quux", limit=5) == []


# --- failures


@pytest.mark.parametrize("name", KEYED)
def test_a_refused_key_says_which_settings_to_check(name: str, search_fake: FakeSearchProviders) -> None:
    message = failure(make(name, search_fake, key="wrong-key-000"))
    assert message.startswith(f"{name}: the API key was refused (HTTP 4")
    setting = "stepfun_search_api_key" if name == "stepfun" else f"{name}_api_key"
    assert f"DEEPRESEARCH_{setting.upper()}" in message
    assert "wrong-key-000" not in message
    assert len(search_fake.sent(name)) == 1  # a refused key is not retried


def test_refusal_messages_quote_the_providers_own_words(search_fake: FakeSearchProviders) -> None:
    assert failure(make("tavily", search_fake, key="x")) == (
        "tavily: the API key was refused (HTTP 401: Unauthorized: missing or invalid API key.) — check "
        "TAVILY_API_KEY/DEEPRESEARCH_TAVILY_API_KEY"
    )
    brave = failure(make("brave", search_fake, key="x"))
    assert "HTTP 422: The provided subscription token is invalid." in brave
    assert "BRAVE_API_KEY/BRAVE_SEARCH_API_KEY/DEEPRESEARCH_BRAVE_API_KEY" in brave
    assert "HTTP 403: Unauthorized." in failure(make("serper", search_fake, key="x"))


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_429_that_clears_is_retried_once(name: str, search_fake: FakeSearchProviders) -> None:
    search_fake.fail(name, "429", times=1, retry_after="0")
    assert len(search(make(name, search_fake))) == 3
    assert len(search_fake.sent(name)) == 2


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_429_that_persists_fails_with_the_retry_after_value(
    name: str, search_fake: FakeSearchProviders
) -> None:
    search_fake.fail(name, "429", retry_after="0")
    message = failure(make(name, search_fake))
    assert message.startswith(f"{name}: rate limited (HTTP 429) after 2 attempts")
    assert "wait 0s (Retry-After)" in message
    assert len(search_fake.sent(name)) == 2


def test_a_429_asking_for_a_long_wait_fails_at_once_with_the_value(search_fake: FakeSearchProviders) -> None:
    search_fake.fail("tavily", "429", retry_after="120")
    message = failure(make("tavily", search_fake))
    assert message == (
        "tavily: rate limited (HTTP 429); the provider asks to wait 120s (Retry-After): "
        "Rate limit exceeded, slow down."
    )
    assert len(search_fake.sent("tavily")) == 1


def test_a_429_without_retry_after_is_retried_after_a_short_pause(search_fake: FakeSearchProviders) -> None:
    search_fake.fail("brave", "429", retry_after=None)
    message = failure(make("brave", search_fake))
    assert "rate limited (HTTP 429) after 2 attempts; the provider gave no Retry-After" in message
    assert len(search_fake.sent("brave")) == 2


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.parametrize("status", ["500", "502", "503"])
def test_server_errors_are_retried_once_then_reported_with_status_and_body(
    name: str, status: str, search_fake: FakeSearchProviders
) -> None:
    search_fake.fail(name, status)
    message = failure(make(name, search_fake))
    assert message.startswith(f"{name}: server error HTTP {status} after 2 attempts: ")
    excerpt = {"500": "Internal server error while searching.", "502": "502 Bad Gateway"}
    assert excerpt.get(status, "503 Service Temporarily Unavailable") in message
    assert "<" not in message  # the HTML page is reduced to its text
    assert len(search_fake.sent(name)) == 2


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_server_error_that_clears_is_retried_once(name: str, search_fake: FakeSearchProviders) -> None:
    search_fake.fail(name, "503", times=1)
    assert len(search(make(name, search_fake))) == 3
    assert len(search_fake.sent(name)) == 2


@pytest.mark.parametrize("name", JSON_APIS)
def test_a_body_that_is_not_json_is_an_error(name: str, search_fake: FakeSearchProviders) -> None:
    search_fake.fail(name, "malformed")
    message = failure(make(name, search_fake))
    assert message.startswith(
        f"{name}: returned something that is not JSON (HTTP 200, application/json): " + '{"results"'
    )
    assert len(search_fake.sent(name)) == 1


@pytest.mark.parametrize("name", JSON_APIS)
def test_an_answer_without_its_results_field_is_an_error(name: str, search_fake: FakeSearchProviders) -> None:
    search_fake.fail(name, "no_results_field")
    message = failure(make(name, search_fake))
    assert message.startswith(f"{name}: the answer has no `{RESULTS_FIELD[name]}` list (")


@pytest.mark.parametrize("name", PROVIDERS)
def test_a_slow_provider_times_out_without_a_retry(name: str, search_fake: FakeSearchProviders) -> None:
    search_fake.fail(name, "slow", delay=5.0)
    assert failure(make(name, search_fake, timeout=0.3)) == f"{name}: no answer within 0.3s"
    assert len(search_fake.sent(name)) == 1


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("name", ["tavily", "searxng"])
def test_a_refused_connection_is_retried_then_reported(name: str) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    provider: HTTPProvider = (
        SearxngSearch(endpoint) if name == "searxng" else TavilySearch(API_KEY, endpoint=endpoint)
    )
    message = failure(provider)
    assert message.startswith(f"{name}: connection to {endpoint}/")
    assert "failed (ConnectError" in message


def test_searxng_without_the_json_format_says_so(search_fake: FakeSearchProviders) -> None:
    search_fake.fail("searxng", "json_disabled")
    message = failure(make("searxng", search_fake))
    assert message.startswith(
        "searxng: the instance refused format=json: enable `json` under `search.formats` in its "
        "settings.yml (HTTP 403: Forbidden You don't have the permission"
    )
    assert len(search_fake.sent("searxng")) == 1


def test_searxng_with_every_engine_failing_names_them(search_fake: FakeSearchProviders) -> None:
    search_fake.fail("searxng", "unresponsive")
    assert failure(make("searxng", search_fake)) == (
        "searxng: no results, and these engines failed: google (CAPTCHA), duckduckgo (timeout)"
    )


def test_stepfun_error_in_a_200_answer_is_an_error(search_fake: FakeSearchProviders) -> None:
    search_fake.fail("stepfun", "error_body")
    assert failure(make("stepfun", search_fake)) == (
        "stepfun: the search API answered with an error: search backend timeout"
    )


@pytest.mark.parametrize(("mode", "status"), [("rate_limited", 202), ("challenge", 200)])
def test_ddg_bot_challenge_is_reported_as_rate_limiting(
    mode: str, status: int, search_fake: FakeSearchProviders
) -> None:
    search_fake.fail("ddg", mode)
    assert failure(make("ddg", search_fake)) == (
        f"ddg: DuckDuckGo is rate limiting this client (HTTP {status}, bot-challenge page); wait a few "
        "minutes or configure another search provider"
    )
    assert len(search_fake.sent("ddg")) == 1


def test_ddg_page_without_results_or_notice_is_an_error(search_fake: FakeSearchProviders) -> None:
    search_fake.fail("ddg", "malformed")
    assert "neither results nor a 'No results' notice" in failure(make("ddg", search_fake))


def test_ddg_redirect_links_are_unwrapped_and_ads_skipped() -> None:
    url = "https://example.org/a path?x=1&y=ü"
    assert unwrap(ddg_link(url).replace("&amp;", "&")) == url
    assert unwrap("https://duckduckgo.com/l/?uddg=https%3A%2F%2Fa.org%2F&rut=1") == "https://a.org/"
    assert unwrap("//example.org/page") == "https://example.org/page"
    assert unwrap("https://example.org/") == "https://example.org/"
    assert unwrap("javascript:void(0)") == ""
    import lxml.html

    hits = parse_results(lxml.html.document_fromstring(ddg_results_page("bloom", list(CANNED[:2]))))
    assert [hit.url for hit in hits] == [CANNED[0].url, CANNED[1].url]  # the ad block is not a hit


# --- keys stay secret


@pytest.mark.parametrize("name", KEYED)
def test_the_key_is_in_no_message_log_or_repr(
    name: str, search_fake: FakeSearchProviders, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = make(name, search_fake)
    assert API_KEY not in repr(provider)
    search_fake.fail(name, "echo_key")
    message = failure(provider)
    assert "upstream refused credentials ***" in message
    for mode in ("429", "500", "malformed"):
        search_fake.fail(name, mode)
        failure(make(name, search_fake))
    failure(make(name, search_fake, key=API_KEY + "-revoked"))
    assert caplog.records
    assert API_KEY not in caplog.text


# --- batch_web_surfer shows a provider's error for its query


def _context(tmp_path: Path, backend: SearchBackend) -> ToolContext:
    return ToolContext(workspace=tmp_path, sources=SourceRegistry(), state={}, search=backend)


def test_batch_search_shows_a_provider_error_for_that_query_and_hits_for_the_others(
    search_fake: FakeSearchProviders, tmp_path: Path
) -> None:
    search_fake.fail("tavily", "500", query="raft")
    provider = make("tavily", search_fake)
    args = WebArgs(action="batch_search", queries=["bloom filter", "raft consensus", "consistent hashing"])

    async def main() -> Any:
        async with provider:
            return await batch_search(args, _context(tmp_path, provider))

    result = asyncio.run(main())
    blocks = result.text.split("<query_result ")[1:]
    assert len(blocks) == 3
    assert "<error>" not in blocks[0] and BLOOM[0].url in blocks[0]
    assert "<result_count>0</result_count><error>tavily: server error HTTP 500 after 2 attempts" in blocks[1]
    assert "<no_results_found/>" in blocks[1]
    assert "<error>" not in blocks[2] and "https://en.wikipedia.org/wiki/Consistent_hashing" in blocks[2]
    assert [q["error"] is not None for q in result.data["queries"]] == [False, True, False]
    assert result.data["queries"][1]["error"].startswith("tavily: server error HTTP 500")
    assert not result.is_error


def test_batch_search_with_ddg_rate_limited_reports_every_query_as_failed(
    search_fake: FakeSearchProviders, tmp_path: Path
) -> None:
    search_fake.fail("ddg", "rate_limited")
    provider = make("ddg", search_fake)
    args = WebArgs(action="batch_search", queries=["bloom filter", "raft consensus"])

    async def main() -> Any:
        async with provider:
            return await batch_search(args, _context(tmp_path, provider))

    result = asyncio.run(main())
    assert result.text.count("<error>ddg: DuckDuckGo is rate limiting this client") == 2
    assert "<hint>No results" not in result.text  # not dressed up as an empty search
    assert result.is_error
