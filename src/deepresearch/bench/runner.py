"""Run the agent on every task of a benchmark, resumably, with a spend limit for the whole benchmark.

Each task gets its own run directory, ``BENCH/runs/<task_id>/`` (with a ``task.json`` naming the task,
which is how ``judge grade`` maps run directories to tasks), and a row in the store that is updated
when the task starts and when it ends. Run again, the same call picks up where the last one stopped:

- a task whose row is ``done`` and whose report exists is skipped;
- a run directory that finished (its events end with a ``done`` ``run_finished``) while the row says
  otherwise — the benchmark died between the two writes — is reconciled from ``run.json``, not rerun;
- any other run directory (killed, failed, cancelled) is resumed, so completed tool calls are not
  repeated; a task without one starts fresh.

One failing task never stops the others: its row becomes ``failed`` with a one-line error.

Spend limit (``max_cost``, USD, for the whole benchmark): the spend is the stored cost of every
selected task — earlier invocations and partial runs included — plus what the running ones have
spent so far. Once it reaches the limit no new task starts; running ones finish, and the rest stay
``pending`` (the summary says so). Each launched run also gets its own budget of at most what is left
of the limit, so a run forces its final answer instead of overspending alone; with several runs in
flight the overshoot is bounded by what each can spend in one step beyond the remainder.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from deepresearch.bench.executors import Executor, Job, JobResult, make_executor, one_line, require_ray
from deepresearch.bench.store import BenchStore, TaskRow
from deepresearch.config import Settings
from deepresearch.errors import ConfigError, RunStoreError
from deepresearch.events import Event, LLMCall, RunFinished
from deepresearch.judge.loaders import load_tasks
from deepresearch.judge.rubrics import Task
from deepresearch.runs import TASK, RunDir, RunInfo, RunStore

DEFAULT_CONCURRENCY = 8
TICK_S = 1.0
"""How often the spend of running tasks is re-read and the progress view told."""
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}")

UpdateKind = Literal["plan", "start", "finish", "tick", "limit", "end"]


@dataclass(frozen=True)
class BenchUpdate:
    """A snapshot for a progress view, sent when something changes (and every ``TICK_S``)."""

    kind: UpdateKind
    name: str
    total: int
    done: int
    failed: int
    running: int
    pending: int
    queued: int
    """Tasks this invocation still means to start (``pending`` also counts those the limit held back)."""
    spent_usd: float
    max_cost: float | None
    concurrency: int
    mean_wall_s: float | None
    """Mean wall time of the tasks finished in this invocation (for an ETA)."""
    task_id: str = ""
    row: TaskRow | None = None
    running_since: dict[str, float] = field(default_factory=dict)
    """task id → ``time.monotonic()`` when it started."""
    message: str = ""


UpdateCallback = Callable[[BenchUpdate], None]


@dataclass
class BenchSummary:
    """What one ``run_benchmark`` call did, and where the benchmark stands."""

    name: str
    bench_dir: Path
    rows: list[TaskRow] = field(default_factory=list)
    """The selected tasks' rows, in task-file order."""
    ran: list[str] = field(default_factory=list)
    """Tasks started in this invocation (new or resumed)."""
    resumed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Tasks already done before this invocation."""
    reconciled: list[str] = field(default_factory=list)
    """Finished runs whose stale rows were brought up to date (not rerun)."""
    load_errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    spent_usd: float = 0.0
    max_cost: float | None = None
    stopped_by_cost: bool = False
    wall_s: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for row in self.rows if row.status == status)

    @property
    def done(self) -> int:
        return self.count("done")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def pending(self) -> int:
        return self.count("pending") + self.count("running")

    def notes(self) -> list[str]:
        """Lines for a person: the limit that stopped the run, tasks left, problems."""
        lines = []
        if self.stopped_by_cost:
            lines.append(
                f"spend limit ${self.max_cost:.4f} reached (${self.spent_usd:.4f} spent): {self.pending} "
                "task(s) left pending; run again with a higher max cost to continue"
            )
        elif self.pending:
            lines.append(f"{self.pending} task(s) still pending")
        lines += self.problems
        return lines


async def run_benchmark(
    settings: Settings,
    *,
    tasks_path: Path,
    name: str,
    bench_dir: Path | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    executor: Literal["local", "ray"] | Executor = "local",
    ray_address: str | None = None,
    limit: int | None = None,
    max_cost: float | None = None,
    retry_failed: bool = True,
    on_update: UpdateCallback | None = None,
) -> BenchSummary:
    """Run (or continue) the benchmark ``name`` over the tasks in ``tasks_path``; see the module doc.

    ``limit`` keeps the first N tasks of the file; ``retry_failed=False`` leaves failed tasks alone.
    ``executor`` names where the runs happen, or is an ``Executor`` of the caller's (which keeps owning
    it: the runner does not close it), so that the scheduling can be driven and measured on its own.
    """
    if concurrency < 1:
        raise ConfigError("concurrency must be at least 1")
    if limit is not None and limit < 1:
        raise ConfigError("limit must be at least 1")
    if max_cost is not None and max_cost < 0:
        raise ConfigError("max cost must not be negative")
    if isinstance(executor, str) and executor not in ("local", "ray"):
        raise ConfigError(f"unknown executor {executor!r}; use local or ray")
    if executor == "ray":
        require_ray()  # before anything is written
    loaded = load_tasks(tasks_path)
    if not loaded.tasks:
        raise ConfigError(f"{tasks_path}: no task could be loaded ({'; '.join(loaded.errors[:3])})")
    folder = (bench_dir if bench_dir is not None else Path("bench") / name).absolute()
    with BenchStore.open(folder) as store:
        runner = _Runner(
            settings,
            store,
            folder,
            name=name,
            tasks=loaded.tasks[:limit],
            concurrency=concurrency,
            max_cost=max_cost,
            retry_failed=retry_failed,
            on_update=on_update,
        )
        runner.summary.load_errors = list(loaded.errors)
        if max_cost is not None and not _priced(settings):
            runner.summary.problems.append(
                f"no price is known for model {settings.model!r}: its spend counts as $0, so the max cost "
                "cannot stop the benchmark (add the model under [prices] in deepresearch.toml)"
            )
        if not isinstance(executor, str):
            runner.record_meta(tasks_path, type(executor).__name__)
            return await runner.run(lambda: executor, owned=False)
        runner.record_meta(tasks_path, executor)
        return await runner.run(
            lambda: make_executor(executor, concurrency=concurrency, ray_address=ray_address)
        )


def run_dir_name(task_id: str) -> str:
    """A directory name for a task id: the id itself when it is a safe name, else a cleaned id plus a hash."""
    if _SAFE_NAME.fullmatch(task_id):
        return task_id
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", task_id).strip("._-")[:80] or "task"
    return f"{cleaned}-{hashlib.sha256(task_id.encode()).hexdigest()[:8]}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Runner:
    def __init__(
        self,
        settings: Settings,
        store: BenchStore,
        folder: Path,
        *,
        name: str,
        tasks: list[Task],
        concurrency: int,
        max_cost: float | None,
        retry_failed: bool,
        on_update: UpdateCallback | None,
    ) -> None:
        self.settings, self.store, self.folder, self.name = settings, store, folder, name
        self.tasks = {task.task_id: task for task in tasks}
        self.concurrency, self.max_cost, self.retry_failed = concurrency, max_cost, retry_failed
        self.on_update = on_update
        self.summary = BenchSummary(name=name, bench_dir=folder, max_cost=max_cost)
        self.rows: dict[str, TaskRow] = {}
        self.queue: list[str] = []
        self.running: dict[asyncio.Task[JobResult], str] = {}
        self.since: dict[str, float] = {}
        self.live_cost: dict[str, float] = {}
        """task id → spend of its run so far, as far as the driver knows (events or run.json)."""
        self.walls: list[float] = []

    # --- setup

    def record_meta(self, tasks_path: Path, executor: str) -> None:
        meta = self.store.meta()
        if "started" not in meta:
            self.store.set_meta("started", _now())
        self.store.set_meta("name", self.name)
        self.store.set_meta("tasks_file", str(tasks_path.absolute()))
        self.store.set_meta("settings", self.settings.public())
        self.store.set_meta("executor", executor)
        self.store.set_meta("concurrency", self.concurrency)
        self.store.set_meta("max_cost", self.max_cost)
        self.store.set_meta("last_invocation", _now())

    def plan(self) -> None:
        """Reconcile every selected task's row with its run directory and queue what must run."""
        for task in self.tasks.values():
            stored = self.store.task(task.task_id)
            row = stored or TaskRow(task_id=task.task_id, prompt=task.prompt)
            row.prompt, row.domain = task.prompt, task.domain
            run_dir = self.run_dir(task.task_id)
            row.run_dir = str(run_dir)
            if self._plan_one(row, run_dir, was_done=stored is not None and stored.status == "done"):
                self.queue.append(task.task_id)
            self.rows[task.task_id] = row
            self.store.upsert_task(row)

    def _plan_one(self, row: TaskRow, run_dir: Path, *, was_done: bool) -> bool:
        """Update ``row`` from the run directory; ``True`` when the task must run."""
        run = RunDir(run_dir)
        report = run.report_path
        if was_done and report.is_file():
            row.report_path = str(report)
            self.summary.skipped.append(row.task_id)
            return False
        info = _info(run_dir) if run.started else None
        if info is not None and info.status == "running":  # its lock is held: another process runs it
            self.summary.problems.append(f"{row.task_id}: {run_dir} is in use by another process; skipped")
            return False
        finished = _finished(run) if run.started else None
        if finished is not None and finished.status == "done":
            _copy_usage(row, info if info is not None and info.status == "done" else None, finished)
            if report.is_file():
                row.status, row.report_path, row.error = "done", str(report), ""
                self.summary.reconciled.append(row.task_id)
            else:
                row.status, row.report_path = "failed", ""
                missing = f"the run finished but its {report.name} is missing"
                row.error = f"{missing}; remove {run_dir} to run it again"
            return False
        if info is not None:
            _copy_usage(row, info, None)  # a partial run's spend counts against the limit
        if row.status == "failed":
            return self.retry_failed  # stays failed until it is started again
        row.status = "pending"
        return True

    def run_dir(self, task_id: str) -> Path:
        return self.folder / "runs" / run_dir_name(task_id)

    # --- the loop

    async def run(self, make: Callable[[], Executor], *, owned: bool = True) -> BenchSummary:
        """Keep ``concurrency`` tasks in flight until the queue is empty: a task starts as soon as a
        slot frees, in file order; ``owned``: close the executor at the end."""
        started = time.monotonic()
        self.plan()
        self.emit("plan")
        executor = make() if self.queue else None
        try:
            while self.queue or self.running:
                self.launch(executor)
                if not self.running:
                    break
                finished, _ = await asyncio.wait(
                    self.running, timeout=TICK_S, return_when=asyncio.FIRST_COMPLETED
                )
                for job in finished:
                    self.finish(self.running.pop(job), job)
                if not finished:
                    self.poll_spend()
                    self.emit("tick")
        finally:
            await self.stop_running()
            if executor is not None and owned:
                await executor.aclose()
        self.summary.rows = [self.rows[task_id] for task_id in self.tasks]
        self.summary.spent_usd = self.spent()
        self.summary.wall_s = time.monotonic() - started
        self.emit("end")
        return self.summary

    def launch(self, executor: Executor | None) -> None:
        if executor is not None and self.max_cost is not None and not executor.live_events:
            self.poll_spend()
        while executor is not None and self.queue and len(self.running) < self.concurrency:
            if self.max_cost is not None and self.spent() >= self.max_cost:
                if not self.summary.stopped_by_cost:
                    self.summary.stopped_by_cost = True
                    self.emit("limit", message=f"spend limit ${self.max_cost:.4f} reached")
                self.queue.clear()
                return
            task_id = self.queue.pop(0)
            row, run_dir = self.rows[task_id], self.run_dir(task_id)
            job = Job(task_id, row.prompt, run_dir, self.task_settings(row, run_dir))
            run_dir.mkdir(parents=True, exist_ok=True)
            RunStore(run_dir).write_json(TASK, {"task_id": task_id, "benchmark": self.name})
            if RunDir(run_dir).started:
                self.summary.resumed.append(task_id)
            self.summary.ran.append(task_id)
            row.status, row.attempts, row.started, row.ended, row.error = (
                "running",
                row.attempts + 1,
                _now(),
                "",
                "",
            )
            self.store.upsert_task(row)
            self.live_cost[task_id] = row.cost_usd
            self.since[task_id] = time.monotonic()
            on_event = self.event_callback(task_id, row.cost_usd) if executor.live_events else None
            self.running[asyncio.create_task(executor.run(job, on_event))] = task_id
            self.emit("start", task_id)

    def task_settings(self, row: TaskRow, run_dir: Path) -> Settings:
        update: dict[str, object] = {"out": run_dir}
        if self.max_cost is not None:
            # the run's budget counts its earlier attempts too (resume replays their usage)
            budget = row.cost_usd + max(self.max_cost - self.spent(), 0.0)
            own = self.settings.max_cost
            update["max_cost"] = budget if own is None else min(own, budget)
        return self.settings.model_copy(update=update)

    def event_callback(self, task_id: str, prior: float) -> Callable[[Event], None]:
        spent = {"new": 0.0}

        def on_event(event: Event) -> None:
            if isinstance(event, LLMCall):
                spent["new"] += float(event.usage.get("cost_usd", 0.0))
                self.live_cost[task_id] = max(self.live_cost.get(task_id, 0.0), prior + spent["new"])

        return on_event

    def finish(self, task_id: str, job: asyncio.Task[JobResult]) -> None:
        row = self.rows[task_id]
        self.since.pop(task_id, None)
        self.live_cost.pop(task_id, None)
        try:
            result = job.result()
        except Exception as exc:  # the executor itself failed (a Ray worker lost twice, …)
            row.status, row.error, row.ended = "failed", one_line(exc), _now()
            info = _info(self.run_dir(task_id))
            if info is not None:
                _copy_usage(row, info, None)
        else:
            self.apply(row, result)
        self.store.upsert_task(row)
        self.emit("finish", task_id)

    def apply(self, row: TaskRow, result: JobResult) -> None:
        row.status, row.error, row.ended = result["status"], result["error"], _now()
        row.steps = result["steps"]
        row.prompt_tokens, row.completion_tokens = result["prompt_tokens"], result["completion_tokens"]
        row.cost_usd = max(result["cost_usd"], row.cost_usd)
        row.outcome = result.get("outcome", "") or row.outcome
        row.wall_s += result["wall_s"]
        self.walls.append(result["wall_s"])
        row.report_path = result["report_path"]
        if row.status == "done" and not Path(row.report_path).is_file():
            # a Ray worker on another machine wrote the run directory: keep the report it sent back
            copy = self.folder / "reports" / f"{run_dir_name(row.task_id)}.md"
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_text(result["report"], encoding="utf-8")
            row.report_path = str(copy)
            self.summary.problems.append(
                f"{row.task_id}: the run directory is not visible here (not a shared filesystem?); "
                f"report copied to {copy}"
            )

    def poll_spend(self) -> None:
        """Re-read the spend of running tasks from their ``run.json`` (all a Ray driver can see)."""
        for task_id in self.running.values():
            info = _info(self.run_dir(task_id))
            if info is not None:
                cost = float(info.usage.get("cost_usd", 0.0))
                self.live_cost[task_id] = max(self.live_cost.get(task_id, 0.0), cost)

    def spent(self) -> float:
        return sum(
            self.live_cost.get(task_id, row.cost_usd) if task_id in self.since else row.cost_usd
            for task_id, row in self.rows.items()
        )

    async def stop_running(self) -> None:
        """Cancel what still runs (the benchmark itself was interrupted) and leave it ``pending``."""
        if not self.running:
            return
        for job in self.running:
            job.cancel()
        await asyncio.gather(*self.running, return_exceptions=True)
        for task_id in self.running.values():
            row = self.rows[task_id]
            row.status, row.error, row.ended = "pending", "interrupted", _now()
            info = _info(self.run_dir(task_id))
            if info is not None:
                _copy_usage(row, info, None)
            self.store.upsert_task(row)
        self.running.clear()

    def emit(self, kind: UpdateKind, task_id: str = "", *, message: str = "") -> None:
        if self.on_update is None:
            return
        statuses = [row.status for row in self.rows.values()]
        self.on_update(
            BenchUpdate(
                kind=kind,
                name=self.name,
                total=len(self.tasks),
                done=statuses.count("done"),
                failed=statuses.count("failed"),
                running=statuses.count("running"),
                pending=statuses.count("pending"),
                queued=len(self.queue),
                spent_usd=self.spent(),
                max_cost=self.max_cost,
                concurrency=self.concurrency,
                mean_wall_s=sum(self.walls) / len(self.walls) if self.walls else None,
                task_id=task_id,
                row=replace(self.rows[task_id]) if task_id else None,
                running_since=dict(self.since),
                message=message,
            )
        )


