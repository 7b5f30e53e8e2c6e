"""The Ray executor on a local Ray: the same store, the same resumability, failures kept to their task."""

from __future__ import annotations

import asyncio
import json

import pytest

from deepresearch.bench.executors import job_payload, settings_payload
from deepresearch.bench.runner import run_benchmark
from deepresearch.bench.store import BenchStore
from tests.bench.scripts import FAIL, agent_script, write_tasks
from tests.bench.test_runner import settings_for

ray = pytest.importorskip(
    "ray", reason="the Ray executor tests need ray, in the bench extra: pip install -e '.[bench]'"
)
pytestmark = [pytest.mark.slow, pytest.mark.ray]


def test_a_benchmark_on_a_local_ray(fake_llm, corpus_index, tmp_path):
    prompts = {"r1": "How does BM25 rank documents?", "r2": "What is FTS5?", "r3": f"Broken {FAIL}"}
    tasks = write_tasks(tmp_path / "tasks.jsonl", prompts)
    bench = tmp_path / "ray-bench"
    fake_llm.script = agent_script
    settings = settings_for(fake_llm, corpus_index, api_key="sk-secret-ray")
    summary = asyncio.run(
        run_benchmark(settings, tasks_path=tasks, name="ray", bench_dir=bench, concurrency=2, executor="ray")
    )
    assert not ray.is_initialized()  # the local Ray it started is shut down again
    rows = {row.task_id: row for row in summary.rows}
    assert [rows[t].status for t in ("r1", "r2", "r3")] == ["done", "done", "failed"]
    assert "scripted outage" in rows["r3"].error or "500" in rows["r3"].error
    for task_id in ("r1", "r2"):
        assert prompts[task_id] in (bench / "runs" / task_id / "report.md").read_text()
        assert rows[task_id].steps == 2 and rows[task_id].prompt_tokens > 0
    # every model call came from Ray workers, with the key the driver was given
    assert {h.get("authorization") for h in fake_llm.request_headers} == {"Bearer sk-secret-ray"}
    with BenchStore.open(bench) as store:
        assert store.meta()["executor"] == "ray"
        assert "sk-secret-ray" not in json.dumps(store.meta())
        assert [r.status for r in store.tasks()] == ["done", "done", "failed"]
    # the rerun skips finished work without starting Ray for nothing
    fake_llm.requests.clear()
    again = asyncio.run(
        run_benchmark(
            settings, tasks_path=tasks, name="ray", bench_dir=bench, executor="ray", retry_failed=False
        )
    )
    assert again.ran == [] and fake_llm.requests == []


def test_the_worker_payload_carries_what_the_worker_needs(fake_llm, corpus_index, tmp_path):
    from deepresearch.bench.executors import Job

    settings = settings_for(fake_llm, corpus_index, api_key="sk-secret")
    payload = job_payload(
        Job("t", "q", tmp_path / "run", settings.model_copy(update={"out": tmp_path / "run"}))
    )
    assert payload["run_dir"] == str((tmp_path / "run").absolute())
    assert payload["settings"]["api_key"] == "sk-secret"  # a worker needs the key; it travels as an argument
    assert settings_payload(settings)["base_url"] == fake_llm.base_url
