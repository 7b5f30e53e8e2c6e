"""The benchmark runner end to end against the fake model: failures stay local to their task, a killed
benchmark resumes where it stopped, finished tasks are skipped, and the spend limit holds."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from deepresearch.bench.runner import BenchUpdate, run_benchmark, run_dir_name
from deepresearch.bench.store import BenchStore
from deepresearch.config import load_settings
from deepresearch.errors import ConfigError
from deepresearch.runs import load_events, read_info
from tests.agent.scripts import question, turn
from tests.bench.scripts import FAIL, HELD, HOLD, agent_script, write_tasks
from tests.fakes.openai_server import FakeOpenAI

PROMPTS = {
    "t1": "How does BM25 rank documents?",
    "t2": "What does FTS5 add to SQLite?",
    "t3": "Why saturate term frequency?",
    "t4": "What is inverse document frequency?",
    "t5": f"A question the model cannot answer {FAIL}",
    "t6": f"A question interrupted half way {HOLD}",
}


def settings_for(fake: FakeOpenAI, index: Path, **extra: Any) -> Any:
    return load_settings(
        {
            "base_url": fake.base_url,
            "model": "fake-model",
            "index": index,
            "max_retries": 1,
            "retry_base_delay": 0.001,
            "retry_max_delay": 0.01,
            **extra,
        },
        env={},
    )


@pytest.fixture
def held() -> Any:
    HELD["on"] = False
    yield HELD
    HELD["on"] = False


def start_bench(fake: FakeOpenAI, tasks: Path, bench: Path, index: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ) | {
        "DEEPRESEARCH_MAX_RETRIES": "1",
        "DEEPRESEARCH_RETRY_BASE_DELAY": "0.001",
        "DEEPRESEARCH_RETRY_MAX_DELAY": "0.01",
    }
    command = [
        *(sys.executable, "-m", "deepresearch", "bench", "run", "--tasks", str(tasks), "--name", "b"),
        *("--dir", str(bench), "--concurrency", "3", "--quiet"),
        *("--base-url", fake.base_url, "--model", "fake-model", "--index", str(index)),
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def stalled_on_hold(fake: FakeOpenAI) -> bool:
    return any(HOLD in question(r) and turn(r) == 1 for r in list(fake.requests))


@pytest.mark.slow
def test_failures_stay_local_and_a_killed_benchmark_resumes(fake_llm, corpus_index, tmp_path, held):
    tasks = write_tasks(tmp_path / "tasks.jsonl", PROMPTS)
    bench = tmp_path / "bench" / "b"
    fake_llm.script = agent_script
    held["on"] = True
    process = start_bench(fake_llm, tasks, bench, corpus_index)
    deadline = time.monotonic() + 90
    while not stalled_on_hold(fake_llm):
        if process.poll() is not None:
            raise AssertionError(f"bench exited early: {process.communicate()[1].decode()[-2000:]}")
        assert time.monotonic() < deadline, "the held task never reached its second model call"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)

    with BenchStore.open(bench) as store:
        stale = store.task("t6")
    assert stale is not None and stale.status == "running"  # the driver died before it could say more
    hold_dir = bench / "runs" / "t6"
    assert read_info(hold_dir).status == "interrupted"
    calls_before = [e.type for e in load_events(hold_dir / "events.jsonl").events].count("llm_call")
    assert calls_before == 1

    held["on"] = False
    updates: list[BenchUpdate] = []
    summary = asyncio.run(
        run_benchmark(
            settings_for(fake_llm, corpus_index),
            tasks_path=tasks,
            name="b",
            bench_dir=bench,
            concurrency=3,
            on_update=updates.append,
        )
    )
    assert "t6" in summary.resumed
    assert (summary.done, summary.failed, summary.pending) == (5, 1, 0)
    rows = {row.task_id: row for row in summary.rows}
    assert rows["t5"].status == "failed"
    assert "500" in rows["t5"].error or "scripted outage" in rows["t5"].error
    assert "\n" not in rows["t5"].error
    for task_id in ("t1", "t2", "t3", "t4", "t6"):
        row = rows[task_id]
        assert row.status == "done", row
        report = Path(row.report_path).read_text()
        assert PROMPTS[task_id] in report and "[1]" in report
        assert row.steps == 2 and row.prompt_tokens > 0 and row.completion_tokens > 0
        assert json.loads((bench / "runs" / task_id / "task.json").read_text())["task_id"] == task_id
    events = [e.type for e in load_events(hold_dir / "events.jsonl").events]
    assert events.count("run_resumed") == 1 and events.count("llm_call") == 2  # the first call kept
    assert rows["t6"].attempts == 2
    assert updates[0].kind == "plan" and updates[-1].kind == "end"
    assert updates[-1].done == 5 and updates[-1].failed == 1

    # a third invocation: nothing left to do but the failed task, which it leaves alone on request
    fake_llm.requests.clear()
    again = asyncio.run(
        run_benchmark(
            settings_for(fake_llm, corpus_index),
            tasks_path=tasks,
            name="b",
            bench_dir=bench,
            retry_failed=False,
        )
    )
    assert fake_llm.requests == []
    assert sorted(again.skipped) == ["t1", "t2", "t3", "t4", "t6"] and again.ran == []
    with BenchStore.open(bench) as store:
        assert [row.status for row in store.tasks()] == ["done"] * 4 + ["failed", "done"]
        meta = store.meta()
    assert meta["name"] == "b" and meta["tasks_file"] == str(tasks)
    assert "api_key" not in json.dumps(meta["settings"]).replace('"keys_set"', "")


def test_the_spend_limit_stops_new_tasks(fake_llm, corpus_index, tmp_path):
    tasks = write_tasks(tmp_path / "tasks.jsonl", {k: PROMPTS[k] for k in ("t1", "t2", "t3")})
    fake_llm.script = agent_script
    # $1,000 per million tokens: the first call of a task (~2k prompt tokens) costs about $2
    priced = settings_for(fake_llm, corpus_index, prices={"fake-model": {"input": 1000.0, "output": 1000.0}})
    summary = asyncio.run(
        run_benchmark(
            priced,
            tasks_path=tasks,
            name="capped",
            bench_dir=tmp_path / "capped",
            concurrency=1,
            max_cost=1.0,
        )
    )
    assert summary.stopped_by_cost
    assert summary.ran == ["t1"]
    assert [row.status for row in summary.rows] == ["done", "pending", "pending"]
    assert summary.spent_usd == pytest.approx(summary.rows[0].cost_usd) and summary.spent_usd > 1.0
    assert "spend limit" in summary.notes()[0]
    # the run itself was told its share of the limit: it answered after one paid call
    assert summary.rows[0].steps <= 2


def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, fake_llm, corpus_index):
    tasks = write_tasks(tmp_path / "tasks.jsonl", {"t1": PROMPTS["t1"]})
    settings = settings_for(fake_llm, corpus_index)
    for bad in ({"concurrency": 0}, {"limit": 0}, {"max_cost": -1.0}):
        with pytest.raises(ConfigError, match=r"at least|negative"):
            asyncio.run(run_benchmark(settings, tasks_path=tasks, name="x", bench_dir=tmp_path / "x", **bad))
    assert not (tmp_path / "x").exists()
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"task_id": "t1"}\n')  # no prompt: the only task fails to load
    with pytest.raises(ConfigError, match="no task could be loaded"):
        asyncio.run(run_benchmark(settings, tasks_path=empty, name="x", bench_dir=tmp_path / "x"))


def test_run_dir_names_are_safe_and_distinct():
    assert run_dir_name("task-1.a") == "task-1.a"
    odd = run_dir_name("../../etc/passwd")
    assert "/" not in odd and not odd.startswith(".")
    assert run_dir_name("a/b") != run_dir_name("a_b")
