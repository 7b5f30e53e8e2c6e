"""Jina Search (``s.jina.ai``): web results with each page already read into Markdown.

``GET https://s.jina.ai/?q=…&num=…`` with ``Authorization: Bearer <key>`` and ``Accept:
application/json`` answers ``{"code": 200, "status": 20000, "data": [{"title", "url",
"description", "content", "date"?, "usage"}], "meta": {"usage"}}`` (jina.ai Reader/Search API
docs). ``description`` is the snippet, ``content`` the page text. Errors keep the envelope with
``data: null`` and a ``message``/``readableMessage``; a missing or bad key is 401.
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

DEFAULT_ENDPOINT = "https://s.jina.ai"
MAX_NUM = 20


class JinaSearch(HTTPProvider):
    name = "jina"

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
            headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
            secret=api_key,
            key_setting="jina_api_key",
            transport=transport,
        )
        super().__init__(http, endpoint or DEFAULT_ENDPOINT)

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
