"""The test harness itself: the fake server's contract (running out of script, helpers, the
separate-process mode) and the guards every test runs under (loopback only, isolated environment)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.openai_server import FakeOpenAI, Reply

ROOT = Path(__file__).resolve().parents[2]


def echo_last_tool(request: dict[str, Any]) -> Reply:
    """Used as ``--script`` by the subprocess test."""
    return Reply(content=f"seen: {FakeOpenAI.last_tool_text(request)}")


def post(fake: FakeOpenAI, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{fake.base_url}/chat/completions", json=body, timeout=10)


def test_empty_queue_and_no_script_is_a_clear_500(fake_llm: FakeOpenAI) -> None:
    response = post(fake_llm, {"model": "m", "messages": []})

    assert response.status_code == 500
    assert "script ran out" in response.json()["error"]["message"]


def test_queue_first_then_script(fake_llm: FakeOpenAI) -> None:
    fake_llm.enqueue(Reply(content="queued"), lambda request: Reply(content=request["model"]))
    fake_llm.script = lambda request: Reply(content="scripted")

    answers = [post(fake_llm, {"model": "m", "messages": []}).json() for _ in range(3)]

    assert [a["choices"][0]["message"]["content"] for a in answers] == ["queued", "m", "scripted"]
    assert fake_llm.pending == 0 and len(fake_llm.requests) == 3
    fake_llm.reset()
    assert fake_llm.script is None and fake_llm.requests == []


def test_tool_result_helpers() -> None:
    request = {
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "tool", "tool_call_id": "c1", "content": "first <cite_index>web_1</cite_index>"},
            {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "second"}]},
        ]
    }
    text_mode = {"messages": [{"role": "user", "content": '<tool_response name="x">r</tool_response>'}]}

    assert FakeOpenAI.tool_results(request) == {"c1": "first <cite_index>web_1</cite_index>", "c2": "second"}
    assert FakeOpenAI.last_tool_text(request) == "second"
    assert FakeOpenAI.last_tool_text(text_mode) == '<tool_response name="x">r</tool_response>'
    assert FakeOpenAI.last_tool_text({"messages": []}) == ""


@pytest.mark.slow
def test_runs_as_a_separate_process() -> None:
    command = [sys.executable, "-m", "tests.fakes.openai_server", "--script", f"{__name__}:echo_last_tool"]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("listening on http://127.0.0.1:")
            body = {"model": "m", "messages": [{"role": "tool", "tool_call_id": "c", "content": "result 42"}]}
            response = httpx.post(f"{line.split()[-1]}/chat/completions", json=body, timeout=10)
            assert response.json()["choices"][0]["message"]["content"] == "seen: result 42"
        finally:
            process.terminate()
        assert process.wait(timeout=10) == 0


@pytest.mark.parametrize(
    "address", [("93.184.216.34", 80), ("10.0.0.1", 443), ("example.com", 80), ("::2", 80)]
)
def test_only_loopback_connections(address: tuple[str, int]) -> None:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family) as sock:
        with pytest.raises(RuntimeError, match="loopback"):
            sock.connect(address)
        with pytest.raises(RuntimeError, match="loopback"):
            sock.connect_ex(address)
    with pytest.raises(RuntimeError, match="loopback"):
        socket.create_connection(address, timeout=1)
    with pytest.raises(RuntimeError, match="loopback"):
        host = f"[{address[0]}]" if family == socket.AF_INET6 else address[0]
        httpx.get(f"http://{host}:{address[1]}/", timeout=1)


def test_environment_is_isolated() -> None:
    assert not [name for name in os.environ if name.startswith(("DEEPRESEARCH_", "OPENAI_"))]
    home = Path(os.environ["HOME"])
    assert Path.home() == home and home != ROOT
    for variable in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        assert Path(os.environ[variable]).is_relative_to(home)
