"""Serper: Google's results through a JSON API.

``POST https://google.serper.dev/search`` with ``X-API-KEY: <key>`` and JSON ``{q, num}`` answers
``{"searchParameters": {…}, "organic": [{"title", "link", "snippet", "date", "position"}],
"knowledgeGraph"?, "peopleAlsoAsk"?, "relatedSearches"?, "credits"}`` (serper.dev playground and
API docs). Only ``organic`` hits are kept; ``date`` appears on dated pages in Google's own words
("Jan 15, 2024"). A refused key is 403 ``{"message": "Unauthorized.", "statusCode": 403}``.
"""

from __future__ import annotations

import httpx

from deepresearch.search import SearchHit
from deepresearch.search.providers._http import (
    DEFAULT_TIMEOUT,
    HTTPProvider,
    ProviderHTTP,
    clamp,
    plain,
    text,
)

DEFAULT_ENDPOINT = "https://google.serper.dev"
MAX_NUM = 100


class SerperSearch(HTTPProvider):
    name = "serper"

    def __init__(
        self,
        api_key: str,
        *,
        endpoint: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        http = ProviderHTTP(
            self.name,
            timeout=timeout,
            headers={"X-API-KEY": api_key, "Accept": "application/json"},
            secret=api_key,
            key_setting="serper_api_key",
            transport=transport,
        )
        super().__init__(http, endpoint or DEFAULT_ENDPOINT)

    async def _search(self, query: str, limit: int) -> list[SearchHit]:
        response = await self._http.send(
            "POST", f"{self.endpoint}/search", json={"q": query, "num": clamp(limit, 1, MAX_NUM)}
        )
        return [
            SearchHit(
                title=plain(item.get("title")) or text(item.get("link")),
                url=text(item.get("link")),
                snippet=plain(item.get("snippet")),
                published=text(item.get("date")),
            )
            for item in self._http.items(self._http.json(response), "organic")
        ]
