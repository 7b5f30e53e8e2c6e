"""``kill -9`` a real ``deepresearch research`` process mid-run, then ``resume`` it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deepresearch.config import load_settings
from deepresearch.errors import RunStoreError
from deepresearch.events import parse_event
from deepresearch.research import research, resume
from deepresearch.runs import read_info
from tests.agent.scripts import research_script, turn
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.test_research import check_messages_shape

pytestmark = pytest.mark.slow
QUESTION = "How does BM25 rank documents?"


def settings_for(fake: FakeOpenAI, index: Path, out: Path) -> Any:
    return load_settings(
        {
            "base_url": fake.base_url,
            "model": "fake-model",
            "index": index,
            "out": out,
            "retry_base_delay": 0.001,
            "retry_max_delay": 0.01,
        },
        env={},
    )


def start_agent(fake: FakeOpenAI, index: Path, out: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "deepresearch",
        "research",
        QUESTION,
        "--base-url",
        fake.base_url,
        "--model",
        "fake-model",
        "--index",
        str(index),
        "--out",
        str(out),
        "--quiet",
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ))


def wait_for(condition: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 90
    while not condition():
        if process.poll() is not None:
            _, err = process.communicate()
            raise AssertionError(f"agent exited early: {err.decode()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            process.communicate()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def held_at(turn_number: int, hold: dict[str, bool]) -> Callable[[dict[str, Any]], Reply]:
    """``research_script``, except that the reply at ``turn_number`` stalls while ``hold["on"]``."""

    def script(request: dict[str, Any]) -> Reply:
        reply = research_script(request)
        if turn(request) == turn_number and hold["on"]:
            reply.delay = 120
        return reply

    return script


def events(run: Path) -> list[Any]:
    lines = (run / "events.jsonl").read_text().splitlines()
    parsed = []
    for line in lines:
        with contextlib.suppress(ValueError):  # a torn last line is what kill -9 leaves
            parsed.append(parse_event(line))
    return parsed


def kill(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)  # reaps it and closes the pipes
    assert process.returncode == -signal.SIGKILL


def test_kill_while_waiting_for_the_model_then_resume_gives_the_same_report(fake_llm, corpus_index, tmp_path):
    fake_llm.script = research_script
    reference = asyncio.run(research(QUESTION, settings_for(fake_llm, corpus_index, tmp_path / "reference")))

    fake_llm.reset()
    hold = {"on": True}

    fake_llm.script = held_at(4, hold)
    run = tmp_path / "killed"
    agent = start_agent(fake_llm, corpus_index, run)
    wait_for(lambda: len(fake_llm.requests) >= 5, agent, "the fifth model call")
    kill(agent)
    assert read_info(run).status == "interrupted"
    before = events(run)
    assert [e.type for e in before].count("llm_call") == 4

    hold["on"] = False
    result = asyncio.run(resume(run, settings_for(fake_llm, corpus_index, run)))
    assert result.status == "done"
    assert result.report == reference.report
    after = events(run)
    assert after[: len(before)] == before  # the log was only appended to
    types = [e.type for e in after]
    assert types.count("run_resumed") == 1 and types.count("llm_call") == 6
    assert len({e.call_id for e in after if e.type == "tool_result"}) == types.count("tool_result") == 7

    def plan(path: Path) -> dict[str, Any]:
        return {
            k: {f: v for f, v in step.items() if not f.endswith("_at")}
            for k, step in json.loads(path.read_text()).items()
        }

    assert plan(run / "todo.json") == plan(tmp_path / "reference" / "todo.json")
    check_messages_shape(json.loads((run / "messages.json").read_text()))
    assert read_info(run).status == "done"
    with pytest.raises(RunStoreError, match="already finished"):
        asyncio.run(resume(run, settings_for(fake_llm, corpus_index, run)))


def test_kill_during_a_tool_call_reruns_only_the_unfinished_call(fake_llm, corpus_index, tmp_path):
    def slow_shell(request: dict[str, Any]) -> Reply:
        reply = research_script(request)
        if turn(request) == 4:
            reply.tool_calls = [reply.tool_calls[0], ("shell", {"cmd": "sleep 2; python3 -c 'print(6*7)'"})]
        return reply

    fake_llm.script = slow_shell
    run = tmp_path / "killed"
    agent = start_agent(fake_llm, corpus_index, run)

    def patch_done_shell_running() -> bool:
        evs = events(run) if (run / "events.jsonl").exists() else []
        return any(e.type == "tool_result" and e.name == "file" and e.step == 5 for e in evs) and any(
            e.type == "tool_call" and e.name == "shell" and e.step == 5 for e in evs
        )

    wait_for(patch_done_shell_running, agent, "the patch to finish while the shell call runs")
    kill(agent)
    shell_call = next(e for e in events(run) if e.type == "tool_call" and e.name == "shell")
    assert not any(e.type == "tool_result" and e.call_id == shell_call.call_id for e in events(run))

    result = asyncio.run(resume(run, settings_for(fake_llm, corpus_index, run)))
    assert result.status == "done" and "The computed check gave 42." in result.report
    after = events(run)
    resumed = next(e for e in after if e.type == "run_resumed")
    assert resumed.pending_calls == [shell_call.call_id]
    file_results = [e for e in after if e.type == "tool_result" and e.step == 5 and e.name == "file"]
    assert len(file_results) == 1 and not file_results[0].is_error  # the patch was not applied twice
    shell_results = [e for e in after if e.type == "tool_result" and e.call_id == shell_call.call_id]
    assert len(shell_results) == 1 and "42" in shell_results[0].content
    assert (run / "workspace" / "notes" / "draft.md").read_text() == "# Draft\n\nBM25 saturates.\n"
    check_messages_shape(json.loads((run / "messages.json").read_text()))


def test_resume_refuses_a_run_in_use_and_a_broken_log(fake_llm, corpus_index, tmp_path):
    from deepresearch.errors import RunCorrupted
    from deepresearch.runs import RunStore

    fake_llm.script = research_script
    settings = settings_for(fake_llm, corpus_index, tmp_path / "run")
    fake_llm.script = lambda request: Reply(status=500, body="{}")
    with pytest.raises(Exception):  # noqa: B017 - the endpoint is down; the run stays resumable
        asyncio.run(research(QUESTION, settings.model_copy(update={"max_retries": 0})))
    holder = RunStore.open(tmp_path / "run")
    with pytest.raises(RunStoreError, match="in use"):
        asyncio.run(resume(tmp_path / "run", settings))
    holder.close()
    log = tmp_path / "run" / "events.jsonl"
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0], "{garbage", *lines[1:]]) + "\n")
    with pytest.raises(RunCorrupted, match=r"events\.jsonl:2"):
        asyncio.run(resume(tmp_path / "run", settings))


def test_ctrl_c_cancels_cleanly_and_the_run_resumes(fake_llm, corpus_index, tmp_path):
    hold = {"on": True}

    fake_llm.script = held_at(2, hold)
    run = tmp_path / "run"
    agent = start_agent(fake_llm, corpus_index, run)
    wait_for(lambda: len(fake_llm.requests) >= 3, agent, "the third model call")
    agent.send_signal(signal.SIGINT)
    _, err = agent.communicate(timeout=60)
    assert agent.returncode == 130, err.decode()
    assert "interrupted" in err.decode() and f"deepresearch resume {run}" in err.decode()
    assert "Traceback" not in err.decode()
    assert read_info(run).status == "cancelled"
    hold["on"] = False
    result = asyncio.run(resume(run, settings_for(fake_llm, corpus_index, run)))
    assert result.status == "done" and result.steps == 6
