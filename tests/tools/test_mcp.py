"""MCP client tools: real MCP servers (``tests/fakes/mcp_server.py``) in their own processes, over stdio
and over streamable HTTP, driven by the scripted model through whole runs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deepresearch.config import McpServer, Settings, load_settings
from deepresearch.errors import ConfigError, LLMError
from deepresearch.events import parse_event
from deepresearch.llm import jsonmode, textmode
from deepresearch.research import research, resume
from deepresearch.runs import read_info
from deepresearch.tools.mcp import McpArguments, open_servers, tool_name
from deepresearch.tools.registry import default_tools
from tests.agent.scripts import turn
from tests.fakes.mcp_server import PNG_1X1
from tests.fakes.openai_server import FakeOpenAI, Reply

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "mcp-token-secret-5151"
ENV_SECRET = "env-secret-4242"


def start_http_mcp() -> tuple[subprocess.Popen[str], str]:
    """The fake MCP server over streamable HTTP in its own process, behind ``Bearer TOKEN``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.mcp_server", "--http", "--port", "0", "--token", TOKEN],
        cwd=ROOT,
        env={**os.environ, "FAKE_MCP_LABEL": "http"},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("listening on "):
        stop(process)
        pytest.fail(f"the fake MCP server did not start: {line!r}")
    return process, line.split()[-1]


def stop(process: subprocess.Popen[str]) -> None:
    process.kill()
    process.wait(timeout=10)
    if process.stdout is not None:
        process.stdout.close()


@pytest.fixture(scope="session")
def http_mcp() -> Iterator[str]:
    """One HTTP fake MCP server for the session; yields its URL."""
    process, url = start_http_mcp()
    yield url
    stop(process)


def stdio_entry(tmp_path: Path, name: str = "fake", **extra: Any) -> dict[str, Any]:
    """A ``[[mcp_servers]]`` entry that starts the fake server over stdio and has it write its pid."""
    return {
        "name": name,
        "command": sys.executable,
        "args": ["-m", "tests.fakes.mcp_server"],
        "cwd": str(ROOT),
        "env": {
            "FAKE_MCP_LABEL": "stdio",
            "FAKE_MCP_PID_FILE": str(tmp_path / f"{name}.pid"),
            "API_TOKEN": ENV_SECRET,
        },
        "timeout_s": 20,
        **extra,
    }


def http_entry(url: str, token: str = TOKEN, **extra: Any) -> dict[str, Any]:
    return {"name": "remote", "url": url, "headers": {"Authorization": f"Bearer {token}"}, **extra}


@pytest.fixture
def make_settings(fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path):
    def make(**overrides: Any) -> Settings:
        flags = {
            "base_url": fake_llm.base_url,
            "model": "fake-model",
            "index": corpus_index,
            "out": tmp_path / "run",
            "max_retries": 0,
            "request_timeout": 30,
            **overrides,
        }
        return load_settings(flags, env={})

    return make


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def server_pid(tmp_path: Path, name: str = "fake") -> int:
    return int((tmp_path / f"{name}.pid").read_text())


def tool_messages(request: dict[str, Any]) -> dict[str, str]:
    """tool_call_id → content of each tool message, with the call's name as key instead."""
    names = {
        call["id"]: call["function"]["name"]
        for message in request["messages"]
        for call in message.get("tool_calls") or []
    }
    return {names[m["tool_call_id"]]: m["content"] for m in request["messages"] if m["role"] == "tool"}


def run_files_text(run_dir: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in run_dir.rglob("*") if p.is_file())


def mcp_script(request: dict[str, Any]) -> Reply:
    n = turn(request)
    if n == 0:
        return Reply(
            tool_calls=[("fake__lookup", {"term": "BM25"}), ("fake__fail", {"reason": "no such term"})]
        )
    if n == 1:
        return Reply(tool_calls=[("fake__long_text", {"chars": 5000}), ("fake__picture", {})])
    return Reply(content="<answer>BM25 is a ranking function.</answer>")


# --- whole runs


