"""Tavily: a search API made for agents; it can return each page's cleaned text with the hits.

``POST https://api.tavily.com/search`` with ``Authorization: Bearer <key>`` and JSON ``{query,
max_results (≤ 20), search_depth?, topic?, include_raw_content?}`` answers ``{"query", "answer",
"results": [{"title", "url", "content", "raw_content", "score", "published_date"}], "response_time"}``
(docs.tavily.com, API reference "Search"). ``content`` is Tavily's extract of the page (our snippet),
``raw_content`` the page text (our content, when asked for), ``published_date`` comes with
``topic="news"`` only. A refused key is 401 ``{"detail": {"error": …}}``.
"""

from __future__ import annotations

from typing import Any, Literal

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

DEFAULT_ENDPOINT = "https://api.tavily.com"
MAX_RESULTS = 20


class TavilySearch(KeyedProvider):
    name = "tavily"
    default_endpoint = DEFAULT_ENDPOINT
    key_header = "Authorization"
    key_setting = "tavily_api_key"

    def __init__(
        self,
        api_key: str,
        *,
        endpoint: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        search_depth: Literal["basic", "advanced"] | None = None,
        topic: Literal["general", "news"] | None = None,
        include_raw_content: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(api_key, endpoint=endpoint, timeout=timeout, transport=transport)
        self.search_depth = search_depth
        """``advanced`` costs two credits and returns better extracts; ``None``: Tavily's default."""
        self.topic = topic
        """``news`` adds publication dates; ``None``: Tavily's default (``general``)."""
        self.include_raw_content = include_raw_content
        """Ask for each page's text (``SearchHit.content``)."""

    async def _search(self, query: str, limit: int) -> list[SearchHit]:
        body: dict[str, Any] = {"query": query, "max_results": clamp(limit, 1, MAX_RESULTS)}
        if self.search_depth:
            body["search_depth"] = self.search_depth
        if self.topic:
            body["topic"] = self.topic
        if self.include_raw_content:
            body["include_raw_content"] = True
        response = await self._http.send("POST", f"{self.endpoint}/search", json=body)
        return [
            SearchHit(
                title=plain(item.get("title")) or text(item.get("url")),
                url=text(item.get("url")),
                snippet=plain(item.get("content")),
                content=text(item.get("raw_content")),
                published=text(item.get("published_date")),
                score=number(item.get("score")),
            )
            for item in self._http.items(self._http.json(response), "results")
        ]
