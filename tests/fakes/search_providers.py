"""One fake for every web search provider, on 127.0.0.1: the test double of ``search/providers``.

Each provider lives under its own path prefix, so one server stands in for all of them through
``search_endpoint`` (the provider appends its own path to the endpoint, as it does to the real API
root): ``/searxng/search``, ``/tavily/search``, ``/brave/res/v1/web/search``, ``/serper/search``,
``/exa/search``, ``/jina/``, ``/stepfun/v1/search`` and ``/ddg/html/``. Answers follow each
provider's documented shape (see the provider modules' docstrings), built from a small set of
canned hits on three topics; a hit is returned when a query word appears in it, so two queries on
different topics get different URLs, and a query on none of them gets a genuine empty answer.

Keyed providers check their auth header against ``API_KEY`` and answer a wrong or missing key with
that provider's own refusal (Tavily 401 ``detail``, Brave 422 ``SUBSCRIPTION_TOKEN_INVALID``, Serper
403…). ``fail()`` switches a provider into a failure mode, optionally for the first ``times``
requests or for queries containing some text only; ``MODES`` lists them. Every request is recorded
(method, path, params, headers, body) for tests to check what the provider sent.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from html import escape
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from tests.fakes.serve import ThreadedServer

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

API_KEY = "fake-search-key-7Qx9Lm2Zp4"
"""The only key the fake accepts; tests check that it never appears in an error message."""
PROVIDERS = ("searxng", "tavily", "brave", "serper", "exa", "jina", "stepfun", "ddg")
MODES = frozenset(
    {
        "429",  # rate limited, with ``Retry-After: retry_after`` (left out when retry_after is None)
        "500",  # JSON error body
        "502",  # nginx HTML page
        "503",  # nginx HTML page
        "malformed",  # 200 whose body is cut-off JSON (for ddg: a page with no result blocks)
        "no_results_field",  # 200 JSON without the list of results
        "slow",  # answers after ``delay`` seconds (gives up if the client hangs up)
        "echo_key",  # 500 whose body quotes the credentials it received (a careless proxy)
        "error_body",  # 200 JSON carrying ``"error"`` (StepFun's silent failure)
        "json_disabled",  # SearXNG without the JSON format: 403 HTML
        "unresponsive",  # SearXNG: no results because every engine failed
        "rate_limited",  # DuckDuckGo's bot challenge with HTTP 202
        "challenge",  # DuckDuckGo's bot challenge with HTTP 200
    }
)


@dataclass(frozen=True)
class CannedHit:
    title: str
    url: str
    snippet: str
    content: str
    published: str
    """ISO date (``YYYY-MM-DD``)."""
    score: float


CANNED: tuple[CannedHit, ...] = (
    CannedHit(
        "Bloom filter - Wikipedia",
        "https://en.wikipedia.org/wiki/Bloom_filter",
        "A Bloom filter is a space-efficient probabilistic data structure for set membership tests.",
        "A Bloom filter is a space-efficient probabilistic data structure, conceived by Burton Howard "
        "Bloom in 1970.\n\nFalse positive matches are possible, but false negatives are not.",
        "2024-03-05",
        0.97,
    ),
    CannedHit(
        "Bloom Filters by Example",
        "https://llimllib.github.io/bloomfilter-tutorial/",
        "A Bloom filter tells you, rapidly and memory-efficiently, whether an element is in a set.",
        "The base data structure of a Bloom filter is a bit vector.\n\nTo add an element, hash it a few "
        "times and set the bits.",
        "2023-11-20",
        0.91,
    ),
    CannedHit(
        "Network Applications of Bloom Filters: A Survey",
        "https://www.eecs.harvard.edu/~michaelm/postscripts/im2005b.pdf",
        "A Bloom filter is a simple randomized data structure for representing a set.",
        "Bloom filters allow false positives, but the space savings often outweigh this drawback.",
        "2005-01-01",
        0.88,
    ),
    CannedHit(
        "Probabilistic data structures: Bloom filter | Redis",
        "https://redis.io/docs/latest/develop/data-types/probabilistic/bloom-filter/",
        "A Bloom filter in Redis lets you check if an element is present in a set.",
        "Bloom filters are a probabilistic data structure that checks for presence of an item in a set.",
        "2024-08-14",
        0.84,
    ),
    CannedHit(
        "Cuckoo filter: practically better than Bloom",
        "https://www.cs.cmu.edu/~dga/papers/cuckoo-conext2014.pdf",
        "Cuckoo filters support deleting items and beat Bloom filters on speed.",
        "We propose the cuckoo filter, which can replace Bloom filters for approximate set membership.",
        "2014-12-02",
        0.79,
    ),
    CannedHit(
        "Consistent hashing - Wikipedia",
        "https://en.wikipedia.org/wiki/Consistent_hashing",
        "Consistent hashing remaps only n/m keys on average when a hash table is resized.",
        "In computer science, consistent hashing is a special kind of hashing technique.",
        "2024-05-30",
        0.95,
    ),
    CannedHit(
        "Consistent Hashing and Random Trees (Karger et al.)",
        "https://www.cs.princeton.edu/courses/archive/fall09/cos518/papers/chash.pdf",
        "A family of caching protocols for distributed networks based on consistent hashing.",
        "Consistent hashing maps keys and servers onto the same ring.",
        "1997-05-04",
        0.9,
    ),
    CannedHit(
        "In Search of an Understandable Consensus Algorithm (Raft)",
        "https://raft.github.io/raft.pdf",
        "Raft is a consensus algorithm for managing a replicated log, designed to be easy to understand.",
        "Raft separates leader election, log replication and safety.",
        "2014-06-19",
        0.96,
    ),
    CannedHit(
        "The Raft Consensus Algorithm",
        "https://raft.github.io/",
        "Raft is a consensus algorithm that is designed to be easy to understand.",
        "Consensus is a fundamental problem in fault-tolerant distributed systems.",
        "2023-02-01",
        0.89,
    ),
)


def matching(query: str) -> list[CannedHit]:
    """Canned hits that contain a word of ``query`` (three letters or more), in canned order."""
    words = {word for word in re.findall(r"\w+", query.lower()) if len(word) >= 3}
    return [
        hit
        for hit in CANNED
        if words & set(re.findall(r"\w+", f"{hit.title} {hit.snippet} {hit.content}".lower()))
    ]


@dataclass
class Recorded:
    """One request the fake served."""

    provider: str
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode()))


@dataclass
class Failure:
    mode: str
    times: int | None = None
    """Fail this many requests, then answer normally; ``None``: every request."""
    query: str | None = None
    """Fail only queries that contain this text."""
    retry_after: str | None = "0"
    delay: float = 5.0
    served: int = 0


@dataclass
class FakeSearchProviders:
    """The fake's state and its ASGI app; start it with ``start_fake_search_providers()``."""

    base_url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    failures: dict[str, Failure] = field(default_factory=dict)
    _serving: ThreadedServer | None = None

    def endpoint(self, provider: str) -> str:
        """What to pass as a provider's ``endpoint`` (or ``search_endpoint``) to reach the fake."""
        return f"{self.base_url}/{provider}"

    def fail(
        self,
        provider: str,
        mode: str,
        *,
        times: int | None = None,
        query: str | None = None,
        retry_after: str | None = "0",
        delay: float = 5.0,
    ) -> None:
        """Switch ``provider`` into failure ``mode`` (one of ``MODES``)."""
        assert provider in PROVIDERS and mode in MODES, (provider, mode)
        self.failures[provider] = Failure(mode, times, query, retry_after, delay)

    def sent(self, provider: str) -> list[Recorded]:
        """The requests ``provider`` received, in order."""
        return [request for request in self.requests if request.provider == provider]

    def reset(self) -> None:
        self.requests.clear()
        self.failures.clear()

    def start(self, port: int = 0) -> None:
        self._serving = ThreadedServer(self, "fake-search-providers")
        self.base_url = f"http://127.0.0.1:{self._serving.start(port)}"

    def stop(self) -> None:
        if self._serving is not None:
            self._serving.stop()
        self._serving = None

    # --- the ASGI app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        provider, _, rest = scope["path"].lstrip("/").partition("/")
        request = Recorded(
            provider=provider,
            method=scope["method"],
            path="/" + rest,
            params=dict(parse_qsl(scope["query_string"].decode())),
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            body=body,
        )
        self.requests.append(request)
        reply = _Reply(send)
        route = _ROUTES.get(provider)
        if route is None or (request.method, request.path) != route:
            await reply.json(404, {"error": f"no route {request.method} {scope['path']}"})
            return
        query = _query(request)
        failure = self.failures.get(provider)
        if (
            failure
            and (failure.query is None or failure.query in query)
            and (failure.times is None or failure.served < failure.times)
        ):
            failure.served += 1
            if failure.mode == "slow":
                if not await _wait_unless_disconnected(receive, failure.delay):
                    return
            else:
                await _fail(reply, provider, failure, request, query)
                return
        refusal = _refusal(provider, request.headers)
        if refusal is not None:
            await reply.json(*refusal)
            return
        await _answer(reply, provider, request, query)