def test_research_uses_stdio_mcp_tools(fake_llm, make_settings, tmp_path):
    fake_llm.script = mcp_script
    settings = make_settings(mcp_servers=[stdio_entry(tmp_path)], tool_result_max_chars=1000)

    result = asyncio.run(research("What is BM25?", settings))

    # step 3 is the loop guard's search of the question (no source seen by then); the model makes 3 calls
    assert result.status == "done" and result.steps == 4
    first, second, third = fake_llm.requests
    # every MCP tool is offered with the server's own schema and description, beside the built-ins
    offered = {t["function"]["name"]: t["function"] for t in first["tools"]}
    assert set(default_tools()) < set(offered)
    lookup = offered["fake__lookup"]
    assert lookup["description"] == "Look a term up in the fake glossary."
    assert lookup["parameters"]["properties"]["term"]["type"] == "string"
    assert lookup["parameters"]["required"] == ["term"]
    dotted = offered["fake__dotted_name"]  # "dotted.name", sanitized; its 3 000-char description cut
    assert dotted["description"].startswith("A tool whose name") and len(dotted["description"]) <= 1030
    # results reach the next request: text, the server's error as an Error: result, env delivered
    results = tool_messages(second)
    assert results["fake__lookup"] == "BM25: a definition from the stdio glossary."
    assert results["fake__fail"].startswith("Error: ") and "no such term" in results["fake__fail"]
    # a long result is cut like any tool's, the whole text kept in the workspace
    later = tool_messages(third)
    assert "[truncated: showing" in later["fake__long_text"] and len(later["fake__long_text"]) < 1400
    [kept] = (settings.out / "workspace" / "tool_outputs").glob("*fake__long_text*")
    assert len(kept.read_text()) == 5000
    assert (
        later["fake__picture"] == f"A one-pixel image:\n[image: image/png, {len(PNG_1X1)} bytes, not shown]"
    )

    events = [parse_event(line) for line in (settings.out / "events.jsonl").read_text().splitlines()]
    assert "fake__lookup" in events[0].tools
    failed = next(e for e in events if e.type == "tool_result" and e.name == "fake__fail")
    assert failed.is_error and failed.error_type == "McpToolError"
    assert failed.data == {"error_type": "McpToolError", "server": "fake", "tool": "fail", "blocks": ["text"]}
    # the env's values are secrets: named in the recorded settings, never written
    recorded = events[0].settings
    assert recorded["mcp_servers"][0]["name"] == "fake" and "env" not in recorded["mcp_servers"][0]
    assert "mcp_servers.fake.env.API_TOKEN" in recorded["keys_set"]
    assert ENV_SECRET not in run_files_text(settings.out)
    # the stdio server did not outlive the run
    assert not alive(server_pid(tmp_path))


def test_stdio_server_stops_when_the_run_fails(fake_llm, make_settings, tmp_path):
    settings = make_settings(mcp_servers=[stdio_entry(tmp_path)])  # no script: the model answers 500

    with pytest.raises(LLMError):
        asyncio.run(research("What is BM25?", settings))

    assert read_info(settings.out).status == "failed"
    assert "fake__lookup" in {t["function"]["name"] for t in fake_llm.requests[0]["tools"]}
    assert not alive(server_pid(tmp_path))


def test_a_server_that_dies_mid_run_only_fails_its_calls(fake_llm, make_settings):
    process, url = start_http_mcp()

    def script(request: dict[str, Any]) -> Reply:
        n = turn(request)
        if n == 1:  # the server dies between two calls, its event stream and session with it
            stop(process)
        if n < 2:
            return Reply(tool_calls=[("remote__lookup", {"term": f"try {n}"})])
        return Reply(content="<answer>Answered without the glossary.</answer>")

    fake_llm.script = script
    try:
        result = asyncio.run(research("q", make_settings(mcp_servers=[http_entry(url, timeout_s=5)])))
    finally:
        stop(process)

    assert result.status == "done" and result.origin == "answer"
    assert (
        tool_messages(fake_llm.requests[1])["remote__lookup"] == "try 0: a definition from the http glossary."
    )
    gone = tool_messages(fake_llm.requests[2])["remote__lookup"]
    assert gone.startswith("Error: ") and "MCP server 'remote'" in gone


def test_research_uses_http_mcp_tools_and_resumes_with_them(fake_llm, make_settings, http_mcp):
    def script(request: dict[str, Any]) -> Reply:
        if turn(request) == 0:
            return Reply(tool_calls=[("remote__lookup", {"term": "FTS5"})])
        return Reply(status=400, body='{"error": {"message": "the model broke"}}')

    fake_llm.script = script
    settings = make_settings(mcp_servers=[http_entry(http_mcp, tools=["lookup"])])
    with pytest.raises(LLMError):
        asyncio.run(research("What is FTS5?", settings))
    assert tool_messages(fake_llm.requests[1]) == {
        "remote__lookup": "FTS5: a definition from the http glossary."
    }
    assert [t["function"]["name"] for t in fake_llm.requests[0]["tools"]][4:] == ["remote__lookup"]
    assert TOKEN not in run_files_text(settings.out)

    # the recorded settings hold no header values, so resuming without them is refused by the server
    with pytest.raises(ConfigError, match="MCP server 'remote'"):
        asyncio.run(resume(settings.out))
    fake_llm.script = lambda request: Reply(content="<answer>FTS5 is SQLite's full-text index.</answer>")
    result = asyncio.run(resume(settings.out, settings))
    assert result.status == "done"
    assert "remote__lookup" in {t["function"]["name"] for t in fake_llm.requests[-1]["tools"]}


