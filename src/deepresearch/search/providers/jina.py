"""Jina Search (``s.jina.ai``): web results with each page already read into Markdown.

``GET https://s.jina.ai/?q=…&num=…`` with ``Authorization: Bearer <key>`` and ``Accept:
application/json`` answers ``{"code": 200, "status": 20000, "data": [{"title", "url",
"description", "content", "date"?, "usage"}], "meta": {"usage"}}`` (jina.ai Reader/Search API
docs). ``description`` is the snippet, ``content`` the page text. Errors keep the envelope with
``data: null`` and a ``message``/``readableMessage``; a missing or bad key is 401.
"""

from __future__ import annotations

from deepresearch.search import SearchHit
from deepresearch.search.providers._http import (
    KeyedProvider,
    clamp,
    plain,
    text,
)

DEFAULT_ENDPOINT = "https://s.jina.ai"
MAX_NUM = 20


class JinaSearch(KeyedProvider):
    name = "jina"
    default_endpoint = DEFAULT_ENDPOINT
    key_header = "Authorization"
    key_setting = "jina_api_key"

    async def _search(self, query: str, limit: int) -> list[SearchHit]:
        response = await self._http.send(
            "GET", f"{self.endpoint}/", params={"q": query, "num": clamp(limit, 1, MAX_NUM)}
        )
        return [
            SearchHit(
                title=plain(item.get("title")) or text(item.get("url")),
                url=text(item.get("url")),
                snippet=plain(item.get("description")),
                content=text(item.get("content")),
                published=text(item.get("date")),
            )
            for item in self._http.items(self._http.json(response), "data")
        ]
