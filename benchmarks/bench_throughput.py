"""Does the benchmark runner keep its slots busy? 50 tasks at concurrency 16 against a model that takes
200 ms per reply, on the local (asyncio) executor and on a local Ray.

The fake OpenAI server runs in its own process and answers every request after ``--latency`` seconds:
each task plans (todo), updates the plan, then answers — three model calls. The ideal wall time is
``tasks × steps × latency / concurrency`` (the issue's yardstick; with whole waves of tasks the floor is
``ceil(tasks / concurrency) × steps × latency``, printed too). The ratio wall / ideal is the runner's
overhead: run start-up, event logging, the store, and (for Ray) shipping each task to a worker process.

    .venv/bin/python benchmarks/bench_throughput.py [--tasks 50] [--concurrency 16] [--executor local ray]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3


def script(request: dict[str, Any]) -> Any:
    """plan → update the plan → answer, each reply after BENCH_LATENCY seconds."""
    from tests.fakes.openai_server import Reply

    delay = float(os.environ.get("BENCH_LATENCY", "0.2"))
    turn = sum(1 for m in request["messages"] if m.get("role") == "assistant")
    if turn == 0:
        plan = {"1": {"task": "Look up the facts"}, "2": {"task": "Write the report"}}
        return Reply(content="Planning.", tool_calls=[("todo", {"updates": plan})], delay=delay)
    if turn == 1:
        done = {"1": {"status": "completed"}, "2": {"status": "in_progress"}}
        return Reply(content="Updating.", tool_calls=[("todo", {"updates": done})], delay=delay)
    return Reply(content="<answer>\n# Report\n\nThe answer, in one paragraph.\n</answer>", delay=delay)


def write_tasks(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(count):
            task = {
                "task_id": f"task-{i:03d}",
                "prompt": f"Question number {i}: what changed in 2025?",
                "rubrics": [{"criterion": "Answers the question.", "weight": 1}],
            }
            handle.write(json.dumps(task) + "\n")


def warm_up() -> float:
    """The once-per-process start-up a benchmark pays before its first task: importing the agent's
    modules and loading the o200k token ranks. Timed apart: it does not grow with the task count."""
    started = time.perf_counter()
    import deepresearch.research  # noqa: F401
    from deepresearch.llm.tokens import count_tokens
    from deepresearch.search.backends import open_search  # noqa: F401

    count_tokens("warm")
    return time.perf_counter() - started


def run_once(base_url: str, tmp: Path, *, executor: str, tasks: int, concurrency: int) -> dict[str, Any]:
    from deepresearch.bench.runner import run_benchmark
    from deepresearch.config import load_settings
    from deepresearch.search.local import LocalIndex

    index = tmp / "index.sqlite"
    LocalIndex(index).close()
    task_file = tmp / "tasks.jsonl"
    write_tasks(task_file, tasks)
    settings = load_settings(
        {"base_url": base_url, "model": "fake-model", "index": index, "search": "local"}, env={}
    )
    started = time.perf_counter()
    summary = asyncio.run(
        run_benchmark(
            settings,
            tasks_path=task_file,
            name=executor,
            bench_dir=tmp / executor,
            concurrency=concurrency,
            executor=executor,  # type: ignore[arg-type]
        )
    )
    wall = time.perf_counter() - started
    if summary.done != tasks:
        failed = [f"{r.task_id}: {r.error}" for r in summary.rows if r.status != "done"][:3]
        raise SystemExit(f"{executor}: only {summary.done}/{tasks} tasks finished: {failed}")
    return {"wall": wall, "steps": sum(r.steps for r in summary.rows) / tasks}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--executor", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    args = parser.parse_args()
    env = dict(os.environ, BENCH_LATENCY=str(args.latency), PYTHONPATH=str(ROOT))
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_server", "--script", "benchmarks.bench_throughput:script"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        base_url = server.stdout.readline().strip().split()[-1]  # type: ignore[union-attr]
        ideal = args.tasks * STEPS * args.latency / args.concurrency
        waves = math.ceil(args.tasks / args.concurrency) * STEPS * args.latency
        print(
            f"{args.tasks} tasks × {STEPS} model calls × {args.latency:.3f} s at concurrency "
            f"{args.concurrency}: ideal {ideal:.2f} s (whole waves {waves:.2f} s)"
        )
        print(f"process start-up (imports, token ranks), once, not timed below: {warm_up():.2f} s")
        for executor in args.executor:
            if executor == "ray":
                # an existing cluster, as ``--ray-address`` would join: its start is not the runner's cost
                import logging

                import ray

                started = time.perf_counter()
                ray.init(
                    num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING
                )
                print(f"local Ray start (once, not timed below): {time.perf_counter() - started:.2f} s")
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    result = run_once(
                        base_url, Path(tmp), executor=executor, tasks=args.tasks, concurrency=args.concurrency
                    )
            finally:
                if executor == "ray":
                    ray.shutdown()
            print(
                f"{executor:>5}: {result['wall']:.2f} s, {result['steps']:.1f} steps/task; wall / ideal "
                f"{result['wall'] / ideal:.2f}×, wall / whole waves {result['wall'] / waves:.2f}×"
            )
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
