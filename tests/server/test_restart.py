"""A real ``deepresearch serve`` process: killed mid-job then restarted (the job resumes), and stopped
with SIGTERM (the step in progress finishes, the run is persisted, a restart completes it)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deepresearch.runs import load_events, read_info
from tests.agent.scripts import turn
from tests.bench.scripts import agent_script
from tests.fakes.openai_server import FakeOpenAI, Reply

pytestmark = pytest.mark.slow
HOLD = {"on": False, "delay": 120.0}


def held(request: dict[str, Any]) -> Reply:
    """Search, update the plan, answer (``agent_script``'s answer); the second reply is delayed while
    ``HOLD["on"]``."""
    n = turn(request)
    if n == 1:
        plan = {"1": {"task": "Read about BM25", "status": "completed"}}
        reply = Reply(content="Planning.", tool_calls=[("todo", {"updates": plan})])
    else:
        reply = agent_script(request)  # turn 0 searches, turn 2 answers
    if n == 1 and HOLD["on"]:
        reply.delay = HOLD["delay"]
    return reply


@pytest.fixture(autouse=True)
def _reset_hold() -> Iterator[None]:
    HOLD.update(on=False, delay=120.0)
    yield
    HOLD.update(on=False, delay=120.0)


class ServeProcess:
    def __init__(self, fake: FakeOpenAI, index: Path, data_dir: Path) -> None:
        command = [
            *(sys.executable, "-m", "deepresearch", "serve", "--port", "0", "--data-dir", str(data_dir)),
            *("--base-url", fake.base_url, "--model", "fake-model", "--index", str(index), "--grace", "30"),
        ]
        env = dict(os.environ) | {"DEEPRESEARCH_MAX_RETRIES": "1", "DEEPRESEARCH_RETRY_BASE_DELAY": "0.001"}
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.url = self._wait_for_url()

    def _wait_for_url(self) -> str:
        assert self.process.stderr is not None
        deadline = time.monotonic() + 60
        seen = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stderr], [], [], 0.2)
            if ready:
                line = self.process.stderr.readline()
                seen += line
                if line.startswith(b"listening on "):
                    return line.decode().split()[-1]
            if self.process.poll() is not None:
                break
        self.process.kill()
        raise AssertionError(f"serve did not start: {seen.decode()[-2000:]}")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def finish(self, sig: int) -> int:
        self.process.send_signal(sig)
        self.process.communicate(timeout=60)
        return self.process.returncode


def wait_for(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def job_status(url: str, job_id: str) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=30) as client:
        return client.get(f"/v1/research/{job_id}").json()


def test_a_killed_server_resumes_its_jobs_on_restart(fake_llm, corpus_index, tmp_path):
    fake_llm.script = held
    HOLD["on"] = True
    data = tmp_path / "data"
    first = ServeProcess(fake_llm, corpus_index, data)
    with first.client() as client:
        job = client.post("/v1/research", json={"question": "How does BM25 rank documents?"}).json()
        queued = client.post("/v1/research", json={"question": "What is FTS5?"}).json()
    wait_for(lambda: any(turn(r) == 1 for r in list(fake_llm.requests)), "the held second model call")
    assert first.finish(signal.SIGKILL) == -signal.SIGKILL

    run_dir = data / "runs" / job["id"]
    assert read_info(run_dir).status == "interrupted"
    HOLD["on"] = False
    second = ServeProcess(fake_llm, corpus_index, data)
    try:
        wait_for(lambda: job_status(second.url, job["id"])["status"] == "done", "the resumed job")
        wait_for(lambda: job_status(second.url, queued["id"])["status"] == "done", "the queued job")
        detail = job_status(second.url, job["id"])
        assert "BM25 ranks documents" in detail["report"]["markdown"]
        types = [e.type for e in load_events(run_dir / "events.jsonl").events]
        assert types.count("run_resumed") == 1 and types.count("llm_call") == 3
        with second.client() as client, client.stream("GET", f"/v1/research/{job['id']}/events") as response:
            ids = [line for line in response.iter_lines() if line.startswith("id: ")]
        assert [int(line[4:]) for line in ids] == list(range(1, len(types) + 1))
    finally:
        second.finish(signal.SIGTERM)


def test_sigterm_finishes_the_step_then_a_restart_completes_the_job(fake_llm, corpus_index, tmp_path):
    fake_llm.script = held
    HOLD.update(on=True, delay=1.5)  # the step in progress when SIGTERM arrives takes 1.5 s more
    data = tmp_path / "data"
    first = ServeProcess(fake_llm, corpus_index, data)
    with first.client() as client:
        job = client.post("/v1/research", json={"question": "How does BM25 rank documents?"}).json()
    wait_for(lambda: any(turn(r) == 1 for r in list(fake_llm.requests)), "the second model call")
    assert first.finish(signal.SIGTERM) in (0, -signal.SIGTERM)  # uvicorn re-raises it once done

    run_dir = data / "runs" / job["id"]
    events = load_events(run_dir / "events.jsonl").events
    assert [e.type for e in events].count("llm_call") == 2  # the call in flight completed…
    assert [e.type for e in events].count("tool_result") == 2  # …and so did its tool call
    finished = [e for e in events if e.type == "run_finished"]
    assert [json.loads(e.model_dump_json())["status"] for e in finished] == ["cancelled"]
    assert read_info(run_dir).status == "cancelled"

    second = ServeProcess(fake_llm, corpus_index, data)
    try:
        wait_for(lambda: job_status(second.url, job["id"])["status"] == "done", "the job after restart")
        assert (run_dir / "report.md").is_file()
        types = [e.type for e in load_events(run_dir / "events.jsonl").events]
        assert types.count("llm_call") == 3 and types.count("run_resumed") == 1
    finally:
        second.finish(signal.SIGTERM)