_ROUTES = {
    "searxng": ("GET", "/search"),
    "tavily": ("POST", "/search"),
    "brave": ("GET", "/res/v1/web/search"),
    "serper": ("POST", "/search"),
    "exa": ("POST", "/search"),
    "jina": ("GET", "/"),
    "stepfun": ("POST", "/v1/search"),
    "ddg": ("POST", "/html/"),
}


def _query(request: Recorded) -> str:
    if request.method == "GET":
        return request.params.get("q", "")
    if request.provider == "ddg":
        return request.form.get("q", "")
    try:
        data = request.json
    except ValueError:
        return ""
    return str(data.get("query") or data.get("q") or "") if isinstance(data, dict) else ""


def _credential(provider: str, headers: dict[str, str]) -> str | None:
    """The key the request carried, in the provider's own header."""
    if provider in ("tavily", "jina", "stepfun"):
        auth = headers.get("authorization", "")
        return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
    name = {"brave": "x-subscription-token", "serper": "x-api-key", "exa": "x-api-key"}.get(provider)
    return headers.get(name) if name else None


def _refusal(provider: str, headers: dict[str, str]) -> tuple[int, Any] | None:
    """The provider's own answer to a missing or wrong key, or ``None`` if the key is right."""
    if provider in ("searxng", "ddg") or _credential(provider, headers) == API_KEY:
        return None
    return {
        "tavily": (401, {"detail": {"error": "Unauthorized: missing or invalid API key."}}),
        "brave": (
            422,
            _brave_error(422, "SUBSCRIPTION_TOKEN_INVALID", "The provided subscription token is invalid."),
        ),
        "serper": (403, {"message": "Unauthorized.", "statusCode": 403}),
        "exa": (401, {"requestId": "b1e2d3", "error": "Invalid API key", "tag": "INVALID_API_KEY"}),
        "jina": (
            401,
            {
                "data": None,
                "code": 401,
                "name": "AuthenticationRequiredError",
                "status": 40103,
                "message": "Invalid API key, please get a new one from the dashboard",
                "readableMessage": "AuthenticationRequiredError: Invalid API key",
            },
        ),
        "stepfun": (401, {"error": {"message": "Incorrect API key provided", "type": "invalid_api_key"}}),
    }[provider]


