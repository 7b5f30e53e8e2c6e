"""Does the benchmark runner keep its slots busy? 50 tasks at concurrency 16 against a model that takes
200 ms per reply, on the local (asyncio) executor and on a local Ray.

The fake OpenAI server runs in its own process and answers each request after ``--latency`` seconds
(± ``--jitter``, fixed per task and call by a hash): each task plans (todo), updates the plan, then
answers — three model calls, so task i cannot take less than ``d_i``, the sum of its three delays.
With no jitter every call takes the same time, so the tasks of a wave all wake at the same instant
and queue for the one event loop: the worst case for a single-process runner. Real models vary.

The yardstick is the wave bound: the tasks start in file order, each as soon as one of the
``concurrency`` slots is free, and task i takes ``d_i``; the makespan of that schedule (list scheduling
in order on C slots; for N equal tasks ``ceil(N / C) × d``) is the best any runner can do.
``of_bound`` = bound / wall. The runner's own share is shown apart: the same schedule computed with each
task's measured slot time (launch to finish, as the runner saw it) is what an instant runner would
take for tasks as slow as they were here, and ``runner_efficiency`` = that / wall.

Achieved concurrency = the sum of the tasks' slot times / wall (how many slots were held on average);
``model_concurrency`` = N × d / wall (how many were doing what only the model can do). CPU is this
process's (the driver's, with its threads) next to wall; Ray workers' CPU is theirs and not counted.
With Ray, Ray's start is counted: the runner starts it, inside the wall time, and its share is printed.
``runner`` runs the runner alone, each job a sleep of ``d``: what is left is the runner's own cost.
The last lines print ``<executor>_of_bound=X`` (median over ``--repeat``).

    .venv/bin/python benchmarks/bench_throughput.py [--tasks 50] [--concurrency 16] [--repeat 3]
        [--executor runner local ray]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import heapq
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STEPS = 3


_TASK_NUMBER = re.compile(r"Question number (\d+):")


def call_delay(task: int, turn: int, latency: float, jitter: float) -> float:
    """How long model call ``turn`` of task number ``task`` takes: ``latency`` ± ``jitter`` × latency,
    drawn from a hash so that the driver knows every task's duration (for the wave bound) in advance."""
    digest = hashlib.sha256(f"{task}|{turn}".encode()).digest()
    spread = int.from_bytes(digest[:4], "big") / 2**32 * 2 - 1
    return latency * (1 + jitter * spread)


def task_seconds(task: int, latency: float, jitter: float) -> float:
    """The least a task can take: its model calls, back to back."""
    return sum(call_delay(task, turn, latency, jitter) for turn in range(STEPS))


def script(request: dict[str, Any]) -> Any:
    """plan → update the plan → answer, each reply after ``call_delay`` (BENCH_LATENCY, BENCH_JITTER)."""
    from tests.fakes.openai_server import Reply

    turn = sum(1 for m in request["messages"] if m.get("role") == "assistant")
    asked = " ".join(str(m.get("content", "")) for m in request["messages"] if m.get("role") == "user")
    found = _TASK_NUMBER.search(asked)
    delay = call_delay(
        int(found.group(1)) if found else 0,
        turn,
        float(os.environ.get("BENCH_LATENCY", "0.2")),
        float(os.environ.get("BENCH_JITTER", "0")),
    )
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
    """The once-per-process start-up a benchmark pays before its first task, timed apart (it does not
    grow with the task count): the runner's own ``deepresearch.research.warm_up`` — imports of the run
    stack, the TLS context, the token ranks, extraction and report rendering. The local executor runs
    it before its first job, so inside the timed run it finds everything loaded."""
    started = time.perf_counter()
    from deepresearch.research import warm_up as warm_runner

    warm_runner()
    return time.perf_counter() - started


def wave_bound(durations: list[float], slots: int) -> float:
    """The makespan when the tasks start in order, each on the first slot to free, and run ``durations``."""
    free = [0.0] * slots
    for duration in durations:
        start = heapq.heappop(free)
        heapq.heappush(free, start + duration)
    return max(free)


class SleepExecutor:
    """The runner alone: each job sleeps what its three model calls take and writes a one-line report."""

    live_events = True

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds = seconds
        """task id → how long its job sleeps"""

    async def run(self, job: Any, on_event: Any) -> Any:
        from deepresearch.bench.executors import JobResult
        from deepresearch.runs import RunDir

        started = time.monotonic()
        await asyncio.sleep(self.seconds[job.task_id])
        report = RunDir(job.run_dir).report_path
        report.write_text("# Report\n", encoding="utf-8")
        return JobResult(
            status="done",
            resumed=False,
            steps=STEPS,
            prompt_tokens=0,
            completion_tokens=0,
            cost_usd=0.0,
            wall_s=time.monotonic() - started,
            report_path=str(report),
            report="",
            error="",
            outcome="report",
        )

    async def aclose(self) -> None:
        return None


