"""What every web search provider shares: one HTTP client, one retry, one way to fail.

Each provider module only knows its request and its response shape; everything else lives here so
the providers fail alike. This is the search package's boundary for httpx: statuses, timeouts,
connection errors and bodies that are not the documented JSON all become ``SearchError`` with a
message that starts with the provider's name and says what to do, because ``batch_web_surfer``
shows that message to the model for the query that failed (a bad answer is never an empty list).

Retry policy, kept short because a search is one of many in a step: one retry after a connection
error or a 5xx (after ``RETRY_DELAY``), and after a 429 when ``Retry-After`` asks for at most
``MAX_RETRY_AFTER`` seconds; a provider asking for longer fails at once with the value in the
message. Timeouts are not retried: a provider that did not answer within ``timeout`` seconds is
unlikely to answer the same query faster a second later.

Keys travel in headers only, never in URLs; every message is scrubbed of the key (a careless proxy
may echo it back), and nothing here logs headers or bodies.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import httpx

from deepresearch.errors import SearchError
from deepresearch.retry import parse_retry_after
from deepresearch.search import SearchHit
from deepresearch.tls import shared_ssl_context

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 15.0
"""Seconds one provider request may take (``search_timeout`` in the settings)."""
ATTEMPTS = 2
"""One try and one retry."""
RETRY_DELAY = 0.5
"""Seconds before retrying a 5xx, a 429 without ``Retry-After``, or a connection error."""
MAX_RETRY_AFTER = 5.0
"""Longest ``Retry-After`` we wait for; a provider asking for more fails at once."""
EXCERPT_CHARS = 200
"""Characters of an error body quoted in a message."""

_TAG_RE = re.compile(r"<[^>]*>")
_HIDDEN_RE = re.compile(r"<(head|title|script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_HIGHLIGHT_RE = re.compile(r"</?(?:strong|b|em|i|mark)>", re.IGNORECASE)
_SPACE_RE = re.compile(r"\s+")
_MESSAGE_KEYS = ("error", "detail", "message", "readableMessage", "msg")


def key_variables(setting: str) -> str:
    """``TAVILY_API_KEY/DEEPRESEARCH_TAVILY_API_KEY``: the variables that set ``setting``."""
    from deepresearch.config import env_names

    first, *others = env_names(setting)
    return "/".join([*others, first])


def text(value: Any) -> str:
    """A string field as given (stripped), or ``""`` for null and anything that is not a string."""
    return value.strip() if isinstance(value, str) else ""


def plain(value: Any) -> str:
    """A title or snippet on one line: highlight tags (``<strong>``…) removed, entities decoded."""
    return _SPACE_RE.sub(" ", html.unescape(_HIGHLIGHT_RE.sub("", text(value)))).strip()


def number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _seconds(value: float) -> str:
    return f"{value:.0f}s" if value >= 10 else f"{value:g}s"


def _json_message(data: Any) -> str | None:
    """The server's own words in the usual places: ``error``, ``detail``, ``message`` (nested too)."""
    if not isinstance(data, dict):
        return None
    for key in _MESSAGE_KEYS:
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return value
        nested = _json_message(value)
        if nested:
            return nested
    return None


