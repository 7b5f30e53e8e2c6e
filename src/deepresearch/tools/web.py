"""``batch_web_surfer``: many searches, or many page reads, in one call.

The interface and the result layout are those the StepFun model was trained on (ARCHITECTURE.md):
``<batch_search_results>`` with per-query quotas and cross-query URL de-duplication, and
``<batch_open_results>``; every hit and every opened page carries ``<cite_index>`` — the source
registry's key for its URL, so the same page has the same key in every call (the reference derived
keys from result positions, and opened pages had none).

Each result also comes with a compact form for the context policy: search results without page
contents, opened pages reduced to their head. Nothing is lost by compaction because every opened page
is saved whole under ``workspace/pages/`` and the compact text says where.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator

from deepresearch.errors import DeepResearchError, ToolError
from deepresearch.fetch import Page
from deepresearch.search import DocumentStore, SearchHit
from deepresearch.sources import Source, normalize_url
from deepresearch.tools.base import Tool, ToolContext, ToolResult, tool_description
from deepresearch.tools.truncate import offload, truncate, truncation_marker

MAX_QUERIES = 20
MAX_URLS = 20
PER_QUERY_LIMIT = 20
SNIPPET_CHARS = 300
SEARCH_CONTENT_CHARS = 1024
PAGE_CHARS = 4096
COMPACT_PAGE_CHARS = 600
OPEN_CONCURRENCY = 8


class WebArgs(BaseModel):
    action: Literal["batch_search", "batch_open"] = Field(description="batch_search or batch_open")
    queries: list[str] | None = Field(default=None, description="batch_search: the search queries to run")
    urls: list[str] | None = Field(default=None, description="batch_open: the URLs to open and read")
    topk: int = Field(default=50, description="batch_search: total results over all queries, 1-200")

    @field_validator("queries", "urls", mode="before")
    @classmethod
    def _lenient_list(cls, value: Any) -> Any:
        """Models often send a JSON-encoded list, or one bare string."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    value = json.loads(text)
                except json.JSONDecodeError:
                    return [text]
            else:
                return [text] if text else []
        return value


def _clean(text: str) -> str:
    text = re.sub(r"[ \t]+", " ", text)
    return re.sub(r"\n{4,}", "\n\n\n", text).strip()


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _site(url: str) -> str:
    return urlsplit(url).netloc or urlsplit(url).scheme


def allocate(per_query: list[list[SearchHit]], topk: int) -> list[list[SearchHit]]:
    """De-duplicate URLs across queries (first occurrence wins, in query order), then give each query
    ``topk // N`` results and hand what is left round-robin to queries that have more."""
    seen: set[str] = set()
    unique: list[list[SearchHit]] = []
    for hits in per_query:
        kept = []
        for hit in hits:
            norm = normalize_url(hit.url)
            if hit.url and norm not in seen:
                seen.add(norm)
                kept.append(hit)
        unique.append(kept)
    if not unique:
        return []
    base = topk // len(unique)
    taken = [min(base, len(hits)) for hits in unique]
    left = topk - sum(taken)
    while left > 0:
        progressed = False
        for i, hits in enumerate(unique):
            if left > 0 and taken[i] < len(hits):
                taken[i] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    return [hits[:n] for hits, n in zip(unique, taken, strict=True)]


async def _search_all(queries: list[str], topk: int, ctx: ToolContext) -> list[list[SearchHit] | Exception]:
    backend = ctx.search
    if backend is None:
        raise ToolError("no search backend is configured for this run")
    limit = max(1, min(PER_QUERY_LIMIT, topk))

    async def one(query: str) -> list[SearchHit] | Exception:
        try:
            return await backend.search(query, limit=limit)
        except DeepResearchError as exc:
            return exc

    return list(await asyncio.gather(*(one(q) for q in queries)))