def test_json_mode_offers_mcp_tools(fake_llm, make_settings, http_mcp):
    def act(name: str, arguments: dict[str, Any]) -> Reply:
        return Reply(content=json.dumps({"thought": "t", "action": {"name": name, "arguments": arguments}}))

    def script(request: dict[str, Any]) -> Reply:
        if turn(request) == 0:
            return act("remote__lookup", {"term": "BM25"})
        return act("final_answer", {"answer": "BM25 ranks documents."})

    fake_llm.script = script
    settings = make_settings(tool_mode="json", mcp_servers=[http_entry(http_mcp)])

    assert asyncio.run(research("What is BM25?", settings)).status == "done"
    first, second = fake_llm.requests
    branches = first["response_format"]["json_schema"]["schema"]["properties"]["action"]["anyOf"]
    lookup = next(b for b in branches if b["properties"]["name"] == {"const": "remote__lookup"})
    term = lookup["properties"]["arguments"]["properties"]["term"]
    assert term["type"] == "string" and term["maxLength"] <= jsonmode.STRING_MAX_CHARS
    assert "remote__lookup" in first["messages"][0]["content"]
    response = second["messages"][-1]["content"]
    assert response.startswith('<tool_response name="remote__lookup">') and "http glossary" in response


# --- servers that cannot be used


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"name": "ghost", "command": "/nonexistent/mcp-server"}, "FileNotFoundError"),
        (
            {
                "name": "crashy",
                "command": sys.executable,
                "args": ["-c", "import sys; sys.exit('boom: no db')"],
            },
            "boom: no db",  # the server's stderr is quoted
        ),
        ({"name": "nowhere", "url": "http://127.0.0.1:9/mcp", "timeout_s": 5}, "ConnectError"),
    ],
    ids=["missing-command", "exits-at-once", "unreachable-url"],
)
def test_a_server_that_cannot_start_stops_the_run_before_it_starts(make_settings, entry, message, tmp_path):
    settings = make_settings(mcp_servers=[stdio_entry(tmp_path), entry])

    with pytest.raises(ConfigError, match=f"MCP server '{entry['name']}'") as caught:
        asyncio.run(research("q", settings))

    assert message in str(caught.value) and "could not be started" in str(caught.value)
    assert not settings.out.exists()
    assert not alive(server_pid(tmp_path))  # the server opened before it was stopped again


def test_wrong_token_and_unknown_allowlisted_tool_are_config_errors(make_settings, http_mcp, tmp_path):
    with pytest.raises(ConfigError, match=r"MCP server 'remote'.*could not be started"):
        asyncio.run(research("q", make_settings(mcp_servers=[http_entry(http_mcp, token="wrong")])))
    with pytest.raises(ConfigError, match="has no tool named 'nonexistent'; it offers: lookup, fail"):
        asyncio.run(research("q", make_settings(mcp_servers=[http_entry(http_mcp, tools=["nonexistent"])])))
    assert not (tmp_path / "run").exists()


# --- one call at a time


def test_timeouts_and_dead_servers_become_error_results(http_mcp, tmp_path):
    async def scenario() -> None:
        servers = [
            McpServer.model_validate(http_entry(http_mcp, timeout_s=0.5)),
            McpServer.model_validate(stdio_entry(tmp_path)),
        ]
        mcp = await open_servers(servers)
        try:
            tools = {tool.name: tool for tool in mcp.tools}
            slow = await tools["remote__nap"].run(McpArguments.model_validate({"seconds": 3}), None)
            assert slow.is_error and slow.data["error_type"] == "McpTimeout"
            assert slow.text == "Error: nap on MCP server 'remote' did not answer within 0.5 s"
            after = await tools["remote__lookup"].run(McpArguments.model_validate({"term": "x"}), None)
            assert after.text == "x: a definition from the http glossary." and not after.is_error

            os.kill(server_pid(tmp_path), signal.SIGKILL)
            gone = await tools["fake__lookup"].run(McpArguments.model_validate({"term": "x"}), None)
            assert gone.is_error and gone.text.startswith("Error: lookup on MCP server 'fake' failed")
            bad = await tools["remote__lookup"].run(McpArguments.model_validate({"word": "x"}), None)
            assert bad.is_error and "term" in bad.text  # the server validates the arguments
        finally:
            await mcp.aclose()

    asyncio.run(scenario())