def _priced(settings: Settings) -> bool:
    from deepresearch.llm.pricing import overrides, price_for

    if settings.is_local or not settings.model:
        return True  # nothing to pay, or nothing will run
    return price_for(settings.model, overrides(settings.prices)) is not None


def _info(run_dir: Path) -> RunInfo | None:
    try:
        return RunDir(run_dir).meta
    except RunStoreError:
        return None


def _finished(run: RunDir) -> RunFinished | None:
    """The last ``run_finished`` event of the run, if its log can be read."""
    try:
        events = run.events()
    except RunStoreError:
        return None  # resume will say what is wrong with it
    return next((e for e in reversed(events) if isinstance(e, RunFinished)), None)


def _copy_usage(row: TaskRow, info: RunInfo | None, finished: RunFinished | None) -> None:
    usage = info.usage if info is not None else finished.usage if finished is not None else {}
    row.steps = info.steps if info is not None else finished.steps if finished is not None else row.steps
    row.prompt_tokens = int(usage.get("prompt_tokens", row.prompt_tokens))
    row.completion_tokens = int(usage.get("completion_tokens", row.completion_tokens))
    row.cost_usd = float(usage.get("cost_usd", row.cost_usd))
    if info is not None and info.ended and not row.ended:
        row.ended = info.ended
    if info is not None and info.outcome:
        row.outcome = info.outcome