def run_once(
    base_url: str, tmp: Path, *, executor: str, tasks: int, concurrency: int, durations: list[float]
) -> dict[str, Any]:
    """One benchmark: wall and CPU time, and each task's slot time as the runner saw it."""
    from deepresearch.bench.runner import BenchUpdate, run_benchmark
    from deepresearch.config import load_settings
    from deepresearch.search.local import LocalIndex

    index = tmp / "index.sqlite"
    docs = tmp / "docs"
    docs.mkdir()
    (docs / "note.md").write_text("# Note\n\nWhat changed in 2025: the facts.\n", encoding="utf-8")
    with LocalIndex(index) as local:
        local.add_paths([docs])
    task_file = tmp / "tasks.jsonl"
    write_tasks(task_file, tasks)
    settings = load_settings(
        {"base_url": base_url, "model": "fake-model", "index": index, "search": "local"}, env={}
    )
    marks: dict[str, float] = {}
    launched: dict[str, float] = {}
    finished: dict[str, float] = {}

    def on_update(update: BenchUpdate) -> None:
        now = time.perf_counter()
        if update.kind == "plan":
            marks["plan"] = now
        elif update.kind == "start":
            marks.setdefault("first_start", now)
            launched[update.task_id] = now
        elif update.kind == "finish":
            finished[update.task_id] = now

    cpu = time.process_time()
    started = time.perf_counter()
    summary = asyncio.run(
        run_benchmark(
            settings,
            tasks_path=task_file,
            name=executor,
            bench_dir=tmp / executor,
            concurrency=concurrency,
            executor=SleepExecutor({f"task-{i:03d}": d for i, d in enumerate(durations)})
            if executor == "runner"
            else executor,  # type: ignore[arg-type]
            on_update=on_update,
        )
    )
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    if summary.done != tasks:
        failed = [f"{r.task_id}: {r.error}" for r in summary.rows if r.status != "done"][:3]
        raise SystemExit(f"{executor}: only {summary.done}/{tasks} tasks finished: {failed}")
    order = [row.task_id for row in summary.rows]
    return {
        "wall": wall,
        "cpu": cpu,
        "steps": sum(r.steps for r in summary.rows) / tasks,
        "slot_times": [finished[t] - launched[t] for t in order],
        "executor_start": marks["first_start"] - marks["plan"],
    }


def report(
    executor: str, result: dict[str, Any], *, bound: float, concurrency: int, durations: list[float]
) -> None:
    wall, slots, tasks = result["wall"], result["slot_times"], len(durations)
    busy, model = sum(slots), sum(durations)
    instant = wave_bound(slots, concurrency)
    print(
        f"{executor:>6}: wall {wall:.2f} s, cpu {result['cpu']:.2f} s "
        f"({result['cpu'] / tasks * 1000:.0f} ms/task), "
        f"{result['steps']:.1f} steps/task; of_bound {bound / wall:.0%} (wave bound {bound:.2f} s); "
        f"achieved concurrency {busy / wall:.1f} of {concurrency} (the bound's: {model / bound:.1f}), "
        f"model_concurrency {model / wall:.1f}; mean slot time {busy / tasks:.3f} s "
        f"(mean d {model / tasks:.3f} s); runner_efficiency {instant / wall:.0%} "
        f"(instant-runner makespan {instant:.2f} s)"
        + (f"; Ray start, counted: {result['executor_start']:.2f} s" if executor == "ray" else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument(
        "--jitter",
        type=float,
        default=0.0,
        help="each model call takes latency × (1 ± jitter), fixed per task and call (0: every call alike, "
        "so a wave's tasks all wake at once)",
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--executor",
        nargs="+",
        default=["runner", "local", "ray"],
        choices=["runner", "local", "ray"],
        help="runner: the runner alone (each job a sleep of 3 × latency); local, ray: the real agent",
    )
    args = parser.parse_args()
    if not 0 <= args.jitter < 1:
        parser.error("--jitter must be in [0, 1)")
    env = dict(
        os.environ, BENCH_LATENCY=str(args.latency), BENCH_JITTER=str(args.jitter), PYTHONPATH=str(ROOT)
    )
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
        durations = [task_seconds(i, args.latency, args.jitter) for i in range(args.tasks)]
        bound = wave_bound(durations, args.concurrency)
        print(
            f"{args.tasks} tasks × {STEPS} model calls × {args.latency:.3f} s (± {args.jitter:.0%}) at "
            f"concurrency {args.concurrency}: wave bound {bound:.2f} s (unreachable ideal Σd/C "
            f"{sum(durations) / args.concurrency:.2f} s)"
        )
        print(f"process start-up (imports, token ranks), once, not timed below: {warm_up():.2f} s")
        ratios: dict[str, list[float]] = {}
        for _ in range(args.repeat):
            for executor in args.executor:
                with tempfile.TemporaryDirectory() as tmp:
                    result = run_once(
                        base_url,
                        Path(tmp),
                        executor=executor,
                        tasks=args.tasks,
                        concurrency=args.concurrency,
                        durations=durations,
                    )
                report(executor, result, bound=bound, concurrency=args.concurrency, durations=durations)
                ratios.setdefault(executor, []).append(bound / result["wall"])
        for executor, values in ratios.items():
            print(f"{executor}_of_bound={statistics.median(values):.2f}")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