async def batch_search(args: WebArgs, ctx: ToolContext) -> ToolResult:
    queries = list(dict.fromkeys(q.strip() for q in (args.queries or []) if q and q.strip()))
    if not queries:
        raise ToolError("batch_search needs `queries`: a list of search queries")
    if len(queries) > MAX_QUERIES:
        raise ToolError(f"at most {MAX_QUERIES} queries per call (got {len(queries)}); split them")
    topk = max(1, min(200, args.topk))
    outcomes = await _search_all(queries, topk, ctx)
    errors = {i: o for i, o in enumerate(outcomes) if isinstance(o, Exception)}
    kept = allocate([o if isinstance(o, list) else [] for o in outcomes], topk)

    full, compact, summary = [], [], []
    cited: list[Source] = []
    total = sum(len(hits) for hits in kept)
    head = f"<batch_metadata>{len(queries)} queries, {total} results</batch_metadata>"
    for qi, (query, hits) in enumerate(zip(queries, kept, strict=True), start=1):
        meta = f"<query_metadata><query>{query}</query><result_count>{len(hits)}</result_count>"
        if qi - 1 in errors:
            meta += f"<error>{errors[qi - 1]}</error>"
        meta += "</query_metadata>"
        items_full, items_compact = [], []
        for ii, hit in enumerate(hits, start=1):
            source = ctx.cite(hit.url, title=hit.title, snippet=_one_line(hit.snippet or hit.content, 300))
            cited.append(source)
            common = (
                f'<item index="{ii}">\n<cite_index>{source.key}</cite_index><title>{hit.title}</title>'
                f"<url>{hit.url}</url><site>{_site(hit.url)}</site>"
            )
            if hit.published:
                common += f"<published_time>{hit.published}</published_time>"
            common += f"<snippet>{_one_line(hit.snippet or hit.content, SNIPPET_CHARS)}</snippet>"
            items_compact.append(common + "\n</item>")
            body = ""
            if hit.content:
                shown, cut = truncate(_clean(hit.content), SEARCH_CONTENT_CHARS)
                if cut:
                    path = offload(hit.content, ctx.workspace, f"search/{source.key}.md")
                    shown += truncation_marker(len(shown), len(hit.content), path)
                body = f"<content>{shown}</content>"
            items_full.append(common + body + "\n</item>")
        if hits:
            block_full = f"<items>\n{''.join(items_full)}\n</items>"
            block_compact = f"<items>\n{''.join(items_compact)}\n</items>"
        else:
            block_full = block_compact = "<no_results_found/>"
        full.append(f'<query_result index="{qi}">{meta}\n{block_full}\n</query_result>')
        compact.append(f'<query_result index="{qi}">{meta}\n{block_compact}\n</query_result>')
        summary.append(
            {"query": query, "count": len(hits), "error": str(errors[qi - 1]) if qi - 1 in errors else None}
        )
    if total == 0 and not errors:
        hint = (
            "\n<hint>No results. Rephrase the queries (fewer or different keywords, another language), "
            "or widen the scope.</hint>"
        )
    else:
        hint = ""
    text = "<batch_search_results>\n" + head + "\n" + "\n".join(full) + hint + "\n</batch_search_results>"
    small = (
        "<batch_search_results_compressed>\n"
        + head
        + "\n"
        + "\n".join(compact)
        + "\n</batch_search_results_compressed>"
    )
    return ToolResult(
        text=text,
        compact=small,
        is_error=len(errors) == len(queries),
        data={"action": "batch_search", "queries": summary, "results": total},
        sources=cited,
    )


async def _read(url: str, ctx: ToolContext) -> Page:
    if isinstance(ctx.search, DocumentStore):
        page = await ctx.search.get_document(url)
        if page is not None:
            return page
    if ctx.fetcher is None:
        raise ToolError("no fetcher is configured for this run")
    return await ctx.fetcher.fetch(url)


