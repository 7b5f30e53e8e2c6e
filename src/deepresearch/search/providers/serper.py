"""Serper: Google's results through a JSON API.

``POST https://google.serper.dev/search`` with ``X-API-KEY: <key>`` and JSON ``{q, num}`` answers
``{"searchParameters": {…}, "organic": [{"title", "link", "snippet", "date", "position"}],
"knowledgeGraph"?, "peopleAlsoAsk"?, "relatedSearches"?, "credits"}`` (serper.dev playground and
API docs). Only ``organic`` hits are kept; ``date`` appears on dated pages in Google's own words
("Jan 15, 2024"). A refused key is 403 ``{"message": "Unauthorized.", "statusCode": 403}``.
"""

from __future__ import annotations

from deepresearch.search import SearchHit
from deepresearch.search.providers._http import (
    KeyedProvider,
    clamp,
    plain,
    text,
)

DEFAULT_ENDPOINT = "https://google.serper.dev"
MAX_NUM = 100


class SerperSearch(KeyedProvider):
    name = "serper"
    default_endpoint = DEFAULT_ENDPOINT
    key_header = "X-API-KEY"
    key_setting = "serper_api_key"

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