def test_tool_names_fit_openai_and_never_collide():
    assert tool_name("docs", "search", set()) == "docs__search"
    assert tool_name("docs", "search.v2", set()) == "docs__search_v2"
    twin = tool_name("docs", "search v2", {"docs__search_v2"})
    assert twin.startswith("docs__search_v2_") and twin != "docs__search_v2"
    long = tool_name("docs", "x" * 100, set())
    assert len(long) == 64 and long != tool_name("docs", "x" * 99, set())
    assert all(c.isalnum() or c in "_-" for c in tool_name("d", "ünï/cödé", set()))


def test_json_mode_schema_compiles_with_mcp_tools(http_mcp):
    async def schemas() -> list[dict[str, Any]]:
        mcp = await open_servers([McpServer.model_validate(http_entry(http_mcp))])
        try:
            return [tool.schema() for tool in [*default_tools().values(), *mcp.tools]]
        finally:
            await mcp.aclose()

    tools = asyncio.run(schemas())
    schema = jsonmode.action_schema(tools)
    names = [b["properties"]["name"]["const"] for b in schema["properties"]["action"]["anyOf"]]
    assert "remote__lookup" in names and "remote__picture" in names and "remote__dotted_name" in names
    assert "remote__nap" in jsonmode.instructions(tools) and "remote__nap" in textmode.instructions(tools)
    llguidance = pytest.importorskip("llguidance")
    grammar = llguidance.LLMatcher.grammar_from_json_schema(schema)
    assert llguidance.LLMatcher.validate_grammar_with_warnings(grammar) == (False, [])


# --- configuration


def test_mcp_servers_from_toml_keep_their_secrets_out_of_public(tmp_path):
    config = tmp_path / "deepresearch.toml"
    config.write_text(
        """
[[mcp_servers]]
name = "files"
command = "npx"
args = ["-y", "@modelcontextprotocol/server-filesystem", "/data"]
env = { FS_TOKEN = "fs-secret-1" }

[[mcp_servers]]
name = "search-api"
url = "https://mcp.example.com/mcp"
headers = { Authorization = "Bearer http-secret-2" }
tools = ["search"]
timeout_s = 10
"""
    )
    settings = load_settings({}, env={}, config_file=config)
    files, remote = settings.mcp_servers
    assert files.command == "npx" and files.env["FS_TOKEN"].get_secret_value() == "fs-secret-1"
    assert (
        remote.url == "https://mcp.example.com/mcp" and remote.tools == ["search"] and remote.timeout_s == 10
    )
    public = settings.public()
    text = json.dumps(public) + repr(settings)
    assert "fs-secret-1" not in text and "http-secret-2" not in text
    assert public["keys_set"] == [
        "mcp_servers.files.env.FS_TOKEN",
        "mcp_servers.search-api.headers.Authorization",
    ]
    assert public["mcp_servers"][1] == {
        "name": "search-api",
        "command": None,
        "args": [],
        "cwd": None,
        "url": "https://mcp.example.com/mcp",
        "tools": ["search"],
        "timeout_s": 10.0,
    }
    # what a resumed run reads back: the same servers, without the secrets
    again = Settings.model_validate({k: v for k, v in public.items() if k in Settings.model_fields})
    assert [s.name for s in again.mcp_servers] == ["files", "search-api"] and not again.mcp_servers[0].env


@pytest.mark.parametrize(
    "entries, message",
    [
        ([{"name": "a", "command": "x", "url": "http://h/mcp"}], "either `command`"),
        ([{"name": "a"}], "either `command`"),
        ([{"name": "a", "url": "ftp://h/mcp"}], "must start with http"),
        ([{"name": "a", "url": "http://h/mcp", "env": {"K": "v"}}], "go with `command`"),
        ([{"name": "a", "command": "x", "headers": {"K": "v"}}], "go with `url`"),
        ([{"name": "has space", "command": "x"}], r"mcp_servers\.0\.name"),
        ([{"name": "a", "command": "x", "timeout_s": 0}], r"mcp_servers\.0\.timeout_s"),
        ([{"name": "a", "command": "x"}, {"name": "a", "url": "http://h/mcp"}], "unique: a"),
    ],
)
def test_bad_mcp_server_entries_are_config_errors(entries, message):
    with pytest.raises(ConfigError, match=message):
        load_settings({"mcp_servers": entries}, env={})
