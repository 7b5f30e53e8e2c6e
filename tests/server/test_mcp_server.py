"""The MCP server, driven by the official ``mcp`` client SDK: over streamable HTTP at ``/mcp`` on a real
server (progress notifications, the report and its sources, errors, the token, the rate limit), and over
stdio from ``python -m deepresearch mcp`` in its own process."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import httpx
import httpx2
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from pydantic import SecretStr

from deepresearch.server.jobs import JobStore
from tests.bench.scripts import FAIL, agent_script
from tests.server.conftest import API_KEY

TOKEN = "mcp-face-token-0123456789"
QUESTION = "How does BM25 rank documents?"
ROOT = Path(__file__).resolve().parents[2]


class Progress:
    """What the client's progress callback received."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.messages: list[str] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.values.append(progress)
        self.messages.append(message or "")


def check_report(result: Any, progress: Progress) -> str:
    """The checks every successful call shares; returns the job id."""
    assert not result.is_error, result.content
    report, sources = (block.text for block in result.content)
    structured = result.structured_content
    job_id = structured["job_id"]
    assert "BM25 ranks documents [1]" in report and "## References" in report
    assert structured["report"] == report
    assert structured["sources"][0]["n"] == 1 and structured["sources"][0]["url"].endswith("sqlite-fts5.md")
    assert sources.startswith(f"Sources of research job {job_id} (2 steps):")
    assert f"[1] {structured['sources'][0]['title']} — {structured['sources'][0]['url']}" in sources
    assert structured["usage"]["total_tokens"] > 0
    assert structured["outcome"] == "report" and "Outcome: report — 1 sources cited" in sources
    assert progress.messages[0] == f"research job {job_id} queued"
    assert "step 1: searching: BM25 ranking" in progress.messages
    assert "step 2: writing the report" in progress.messages
    assert progress.values == sorted(set(progress.values))  # strictly increasing, as the spec asks
    return str(job_id)


def test_deep_research_over_streamable_http(make_server, fake_llm):
    fake_llm.script = agent_script
    server = make_server(token=SecretStr(TOKEN))
    refused = httpx.post(server.url + "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert refused.status_code == 401  # the app's guard covers /mcp

    async def call() -> tuple[Any, Any, Progress]:
        progress = Progress()
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            streamable_http_client(server.url + "/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            listed = await session.list_tools()
            result = await session.call_tool(
                "deep_research", {"question": QUESTION, "max_steps": 5}, progress_callback=progress
            )
        return listed, result, progress

    listed, result, progress = asyncio.run(call())
    (tool,) = listed.tools
    assert tool.name == "deep_research" and "Markdown report" in (tool.description or "")
    assert set(tool.input_schema["properties"]) == {"question", "max_steps"}
    assert tool.input_schema["required"] == ["question"]
    job_id = check_report(result, progress)
    with server.client() as client:  # the same job the HTTP API shows, with its options
        job = client.get(f"/v1/research/{job_id}").json()
    assert job["status"] == "done" and job["options"] == {"max_steps": 5}
    assert job["report"]["markdown"] == result.structured_content["report"]


def test_failures_come_back_as_error_results(make_server, fake_llm):
    fake_llm.script = agent_script  # a question tagged FAIL gets 500 from the model every time
    server = make_server(rate_per_minute=2)

    async def calls() -> list[Any]:
        async with (
            streamable_http_client(server.url + "/mcp") as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            return [
                await session.call_tool("deep_research", {"question": QUESTION, "max_steps": 0}),
                await session.call_tool("deep_research", {"question": QUESTION, "base_url": "http://x"}),
                await session.call_tool("nope", {}),
                await session.call_tool("deep_research", {"question": f"{FAIL} q"}),
                await session.call_tool("deep_research", {"question": QUESTION}),
                await session.call_tool("deep_research", {"question": QUESTION}),
            ]

    bad_steps, extra_field, unknown, failed, admitted, limited = asyncio.run(calls())
    for result in (bad_steps, extra_field, unknown, failed, limited):
        assert result.is_error and result.structured_content is None
    assert "max_steps" in bad_steps.content[0].text
    assert "base_url: Extra inputs are not permitted" in extra_field.content[0].text
    assert "there is no tool 'nope'" in unknown.content[0].text
    assert "failed: " in failed.content[0].text and "research job" in failed.content[0].text
    assert not admitted.is_error  # the invalid calls were refused before they counted
    assert "too many research requests" in limited.content[0].text
    with server.client() as client:
        statuses = sorted(j["status"] for j in client.get("/v1/research").json()["jobs"])
    assert statuses == ["done", "failed"]


def test_deep_research_over_stdio(fake_llm, corpus_index, tmp_path):
    fake_llm.script = agent_script
    data_dir = tmp_path / "mcp-data"
    parameters = StdioServerParameters(
        command=sys.executable,
        args=[
            *("-m", "deepresearch", "mcp", "--data-dir", str(data_dir), "--workers", "1"),
            *("--base-url", fake_llm.base_url, "--model", "fake-model", "--api-key", API_KEY),
            *("--index", str(corpus_index)),
        ],
        cwd=tmp_path,
    )
    errors = tmp_path / "stderr.log"

    async def call() -> tuple[Any, Progress]:
        progress = Progress()
        with errors.open("w") as errlog:
            async with (
                stdio_client(parameters, errlog=errlog) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                result = await session.call_tool(
                    "deep_research", {"question": QUESTION}, progress_callback=progress
                )
        return result, progress

    result, progress = asyncio.run(call())
    job_id = check_report(result, progress)
    run_dir = data_dir / "runs" / job_id
    assert (run_dir / "report.md").read_text(encoding="utf-8") == result.structured_content["report"]
    store = JobStore(data_dir / "jobs.sqlite")
    try:
        job = store.get(job_id)
    finally:
        store.close()
    assert job is not None and job.status == "done" and job.client == "mcp"
    assert "Traceback" not in errors.read_text(encoding="utf-8")
    assert fake_llm.request_headers[-1]["authorization"] == f"Bearer {API_KEY}"
