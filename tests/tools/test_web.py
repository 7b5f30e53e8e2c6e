"""``batch_web_surfer`` owns what it shows: the sources it returns in its result (keys final when the
text is written), the line a person sees for a call and for its result, and the guard search."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from deepresearch.llm.messages import ToolCall
from deepresearch.search.local import LocalIndex
from deepresearch.sources import SourceRegistry
from deepresearch.tools.base import ToolContext, ToolResult
from deepresearch.tools.execute import execute
from deepresearch.tools.registry import default_tools, describe_call, summarize_call
from deepresearch.tools.web import web_tool

TOOLS = default_tools()


def run(call: ToolCall, ctx: ToolContext) -> ToolResult:
    return asyncio.run(execute(call, TOOLS, ctx))


def test_search_then_open_return_their_sources_with_the_keys_the_text_shows(corpus_index: Path, tmp_path):
    registry = SourceRegistry()
    with LocalIndex(corpus_index) as index:
        ctx = ToolContext(workspace=tmp_path, sources=registry, state={}, step=1, search=index)
        search = {"action": "batch_search", "queries": ["BM25 ranking", "FTS5"], "topk": 6}
        found = run(ToolCall("c1", "batch_web_surfer", json.dumps(search)), ctx)
        assert not found.is_error and found.sources
        keys = re.findall(r"<cite_index>(web_[0-9a-f]+)</cite_index>", found.text)
        assert keys == [source.key for source in found.sources]
        assert all(registry.get(key) is source for key, source in zip(keys, found.sources, strict=True))
        assert not any(source.fetched for source in found.sources) and {s.step for s in found.sources} == {1}
        assert found.state is None and not hasattr(ctx, "new_sources")

        url = found.sources[0].url
        opened = run(
            ToolCall("c2", "batch_web_surfer", json.dumps({"action": "batch_open", "urls": [url]})), ctx
        )
    assert not opened.is_error and [s.url for s in opened.sources] == [url]
    assert opened.sources[0].key == found.sources[0].key and opened.sources[0].fetched
    assert f"<cite_index>{opened.sources[0].key}</cite_index>" in opened.text
    assert len(registry) == len({s.key for s in found.sources})  # opening a known page adds no source

    assert summarize_call(TOOLS, "batch_web_surfer", found) == f"found {len(found.sources)} result(s)"
    assert summarize_call(TOOLS, "batch_web_surfer", opened) == "opened 1 page(s)"


def test_a_failed_call_returns_no_sources(tmp_path):
    ctx = ToolContext(workspace=tmp_path, sources=SourceRegistry(), state={})  # no search backend
    result = run(ToolCall("c1", "batch_web_surfer", '{"action": "batch_search", "queries": ["x"]}'), ctx)
    assert result.is_error and "no search backend" in result.text
    assert result.sources == [] and len(ctx.sources) == 0
    assert web_tool().summarize(result) == "batch_web_surfer failed"


def test_calls_are_described_in_one_short_line_whatever_the_model_wrote():
    web = web_tool()
    queries = json.dumps({"action": "batch_search", "queries": ["a" * 80, "b", "c", "d"]})
    assert web.describe(queries) == f"searching: {'a' * 50}; b; c …"
    assert web.describe('{"action": "batch_open", "urls": "https://a"}') == "opening 1 page(s): https://a"
    assert web.describe('{"action": "batch_open"}') == "opening 0 page(s)"
    assert web.describe('{"action": "browse"}') == "batch_web_surfer browse"
    assert web.describe('["not", "an", "object"]') == "batch_web_surfer"
    assert web.describe("{broken") == "batch_web_surfer (unparsable arguments)"
    hostile = {
        "todo": ['{"updates": 5}', '{"updates": ["x"]}', '{"updates": null}'],
        "file": ['{"action": ["read"], "path": {"a": 1}}', "{}"],
        "shell": ['{"cmd": 12}', '{"cmd": null}'],
        "batch_web_surfer": ['{"action": 3, "queries": {"q": 1}}', '{"queries": [null, 1]}'],
    }
    lines = [describe_call(TOOLS, name, raw) for name, calls in hostile.items() for raw in calls]
    assert lines[:3] == ["todo update", "todo update", "todo read"]
    assert all(isinstance(line, str) and line for line in lines)


def test_the_guard_search_is_a_search_of_the_question():
    arguments = web_tool().search_arguments
    assert arguments is not None
    assert arguments("why is the sky blue") == {"action": "batch_search", "queries": ["why is the sky blue"]}
    assert [t.name for t in TOOLS.values() if t.search_arguments is not None] == ["batch_web_surfer"]