def _brave_error(status: int, code: str, detail: str) -> dict[str, Any]:
    return {
        "type": "ErrorResponse",
        "error": {
            "id": "5f0c1e1a-3b7c-4d2e-9f6a-1c2d3e4f5a6b",
            "status": status,
            "code": code,
            "detail": detail,
            "meta": {},
        },
        "time": 1717000000,
    }


def _error_json(provider: str, status: int, message: str) -> Any:
    """An error body in the provider's usual envelope."""
    if provider == "tavily":
        return {"detail": {"error": message}}
    if provider == "brave":
        return _brave_error(status, "RATE_LIMITED" if status == 429 else "SERVER_ERROR", message)
    if provider == "serper":
        return {"message": message, "statusCode": status}
    if provider == "jina":
        return {
            "data": None,
            "code": status,
            "name": "ServiceError",
            "status": status * 100,
            "message": message,
        }
    return {"error": {"message": message, "code": status}}


_NGINX = (
    "<html>\r\n<head><title>{0}</title></head>\r\n<body>\r\n<center><h1>{0}</h1></center>\r\n"
    "<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n"
)
_SEARXNG_403 = (
    "<!doctype html>\n<html lang=en>\n<title>403 Forbidden</title>\n<h1>Forbidden</h1>\n"
    "<p>You don&#39;t have the permission to access the requested resource. It is either read-protected "
    "or not readable by the server.</p>\n"
)


