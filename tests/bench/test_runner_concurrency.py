"""The runner keeps its slots busy: a task starts as soon as a slot frees, in file order, never more
than ``concurrency`` at once, with no tick in between. The jobs here are gated by the test (an
``Executor`` of its own, released one by one), so the assertions are about order, never about time.
The benchmark's wave bound (``benchmarks/bench_throughput.py``) is checked on hand-worked schedules."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
from benchmarks.bench_throughput import wave_bound

from deepresearch.bench.executors import Job, JobResult
from deepresearch.bench.runner import BenchUpdate, run_benchmark
from deepresearch.bench.store import BenchStore
from deepresearch.config import Settings, load_settings
from deepresearch.research import EventCallback
from deepresearch.runs import RunDir
from tests.bench.scripts import write_tasks

TASKS = [f"t{i}" for i in range(1, 7)]


class GatedExecutor:
    """Starts each job when the runner asks and finishes it only when the test releases it."""

    live_events = True

    def __init__(self) -> None:
        self.started: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.closed = False
        self._gates: dict[str, asyncio.Event] = {}
        self._changed: asyncio.Event | None = None

    def gate(self, task_id: str) -> asyncio.Event:
        return self._gates.setdefault(task_id, asyncio.Event())

    async def run(self, job: Job, on_event: EventCallback | None) -> JobResult:
        self.started.append(job.task_id)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self._notify()
        try:
            await self.gate(job.task_id).wait()
        finally:
            self.in_flight -= 1
        report = RunDir(job.run_dir).report_path
        report.write_text(f"# {job.task_id}\n", encoding="utf-8")
        return JobResult(
            status="done",
            resumed=False,
            steps=1,
            prompt_tokens=0,
            completion_tokens=0,
            cost_usd=0.0,
            wall_s=0.0,
            report_path=str(report),
            report="",
            error="",
            outcome="report",
        )

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def until_started(self, count: int) -> None:
        """Wait (on the loop, not on a clock) until ``count`` jobs have started."""
        while len(self.started) < count:
            self._changed = asyncio.Event()
            await self._changed.wait()

    async def aclose(self) -> None:
        self.closed = True


def gated_settings() -> Settings:
    """No run is ever started with these: the gated executor stands in for the agent."""
    return load_settings({"base_url": "http://127.0.0.1:9/v1", "model": "fake-model"}, env={})


async def drive(
    tmp_path: Path, executor: GatedExecutor, release: list[str], concurrency: int = 2
) -> tuple[list[BenchUpdate], list[tuple[list[str], int]]]:
    """Run the benchmark, releasing the tasks in ``release`` order one at a time; after each release,
    note which tasks have started, and how many run, once the runner has refilled the slot."""
    tasks = write_tasks(tmp_path / "tasks.jsonl", {task_id: f"Question {task_id}" for task_id in TASKS})
    updates: list[BenchUpdate] = []
    bench = asyncio.create_task(
        run_benchmark(
            gated_settings(),
            tasks_path=tasks,
            name="gated",
            bench_dir=tmp_path / "bench",
            concurrency=concurrency,
            executor=executor,
            on_update=updates.append,
        )
    )
    seen: list[tuple[list[str], int]] = []
    async with asyncio.timeout(60):
        await executor.until_started(concurrency)
        seen.append((list(executor.started), executor.in_flight))
        for done, task_id in enumerate(release, start=1):
            executor.gate(task_id).set()
            await executor.until_started(min(len(TASKS), concurrency + done))
            while task_id not in {u.task_id for u in updates if u.kind == "finish"}:
                await asyncio.sleep(0)  # the runner has taken the finish in before the next release
            seen.append((list(executor.started), executor.in_flight))
        await bench
    return updates, seen


def test_a_freed_slot_goes_to_the_next_task_in_file_order(tmp_path: Path) -> None:
    executor = GatedExecutor()
    release = ["t2", "t3", "t1", "t4", "t6", "t5"]  # not the order they started in
    updates, seen = asyncio.run(drive(tmp_path, executor, release))

    assert seen[0] == (["t1", "t2"], 2)
    assert seen[1] == (["t1", "t2", "t3"], 2)  # t2 finished: t3 took its slot while t1 still ran
    assert seen[2] == (["t1", "t2", "t3", "t4"], 2)  # t3 finished first, before t1
    assert seen[3] == (["t1", "t2", "t3", "t4", "t5"], 2)
    assert seen[4] == (TASKS, 2)
    assert executor.most_in_flight == 2
    assert not executor.closed  # the caller's executor stays the caller's
    with BenchStore.open(tmp_path / "bench") as store:
        rows = [store.task(task_id) for task_id in TASKS]
    assert [row.status if row else None for row in rows] == ["done"] * len(TASKS)
    assert [u.task_id for u in updates if u.kind == "finish"] == release


def test_every_finish_is_followed_at_once_by_the_next_start(tmp_path: Path) -> None:
    executor = GatedExecutor()
    updates, _ = asyncio.run(drive(tmp_path, executor, ["t1", "t2", "t3", "t4", "t5", "t6"], concurrency=3))

    kinds = [(update.kind, update.task_id) for update in updates]
    assert kinds[0][0] == "plan" and kinds[-1][0] == "end"
    assert [task for kind, task in kinds if kind == "start"] == TASKS
    for i, update in enumerate(updates):
        assert update.running <= 3
        if update.kind == "finish" and update.queued:
            assert updates[i + 1].kind == "start"  # no tick, no other work in between
            assert updates[i + 1].running == 3  # the slot is busy again
    starts_before_first_finish = next(i for i, (kind, _) in enumerate(kinds) if kind == "finish")
    assert [kind for kind, _ in kinds[1:starts_before_first_finish]] == ["start"] * 3


def test_the_wave_bound_of_equal_tasks_is_whole_waves() -> None:
    for count, slots in [(50, 16), (16, 16), (17, 16), (1, 4), (9, 3)]:
        assert wave_bound([0.6] * count, slots) == pytest.approx(math.ceil(count / slots) * 0.6)


def test_the_wave_bound_starts_tasks_in_order_on_the_first_free_slot() -> None:
    # two slots: the long task holds one, the short ones follow each other on the other
    assert wave_bound([3.0, 1.0, 1.0, 1.0], 2) == pytest.approx(3.0)
    # in order, the long task comes last and starts only when a slot frees at t=1
    assert wave_bound([1.0, 1.0, 3.0], 2) == pytest.approx(4.0)
    assert wave_bound([], 4) == 0.0