class ProviderHTTP:
    """One provider's ``httpx.AsyncClient``, with the shared retry policy and error mapping.

    ``secret`` is masked in every message; ``key_setting`` (e.g. ``tavily_api_key``) names the
    setting a 401/403 tells the user to check; ``refused_markers`` are error codes that mean a
    refused key whatever the status (Brave answers a bad token with 422).
    """

    def __init__(
        self,
        provider: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        headers: Mapping[str, str] | None = None,
        secret: str | None = None,
        key_setting: str | None = None,
        refused_markers: tuple[str, ...] = (),
        follow_redirects: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.provider = provider
        self.timeout = timeout
        self._secret = secret or None
        self._key_setting = key_setting
        self._refused_markers = refused_markers
        self._client = httpx.AsyncClient(
            headers=dict(headers or {}),
            timeout=httpx.Timeout(timeout),
            follow_redirects=follow_redirects,
            transport=transport,
            verify=shared_ssl_context(),
        )

    def __repr__(self) -> str:
        return f"ProviderHTTP({self.provider!r})"

    async def aclose(self) -> None:
        await self._client.aclose()

    def error(self, message: str) -> SearchError:
        """``SearchError("{provider}: {message}")`` with the key masked."""
        text = f"{self.provider}: {message}"
        if self._secret:
            text = text.replace(self._secret, "***")
        return SearchError(text)

    async def send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        statuses: Mapping[int, str] | None = None,
    ) -> httpx.Response:
        """A 2xx response, after at most one retry; anything else raises ``SearchError``.

        ``statuses`` gives provider-specific messages for statuses that mean something particular
        there (SearXNG's 403: the JSON format is disabled).
        """
        for attempt in range(1, ATTEMPTS + 1):
            started = time.monotonic()
            try:
                response = await self._client.request(method, url, params=params, json=json, data=data)
            except (httpx.ConnectTimeout, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                failure = self.error(f"connection to {_host(url)} failed ({type(exc).__name__}: {exc})")
                if attempt == ATTEMPTS:
                    raise failure from exc
                delay = RETRY_DELAY
            except httpx.TimeoutException as exc:
                raise self.error(f"no answer within {_seconds(self.timeout)}") from exc
            except httpx.HTTPError as exc:
                raise self.error(f"request failed ({type(exc).__name__}: {exc})") from exc
            else:
                logger.debug(
                    "%s: %s %s -> HTTP %d in %.2fs",
                    self.provider,
                    method,
                    _host(url),
                    response.status_code,
                    time.monotonic() - started,
                )
                if response.is_success:
                    return response
                failure, wait = self._status_error(response, attempt, statuses or {})
                if wait is None or attempt == ATTEMPTS:
                    raise failure
                delay = wait
            logger.warning("%s; retrying in %.1fs", failure, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _status_error(
        self, response: httpx.Response, attempt: int, statuses: Mapping[int, str]
    ) -> tuple[SearchError, float | None]:
        """The error for a non-2xx response, and the delay before a retry (``None``: do not retry)."""
        status = response.status_code
        detail = self._detail(response)
        if status in statuses:
            return self.error(f"{statuses[status]} (HTTP {status}: {detail})"), None
        if self._key_setting and (
            status in (401, 403) or any(marker in response.text for marker in self._refused_markers)
        ):
            return self.error(
                f"the API key was refused (HTTP {status}: {detail}) — check "
                f"{key_variables(self._key_setting)}"
            ), None
        after = f" after {attempt} attempts" if attempt > 1 else ""
        retry_after = parse_retry_after(response.headers)
        if status == 429:
            if retry_after is None:
                hint = "the provider gave no Retry-After"
                wait: float | None = RETRY_DELAY
            else:
                hint = f"the provider asks to wait {_seconds(retry_after)} (Retry-After)"
                wait = retry_after if retry_after <= MAX_RETRY_AFTER else None
            return self.error(f"rate limited (HTTP 429){after}; {hint}: {detail}"), wait
        if status >= 500:
            wait = RETRY_DELAY if retry_after is None else max(RETRY_DELAY, min(retry_after, MAX_RETRY_AFTER))
            return self.error(f"server error HTTP {status}{after}: {detail}"), wait
        return self.error(f"HTTP {status}: {detail}"), None

    def _detail(self, response: httpx.Response) -> str:
        """A short excerpt of an error body: the server's message when it is JSON, else its text."""
        try:
            message = _json_message(response.json())
        except ValueError:
            message = None
        raw = message if message is not None else _TAG_RE.sub(" ", _HIDDEN_RE.sub(" ", response.text))
        flat = _SPACE_RE.sub(" ", html.unescape(raw)).strip()
        if len(flat) > EXCERPT_CHARS:
            flat = flat[: EXCERPT_CHARS - 1].rstrip() + "…"
        return flat or "(empty body)"

    def json(self, response: httpx.Response) -> Any:
        """The body as JSON, or ``SearchError`` saying it is not."""
        try:
            return response.json()
        except ValueError as exc:
            kind = response.headers.get("content-type", "no content type").split(";")[0]
            raise self.error(
                f"returned something that is not JSON (HTTP {response.status_code}, {kind}): "
                f"{self._detail(response)}"
            ) from exc

    def items(self, data: Any, *path: str) -> list[dict[str, Any]]:
        """The list of result objects at ``path`` (``"web", "results"``), or ``SearchError`` naming the
        missing field. Entries that are not objects are dropped."""
        node = data
        for key in path:
            if not isinstance(node, dict) or key not in node:
                break
            node = node[key]
        else:
            if isinstance(node, list):
                return [item for item in node if isinstance(item, dict)]
        got = f"keys: {', '.join(sorted(map(str, data)))}" if isinstance(data, dict) else type(data).__name__
        raise self.error(f"the answer has no `{'.'.join(path)}` list ({got or 'an empty object'})")


class HTTPProvider:
    """The part of ``SearchBackend`` every web provider shares: the limit, 1-based ranks in the
    provider's order, one INFO line per search, and closing the client.

    Subclasses set ``name`` and implement ``_search`` (one request, parsed into hits).
    """

    name = "web"

    def __init__(self, http: ProviderHTTP, endpoint: str) -> None:
        self._http = http
        self.endpoint = endpoint.rstrip("/")
        """Where requests go: the API root, without the provider's path."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(endpoint={self.endpoint!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def search(self, query: str, *, limit: int = 10) -> list[SearchHit]:
        """At most ``limit`` hits for ``query``, ranked 1… in the provider's order."""
        if limit <= 0 or not query.strip():
            return []
        started = time.monotonic()
        hits = [hit for hit in await self._search(query.strip(), limit) if hit.url][:limit]
        for rank, hit in enumerate(hits, start=1):
            hit.rank = rank
        logger.info("%s: %d hits for %r in %.2fs", self.name, len(hits), query, time.monotonic() - started)
        return hits

    async def _search(self, query: str, limit: int) -> list[SearchHit]:
        raise NotImplementedError


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


class KeyedProvider(HTTPProvider):
    """A provider that authenticates with an API key in one header; subclasses declare which.

    ``key_header`` is the header's name; ``"Authorization"`` means ``Bearer <key>``.
    """

    default_endpoint = ""
    key_header = "Authorization"
    key_setting = ""
    """The ``Settings`` field holding the key (named in "key refused" errors)."""
    refused_markers: tuple[str, ...] = ()
    """Body markers that mean "bad key" even when the status does not say so."""

    def __init__(
        self,
        api_key: str,
        *,
        endpoint: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        value = f"Bearer {api_key}" if self.key_header == "Authorization" else api_key
        http = ProviderHTTP(
            self.name,
            timeout=timeout,
            headers={self.key_header: value, "Accept": "application/json"},
            secret=api_key,
            key_setting=self.key_setting,
            refused_markers=self.refused_markers,
            transport=transport,
        )
        super().__init__(http, endpoint or self.default_endpoint)