async def _fail(reply: _Reply, provider: str, failure: Failure, request: Recorded, query: str) -> None:
    mode = failure.mode
    if mode == "429":
        headers = [] if failure.retry_after is None else [("retry-after", failure.retry_after)]
        await reply.json(429, _error_json(provider, 429, "Rate limit exceeded, slow down."), headers)
    elif mode == "500":
        await reply.json(500, _error_json(provider, 500, "Internal server error while searching."))
    elif mode in ("502", "503"):
        title = {"502": "502 Bad Gateway", "503": "503 Service Temporarily Unavailable"}[mode]
        await reply.send(int(mode), _NGINX.format(title).encode(), "text/html")
    elif mode == "echo_key":
        await reply.json(
            500, {"error": f"upstream refused credentials {_credential(provider, request.headers)!s}"}
        )
    elif mode == "malformed":
        if provider == "ddg":
            await reply.send(200, b"<html><body><div id='links'></div></body></html>", "text/html")
        else:
            await reply.send(200, b'{"results": [{"title": "Bloom filter - Wiki', "application/json")
    elif mode == "no_results_field":
        await reply.json(200, _without_results(provider, query))
    elif mode == "error_body":
        await reply.json(200, {"query": query, "error": {"message": "search backend timeout", "code": 50001}})
    elif mode == "json_disabled":
        await reply.send(403, _SEARXNG_403.encode(), "text/html; charset=utf-8")
    elif mode == "unresponsive":
        await reply.json(
            200, _searxng(query, [], unresponsive=[["google", "CAPTCHA"], ["duckduckgo", "timeout"]])
        )
    elif mode in ("rate_limited", "challenge"):
        await reply.send(
            202 if mode == "rate_limited" else 200, ddg_challenge_page(query).encode(), "text/html"
        )


def _without_results(provider: str, query: str) -> Any:
    return {
        "searxng": {"query": query, "number_of_results": 0},
        "tavily": {"query": query, "answer": None, "response_time": 0.42},
        "brave": {"type": "search", "query": {"original": query}, "web": {"type": "search"}},
        "serper": {"searchParameters": {"q": query, "type": "search", "engine": "google"}, "credits": 1},
        "exa": {"requestId": "c0ffee", "costDollars": {"total": 0.005}},
        "jina": {"code": 200, "status": 20000, "data": None, "meta": {"usage": {"tokens": 0}}},
        "stepfun": {"query": query, "category": "general"},
    }[provider]