async def batch_open(args: WebArgs, ctx: ToolContext) -> ToolResult:
    urls = list(dict.fromkeys(u.strip() for u in (args.urls or []) if u and u.strip()))
    if not urls:
        raise ToolError("batch_open needs `urls`: a list of URLs to open")
    if len(urls) > MAX_URLS:
        raise ToolError(f"at most {MAX_URLS} URLs per call (got {len(urls)}); split them")
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def one(url: str) -> Page | Exception:
        async with gate:
            try:
                return await _read(url, ctx)
            except DeepResearchError as exc:
                return exc

    pages = await asyncio.gather(*(one(u) for u in urls))
    full, compact, opened = [], [], []
    cited: list[Source] = []
    for i, (url, page) in enumerate(zip(urls, pages, strict=True), start=1):
        if isinstance(page, Exception):
            block = (
                f'<url_result index="{i}"><error><code>{type(page).__name__}</code>'
                f"<message>{page}</message><failed_url>{url}</failed_url></error></url_result>"
            )
            full.append(block)
            compact.append(block)
            opened.append({"url": url, "ok": False, "error": str(page)})
            continue
        text = _clean(page.text)
        source = ctx.cite(url, title=page.title, snippet=_one_line(text, 200), fetched=True)
        cited.append(source)
        path = offload(text, ctx.workspace, f"pages/{source.key}.md")
        shown, cut = truncate(text, PAGE_CHARS)
        if cut:
            shown += truncation_marker(len(shown), len(text), path)
        head = (
            f'<url_result index="{i}">\n<cite_index>{source.key}</cite_index>'
            f"<page_metadata><url>{url}</url><host>{_site(url)}</host></page_metadata>"
            f"<title>{page.title}</title>"
        )
        full.append(f"{head}\n<content>{shown}</content>\n</url_result>")
        small, _ = truncate(text, COMPACT_PAGE_CHARS)
        compact.append(
            f"{head}\n<content>{small}\n… [compacted to save context; the whole page is in the "
            f"workspace at {path}]</content>\n</url_result>"
        )
        opened.append({"url": url, "ok": True, "key": source.key, "chars": len(text), "saved": path})
    ok = sum(1 for o in opened if o["ok"])
    meta = (
        f"<batch_metadata><total_urls>{len(urls)}</total_urls><success_count>{ok}</success_count>"
        f"<failure_count>{len(urls) - ok}</failure_count></batch_metadata>"
    )
    text = "<batch_open_results>\n" + meta + "\n" + "\n".join(full) + "\n</batch_open_results>"
    small = (
        "<batch_open_results_compressed>\n"
        + meta
        + "\n"
        + "\n".join(compact)
        + "\n</batch_open_results_compressed>"
    )
    return ToolResult(
        text=text,
        compact=small,
        is_error=ok == 0,
        data={"action": "batch_open", "opened": opened},
        sources=cited,
    )


async def run_web(args: WebArgs, ctx: ToolContext) -> ToolResult:
    if args.action == "batch_search":
        return await batch_search(args, ctx)
    return await batch_open(args, ctx)


SHOWN_ITEMS = 3
"""Queries or URLs named in the line that describes a call; the rest are an ellipsis."""
SHOWN_ITEM_CHARS = 50
"""Characters of each one shown there."""


def describe_web(arguments: dict[str, Any]) -> str:
    """``searching: bm25; fts5`` or ``opening 2 page(s): https://a, https://b``."""
    action = arguments.get("action")
    items = arguments.get("urls" if action == "batch_open" else "queries")
    items = items if isinstance(items, list) else [] if items is None else [items]
    shown = [str(item)[:SHOWN_ITEM_CHARS] for item in items[:SHOWN_ITEMS]]
    more = " …" if len(items) > SHOWN_ITEMS else ""
    if action == "batch_open":
        return f"opening {len(items)} page(s)" + (": " + ", ".join(shown) + more if shown else "")
    if action == "batch_search":
        return "searching" + (": " + "; ".join(shown) + more if shown else "")
    return "batch_web_surfer" + (f" {str(action)[:SHOWN_ITEM_CHARS]}" if action else "")


def summarize_web(result: ToolResult) -> str | None:
    """``found 7 result(s)`` or ``opened 3 page(s), 1 failed``, read from the result's ``data``."""
    action = result.data.get("action")
    if action == "batch_search":
        return f"found {result.data.get('results', 0)} result(s)"
    if action == "batch_open":
        opened = result.data.get("opened") or []
        ok = sum(1 for page in opened if isinstance(page, dict) and page.get("ok"))
        return f"opened {ok} page(s)" + (f", {len(opened) - ok} failed" if ok < len(opened) else "")
    return None


def search_arguments(query: str) -> dict[str, Any]:
    """A ``batch_search`` of one query: the loop's guard search."""
    return {"action": "batch_search", "queries": [query]}


def web_tool() -> Tool:
    return Tool(
        name="batch_web_surfer",
        args=WebArgs,
        run=run_web,
        description=tool_description("batch_web_surfer"),
        describer=describe_web,
        summarizer=summarize_web,
        search_arguments=search_arguments,
    )
