"""SearXNG: a self-hosted metasearch engine, free and keyless, and so the first choice of ``auto``.

``GET {instance}/search?q=…&format=json`` answers ``{"query", "results": [{"url", "title",
"content", "publishedDate", "engine", "score", …}], "unresponsive_engines": [[engine, reason]], …}``
(docs.searxng.org, "Search API"). The JSON format must be enabled in the instance's
``settings.yml`` (``search.formats``); an instance without it answers 403, and we say exactly that.
An instance returns one page (about 20 results) whatever the limit, so we cut the list. A page with
no results while engines failed is an error (which engines and why), not an empty answer.
"""

from __future__ import annotations

import httpx

from deepresearch.search import SearchHit
from deepresearch.search.providers._http import (
    DEFAULT_TIMEOUT,
    HTTPProvider,
    ProviderHTTP,
    number,
    plain,
    text,
)

JSON_DISABLED = "the instance refused format=json: enable `json` under `search.formats` in its settings.yml"


class SearxngSearch(HTTPProvider):
    """Searches one SearXNG instance (``url`` is its root, e.g. ``http://localhost:8888``)."""

    name = "searxng"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        language: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        http = ProviderHTTP(
            self.name,
            timeout=timeout,
            headers={"Accept": "application/json"},
            follow_redirects=True,
            transport=transport,
        )
        super().__init__(http, url)
        self.language = language
        """Result language code (``en``, ``zh``…); ``None`` leaves the instance's default."""

    async def _search(self, query: str, limit: int) -> list[SearchHit]:
        params: dict[str, str | int] = {"q": query, "format": "json"}
        if self.language:
            params["language"] = self.language
        response = await self._http.send(
            "GET", f"{self.endpoint}/search", params=params, statuses={403: JSON_DISABLED}
        )
        data = self._http.json(response)
        results = self._http.items(data, "results")
        if not results:
            failed = [
                f"{entry[0]} ({entry[1]})" if len(entry) > 1 else str(entry[0])
                for entry in data.get("unresponsive_engines") or []
                if isinstance(entry, list) and entry
            ]
            if failed:
                raise self._http.error(f"no results, and these engines failed: {', '.join(failed)}")
        return [
            SearchHit(
                title=plain(item.get("title")) or text(item.get("url")),
                url=text(item.get("url")),
                snippet=plain(item.get("content")),
                published=text(item.get("publishedDate")),
                score=number(item.get("score")),
            )
            for item in results
        ]
