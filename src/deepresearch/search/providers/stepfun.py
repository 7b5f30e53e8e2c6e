"""StepFun search: the API the StepFun deep-research model was trained with.

``POST https://api.stepfun.com/v1/search`` with ``Authorization: Bearer <key>`` and JSON
``{query, n}`` (n in 1..20) answers ``{"query", "category", "results": [{"url", "position",
"title", "time", "snippet", "content"}]}`` — the shape documented in the reference implementation
(stepfun-ai/StepDeepResearch, ``demo/tools/search.py``). That code logged a 200 answer carrying
``"error"`` and went on as if it had results; here such an answer is a ``SearchError``.
"""

from __future__ import annotations

from deepresearch.search import SearchHit
from deepresearch.search.providers._http import (
    KeyedProvider,
    clamp,
    plain,
    text,
)

DEFAULT_ENDPOINT = "https://api.stepfun.com"
MAX_N = 20


class StepFunSearch(KeyedProvider):
    name = "stepfun"
    default_endpoint = DEFAULT_ENDPOINT
    key_header = "Authorization"
    key_setting = "stepfun_search_api_key"

    async def _search(self, query: str, limit: int) -> list[SearchHit]:
        response = await self._http.send(
            "POST", f"{self.endpoint}/v1/search", json={"query": query, "n": clamp(limit, 1, MAX_N)}
        )
        data = self._http.json(response)
        if isinstance(data, dict) and data.get("error"):
            error = data["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise self._http.error(f"the search API answered with an error: {message or error}")
        return [
            SearchHit(
                title=plain(item.get("title")) or text(item.get("url")),
                url=text(item.get("url")),
                snippet=plain(item.get("snippet")),
                content=text(item.get("content")),
                published=text(item.get("time")),
            )
            for item in self._http.items(data, "results")
        ]
