"""DuckDuckGo (``ddg``): free and keyless, read from its HTML results page with httpx and lxml.

Why not the ``ddgs`` package (PyPI 9.x), which the issue suggested: we read its source (9.16.1) and
found no way to test it against a local fake server, and no way to report rate limiting.

- Its DuckDuckGo URL is a class attribute (``search_url = "https://html.duckduckgo.com/html/"``),
  with no setting to change it; the only knob is ``proxy`` (or ``DDGS_PROXY``), and a proxy in
  front of an ``https://`` URL only sees a CONNECT tunnel, so a fake would have to terminate TLS
  with its own certificate and the client would have to stop verifying.
- Its HTTP client, ``primp``, is a compiled Rust extension whose sockets bypass Python's, so the test
  suite's loopback-only guard cannot see or stop a stray real request.
- It turns every non-200 answer into "no results" (``request()`` returns ``None``), so DuckDuckGo's
  rate-limit page (HTTP 202) becomes an empty result list, the silent failure this package refuses.
- It is synchronous (a worker thread per search) and brings a second HTTP stack.

So this module posts the form itself: ``POST https://html.duckduckgo.com/html/`` with ``q=…``, and
parses the ``div.result`` blocks (``a.result__a`` title link, ``.result__snippet``, a date in
``.result__extras__url`` when DuckDuckGo shows one). Links go through DuckDuckGo's redirect
(``//duckduckgo.com/l/?uddg=<url>&rut=…``), which we unwrap; ads (``result--ad``, ``y.js`` links)
are skipped. One page holds about ten results, so a larger limit still returns one page.

DuckDuckGo answers bots with an "anomaly" challenge page (HTTP 202, sometimes 200, with a
``challenge-form`` posting to ``anomaly.js``); that is a ``SearchError`` saying we are rate limited.
A 200 page with neither results nor DuckDuckGo's "No results." block is an error too (the page
layout changed), never an empty list.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import lxml.etree
import lxml.html

from deepresearch.search import SearchHit
from deepresearch.search.providers._http import DEFAULT_TIMEOUT, HTTPProvider, ProviderHTTP

DEFAULT_ENDPOINT = "https://html.duckduckgo.com"
USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
"""The HTML endpoint answers clients that look like a browser; the same string as the fetcher's."""
RATE_LIMITED = (
    "DuckDuckGo is rate limiting this client (HTTP {status}, bot-challenge page); wait a few minutes "
    "or configure another search provider"
)

_DATE_RE = re.compile(r"\b(\d{4}-\d{2}-\d{2})(?:T[\d:.]+)?\b")
_SPACE_RE = re.compile(r"\s+")
_RESULT = "//div[contains(concat(' ', normalize-space(@class), ' '), ' result ')]"


class DuckDuckGoSearch(HTTPProvider):
    name = "ddg"

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        region: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        http = ProviderHTTP(
            self.name,
            timeout=timeout,
            headers={
                "User-Agent": USER_AGENT,
                "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
            },
            follow_redirects=True,
            transport=transport,
        )
        super().__init__(http, endpoint or DEFAULT_ENDPOINT)
        self.region = region
        """DuckDuckGo region code (``us-en``, ``cn-zh``…); ``None``: no preference."""

    async def _search(self, query: str, limit: int) -> list[SearchHit]:
        form = {"q": query}
        if self.region:
            form["kl"] = self.region
        response = await self._http.send("POST", f"{self.endpoint}/html/", data=form)
        if response.status_code == 202:
            raise self._http.error(RATE_LIMITED.format(status=202))
        try:
            page = lxml.html.document_fromstring(response.content)
        except (lxml.etree.ParserError, ValueError) as exc:
            raise self._http.error(
                f"returned an empty or unreadable page (HTTP {response.status_code})"
            ) from exc
        hits = parse_results(page)
        if hits:
            return hits
        if _is_challenge(page):
            raise self._http.error(RATE_LIMITED.format(status=response.status_code))
        if page.xpath("//*[contains(@class, 'no-results')]"):
            return []
        raise self._http.error(
            "the results page has neither results nor a 'No results' notice (did the page layout change?)"
        )


def parse_results(page: Any) -> list[SearchHit]:
    """The organic results of a DuckDuckGo HTML page, in page order (ads left out)."""
    hits = []
    for block in page.xpath(_RESULT):
        classes = block.get("class", "")
        if "result--ad" in classes or "result--no-result" in classes:
            continue
        links = block.xpath(".//a[contains(@class, 'result__a')]")
        if not links:
            continue
        url = unwrap(links[0].get("href", ""))
        if not url or "duckduckgo.com/y.js" in url:
            continue
        snippet = block.xpath(".//*[contains(@class, 'result__snippet')]")
        extras = block.xpath(".//*[contains(@class, 'result__extras__url')]")
        date = _DATE_RE.search(_flat(extras[0])) if extras else None
        hits.append(
            SearchHit(
                title=_flat(links[0]) or url,
                url=url,
                snippet=_flat(snippet[0]) if snippet else "",
                published=date.group(1) if date else "",
            )
        )
    return hits


def unwrap(href: str) -> str:
    """The target of a DuckDuckGo redirect link (``//duckduckgo.com/l/?uddg=…``), else ``href``."""
    href = href.strip()
    parts = urlsplit(href)
    if parts.path == "/l/" and (not parts.netloc or parts.netloc.endswith("duckduckgo.com")):
        target = parse_qs(parts.query).get("uddg")
        return target[0] if target else ""
    if href.startswith("//"):
        return "https:" + href
    return href if parts.scheme in ("http", "https") else ""


def _is_challenge(page: Any) -> bool:
    return bool(
        page.xpath("//form[@id='challenge-form'] | //form[contains(@action, 'anomaly')]")
        or page.xpath("//*[contains(@class, 'anomaly-modal')]")
    )


def _flat(element: Any) -> str:
    return _SPACE_RE.sub(" ", element.text_content()).strip()