async def _answer(reply: _Reply, provider: str, request: Recorded, query: str) -> None:
    hits = matching(query)
    if provider == "ddg":
        await reply.send(200, ddg_results_page(query, hits[:10]).encode(), "text/html; charset=UTF-8")
        return
    if provider == "searxng":
        await reply.json(200, _searxng(query, hits))
        return
    if request.method == "GET":
        count = int(request.params.get({"brave": "count", "jina": "num"}[provider], "10"))
        body: dict[str, Any] = {}
    else:
        body = request.json
        count = int(
            body.get(
                {"tavily": "max_results", "serper": "num", "exa": "numResults", "stepfun": "n"}[provider], 10
            )
        )
    hits = hits[:count]
    results: list[dict[str, Any]]
    if provider == "tavily":
        news = body.get("topic") == "news"
        raw = bool(body.get("include_raw_content"))
        results = [
            {
                "title": hit.title,
                "url": hit.url,
                "content": hit.snippet,
                "score": hit.score,
                "raw_content": hit.content if raw else None,
                **({"published_date": _http_date(hit.published)} if news else {}),
            }
            for hit in hits
        ]
        await reply.json(200, {"query": query, "answer": None, "results": results, "response_time": 0.87})
    elif provider == "brave":
        if not hits:
            await reply.json(200, {"type": "search", "query": {"original": query}})  # no `web` at all
            return
        results = [
            {
                "title": hit.title,
                "url": hit.url,
                "description": _highlight(hit.snippet, query, "strong"),
                "page_age": f"{hit.published}T08:00:00",
                "age": _human_date(hit.published),
                "language": "en",
                "family_friendly": True,
                "type": "search_result",
                "subtype": "generic",
                "meta_url": {"scheme": "https", "netloc": urlsplit(hit.url).netloc},
                "extra_snippets": [sentence.strip() for sentence in hit.content.split("\n\n")],
            }
            for hit in hits
        ]
        await reply.json(
            200,
            {
                "type": "search",
                "query": {"original": query, "more_results_available": True},
                "web": {"type": "search", "results": results, "family_friendly": True},
            },
        )
    elif provider == "serper":
        organic = [
            {
                "title": hit.title,
                "link": hit.url,
                "snippet": hit.snippet,
                "position": i,
                **({"date": _human_date(hit.published)} if i % 2 else {}),
            }
            for i, hit in enumerate(hits, start=1)
        ]
        await reply.json(
            200,
            {
                "searchParameters": {"q": query, "type": "search", "num": count, "engine": "google"},
                "organic": organic,
                "peopleAlsoAsk": [],
                "relatedSearches": [{"query": f"{query} explained"}],
                "credits": 1,
            },
        )
    elif provider == "exa":
        max_chars = int(body.get("contents", {}).get("text", {}).get("maxCharacters", 10_000))
        results = [
            {
                "id": hit.url,
                "title": hit.title,
                "url": hit.url,
                "publishedDate": f"{hit.published}T00:00:00.000Z",
                "author": None,
                "score": hit.score,
                "text": hit.content[:max_chars],
            }
            for hit in hits
        ]
        await reply.json(200, {"requestId": "a1b2c3", "results": results, "costDollars": {"total": 0.005}})
    elif provider == "jina":
        data = [
            {
                "title": hit.title,
                "url": hit.url,
                "description": hit.snippet,
                "content": hit.content,
                "date": _human_date(hit.published),
                "usage": {"tokens": len(hit.content) // 4},
            }
            for hit in hits
        ]
        await reply.json(
            200,
            {
                "code": 200,
                "status": 20000,
                "data": data,
                "meta": {"usage": {"tokens": sum(len(hit.content) // 4 for hit in hits)}},
            },
        )
    elif provider == "stepfun":
        results = [
            {
                "url": hit.url,
                "position": i,
                "title": hit.title,
                "time": f"{hit.published}T20:34:32",
                "snippet": hit.snippet,
                "content": hit.content,
            }
            for i, hit in enumerate(hits, start=1)
        ]
        await reply.json(200, {"query": query, "category": "research", "results": results})


def _searxng(query: str, hits: list[CannedHit], unresponsive: list[list[str]] | None = None) -> Any:
    results = [
        {
            "url": hit.url,
            "title": hit.title,
            "content": hit.snippet,
            "publishedDate": f"{hit.published}T00:00:00" if i % 2 == 0 else None,
            "thumbnail": "",
            "engine": "bing" if i % 2 else "google",
            "template": "default.html",
            "parsed_url": ["https", urlsplit(hit.url).netloc, urlsplit(hit.url).path, "", "", ""],
            "img_src": "",
            "priority": "",
            "engines": ["google", "bing"],
            "positions": [i + 1, i + 2],
            "score": round(hit.score * 4, 3),
            "category": "general",
        }
        for i, hit in enumerate(hits)
    ]
    return {
        "query": query,
        "number_of_results": 0,
        "results": results,
        "answers": [],
        "corrections": [],
        "infoboxes": [],
        "suggestions": [f"{query} tutorial"],
        "unresponsive_engines": unresponsive or [],
    }


def _highlight(text: str, query: str, tag: str) -> str:
    """``text`` HTML-escaped with the query words wrapped in ``<tag>``, as search pages show them."""
    out = escape(text)
    for word in {w for w in re.findall(r"\w+", query) if len(w) >= 3}:
        out = re.sub(rf"\b({re.escape(word)})\b", rf"<{tag}>\1</{tag}>", out, flags=re.IGNORECASE)
    return out


def _human_date(iso: str) -> str:
    day = datetime.fromisoformat(iso)
    return f"{day:%b} {day.day}, {day.year}"


def _http_date(iso: str) -> str:
    return format_datetime(datetime.fromisoformat(iso).replace(hour=9, minute=30, tzinfo=UTC), usegmt=True)


# --- DuckDuckGo's HTML endpoint

_DDG_PAGE = """<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml">
<head>
  <meta http-equiv="content-type" content="text/html; charset=UTF-8">
  <meta name="referrer" content="origin">
  <meta name="viewport" content="width=device-width, initial-scale=1.0, maximum-scale=3.0, user-scalable=1">
  <title>{query} at DuckDuckGo</title>
  <link rel="stylesheet" href="//duckduckgo.com/dist/h.8b74ae2a1f71bb4bba3e.css" type="text/css">
</head>
<body>
  <div class="header url">
    <form action="/html/" method="post" id="search_form" class="header__form" name="x">
      <div class="search search--header">
        <input name="q" autocomplete="off" class="search__input" id="search_form_input_homepage"
               type="text" value="{query}" />
        <input name="b" id="search_button_homepage" class="search__button search__button--html" value=""
               title="Search" alt="Search" type="submit" />
      </div>
    </form>
  </div>
  <div>
  <div class="serp__results">
  <div id="links" class="results">
{results}
{next}
  </div>
  </div>
  </div>
  <img src="//duckduckgo.com/t/sl_h"/>
</body>
</html>
"""
_DDG_AD = """    <div class="result results_links results_links_deep result--ad ">
      <div class="links_main links_deep result__body">
        <h2 class="result__title">
          <a rel="nofollow" class="result__a"
             href="https://duckduckgo.com/y.js?ad_domain=example-shop.com&amp;ad_provider=bingv7aa&amp;u3=x"
             >Buy Bloom Filters Online - Free Shipping</a>
        </h2>
        <a class="result__snippet" href="https://duckduckgo.com/y.js?ad_domain=example-shop.com"
           >Huge selection of data structures. Order today.</a>
        <a class="badge--ad">Ad</a>
      </div>
    </div>
"""
_DDG_RESULT = """    <div class="result results_links results_links_deep web-result ">
      <div class="links_main links_deep result__body">
        <h2 class="result__title">
          <a rel="nofollow" class="result__a" href="{link}">{title}</a>
        </h2>
        <div class="result__extras">
          <div class="result__extras__url">
            <span class="result__icon">
              <a rel="nofollow" href="{link}"><img class="result__icon__img" width="16" height="16" alt=""
                 src="//external-content.duckduckgo.com/ip3/{host}.ico" name="i15" /></a>
            </span>
            <a class="result__url" href="{link}">{display}</a>
            {date}
          </div>
        </div>
        <a class="result__snippet" href="{link}">{snippet}</a>
        <div class="clear"></div>
      </div>
    </div>
"""
_DDG_NO_RESULTS = """    <div class="result results_links results_links_deep result--no-result">
      <div class="no-results">No  results.</div>
    </div>
"""
_DDG_NEXT = """    <div class="nav-link">
      <form action="/html/" method="post">
        <input type="submit" class='btn btn--alt' value="Next" />
        <input type="hidden" name="q" value="{query}" />
        <input type="hidden" name="s" value="10" />
        <input type="hidden" name="nextParams" value="" />
        <input type="hidden" name="v" value="l" />
        <input type="hidden" name="o" value="json" />
        <input type="hidden" name="dc" value="11" />
        <input type="hidden" name="api" value="d.js" />
        <input type="hidden" name="vqd" value="4-218719386185932498475209836459285813750" />
      </form>
    </div>
"""


def ddg_link(url: str) -> str:
    """A result link as DuckDuckGo writes it: through its ``/l/?uddg=`` redirect (HTML-escaped ``&``)."""
    return f"//duckduckgo.com/l/?uddg={quote(url, safe='')}&amp;rut=8e0f6c3a9d41b7e5a2c1f0e9d8b7a6c5"


def ddg_results_page(query: str, hits: list[CannedHit]) -> str:
    """A results page of ``html.duckduckgo.com``: an ad first, then one block per hit (every other one
    dated), or the "No results." block."""
    blocks = []
    for i, hit in enumerate(hits):
        parts = urlsplit(hit.url)
        blocks.append(
            _DDG_RESULT.format(
                link=ddg_link(hit.url),
                title=escape(hit.title),
                host=parts.netloc,
                display=escape(parts.netloc + parts.path),
                date=f"<span>&nbsp; &nbsp; {hit.published}T00:00:00.0000000</span>" if i % 2 == 0 else "",
                snippet=_highlight(hit.snippet, query, "b"),
            )
        )
    results = (_DDG_AD + "".join(blocks)) if hits else _DDG_NO_RESULTS
    next_page = _DDG_NEXT.format(query=escape(query)) if hits else ""
    return _DDG_PAGE.format(query=escape(query), results=results, next=next_page)


def ddg_challenge_page(query: str) -> str:
    """DuckDuckGo's bot challenge ("anomaly") page, served instead of results to clients it suspects."""
    boxes = "".join(
        f'<div class="anomaly-modal__box" data-index="{i}">'
        f'<button type="submit" class="anomaly-modal__image_btn" name="img_click" value="{i:032x}" '
        f'form="img-form"><label for="image-check_{i:032x}">'
        f'<input type="checkbox" class="anomaly-modal__check" name="image-check_{i:032x}" '
        f'id="image-check_{i:032x}"><img class="anomaly-modal__image" alt=" " '
        f'src="../assets/anomaly/images/challenge/{i:032x}.jpg"></img>'
        f'</label><div class="anomaly-modal__overlay"></div></button></div>'
        for i in range(9)
    )
    return f"""<!DOCTYPE html>
<html lang="en-US">
<head><meta charset="utf-8"><title>DuckDuckGo</title><link rel="stylesheet" href="/dist/anomaly.css"></head>
<body>
<div class="anomaly-modal__mask"><div class="anomaly-modal__modal" data-testid="anomaly-modal">
  <div class="anomaly-modal__title">Unfortunately, bots use DuckDuckGo too.</div>
  <div class="anomaly-modal__description">Please complete the following challenge to confirm this search
    was made by a human.</div>
  <div class="anomaly-modal__instructions">Select all squares containing a duck:</div>
  <form id="challenge-form" method="POST"
        action="//duckduckgo.com/anomaly.js?sv=html&amp;cc=botnet&amp;q={quote(query)}&amp;r=use">
    <div class="anomaly-modal__puzzle">{boxes}</div>
    <button type="submit" class="anomaly-modal__submit" disabled>Submit</button>
  </form>
</div></div>
</body>
</html>
"""


# --- plumbing


class _Reply:
    def __init__(self, send: Send) -> None:
        self._send = send

    async def send(
        self, status: int, body: bytes, content_type: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        raw = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
        raw += [(k.encode(), v.encode()) for k, v in headers or []]
        await self._send({"type": "http.response.start", "status": status, "headers": raw})
        await self._send({"type": "http.response.body", "body": body})

    async def json(self, status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> None:
        await self.send(status, json.dumps(data, ensure_ascii=False).encode(), "application/json", headers)


async def _wait_unless_disconnected(receive: Receive, seconds: float) -> bool:
    """Sleep ``seconds``; ``False`` as soon as the client hangs up (so a timed-out test leaves no work)."""
    try:
        while (await asyncio.wait_for(receive(), seconds))["type"] != "http.disconnect":
            pass
    except TimeoutError:
        return True
    return False


def start_fake_search_providers(port: int = 0) -> FakeSearchProviders:
    """A running ``FakeSearchProviders``; call ``.stop()`` when done."""
    fake = FakeSearchProviders()
    fake.start(port)
    return fake
