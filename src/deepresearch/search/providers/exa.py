"""Exa: neural web search that returns each page's text with the hit.

``POST https://api.exa.ai/search`` with ``x-api-key: <key>`` and JSON ``{query, numResults,
contents: {text: {maxCharacters}}}`` answers ``{"requestId", "resolvedSearchType", "results":
[{"id", "title", "url", "publishedDate", "author", "score", "text"}], "costDollars"}``
(exa.ai/docs, API reference "Search"). ``text`` is the page text (our content); Exa gives no
separate snippet, so the tool shows the start of the text. ``title`` and ``score`` may be null.
"""

from __future__ import annotations

import httpx

from deepresearch.search import SearchHit
from deepresearch.search.providers._http import (
    DEFAULT_TIMEOUT,
    KeyedProvider,
    clamp,
    number,
    plain,
    text,
)

DEFAULT_ENDPOINT = "https://api.exa.ai"
MAX_RESULTS = 100
TEXT_CHARS = 4000
"""Page text asked for per hit: enough to judge a page; ``batch_open`` reads the whole of it."""


class ExaSearch(KeyedProvider):
    name = "exa"
    default_endpoint = DEFAULT_ENDPOINT
    key_header = "x-api-key"
    key_setting = "exa_api_key"

    def __init__(
        self,
        api_key: str,
        *,
        endpoint: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        text_chars: int = TEXT_CHARS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(api_key, endpoint=endpoint, timeout=timeout, transport=transport)
        self.text_chars = text_chars

    async def _search(self, query: str, limit: int) -> list[SearchHit]:
        body = {
            "query": query,
            "numResults": clamp(limit, 1, MAX_RESULTS),
            "contents": {"text": {"maxCharacters": self.text_chars}},
        }
        response = await self._http.send("POST", f"{self.endpoint}/search", json=body)
        return [
            SearchHit(
                title=plain(item.get("title")) or text(item.get("url")),
                url=text(item.get("url")),
                content=text(item.get("text")),
                published=text(item.get("publishedDate")),
                score=number(item.get("score")),
            )
            for item in self._http.items(self._http.json(response), "results")
        ]
