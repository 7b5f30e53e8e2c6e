"""Brave Search: its own web index (not a reseller of another engine's results).

``GET https://api.search.brave.com/res/v1/web/search?q=…&count=…`` (count ≤ 20) with
``X-Subscription-Token: <key>`` answers ``{"type": "search", "query": {…}, "web": {"results":
[{"title", "url", "description", "page_age", "age", "extra_snippets", …}]}, …}`` (Brave Search API
documentation, "Web search" response model). ``description`` carries ``<strong>`` highlights, which
we drop; ``page_age`` is an ISO date, ``age`` a human one; ``extra_snippets`` (more excerpts of the
page) become our content. ``web`` is left out when there are no web results. Errors are
``{"type": "ErrorResponse", "error": {"code", "detail", …}}``; a bad token is 422
``SUBSCRIPTION_TOKEN_INVALID``, not 401, so that code also counts as a refused key.
"""

from __future__ import annotations

from deepresearch.search import SearchHit
from deepresearch.search.providers._http import (
    KeyedProvider,
    clamp,
    plain,
    text,
)

DEFAULT_ENDPOINT = "https://api.search.brave.com"
MAX_COUNT = 20


class BraveSearch(KeyedProvider):
    name = "brave"
    default_endpoint = DEFAULT_ENDPOINT
    key_header = "X-Subscription-Token"
    key_setting = "brave_api_key"
    refused_markers = ("SUBSCRIPTION_TOKEN_INVALID",)

    async def _search(self, query: str, limit: int) -> list[SearchHit]:
        response = await self._http.send(
            "GET",
            f"{self.endpoint}/res/v1/web/search",
            params={"q": query, "count": clamp(limit, 1, MAX_COUNT)},
        )
        data = self._http.json(response)
        if isinstance(data, dict) and "web" not in data and "query" in data:
            return []  # Brave leaves `web` out when it found no web results
        hits = []
        for item in self._http.items(data, "web", "results"):
            extra = item.get("extra_snippets")
            hits.append(
                SearchHit(
                    title=plain(item.get("title")) or text(item.get("url")),
                    url=text(item.get("url")),
                    snippet=plain(item.get("description")),
                    content="\n\n".join(plain(s) for s in extra if plain(s))
                    if isinstance(extra, list)
                    else "",
                    published=text(item.get("page_age")) or text(item.get("age")),
                )
            )
        return hits
