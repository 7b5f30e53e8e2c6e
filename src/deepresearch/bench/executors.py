"""Where one benchmark task runs: in this process (asyncio) or in a Ray worker.

Both run the same ``execute_job``: it resumes the task's run directory when one was started there
(``events.jsonl`` exists), else starts a new run, and turns any failure of the run into a ``failed``
result instead of an exception — one task must never stop the others. Deciding between ``research``
and ``resume`` where the run happens makes a retried Ray task (its worker died) safe: it resumes.

The runner limits how many jobs are in flight (its launch slots are the semaphore, so that the spend
limit is checked before each launch); an executor just runs what it is given.

Ray: jobs go to a pool of actors, each an event loop hosting up to ``JOBS_PER_WORKER`` runs (runs
wait on the network, so a process per run would waste a Python start-up per slot). The settings
travel as JSON with the secrets in clear (a worker needs the API keys), as a task argument — never
in a log line, an exception or the result. Workers write
the run directory at the same absolute path, so the benchmark folder must be on a filesystem they
share with the driver; when it is not, the report comes back in the result and the runner keeps a
copy. Ray is the optional extra ``bench`` and is imported only here, on first use.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypedDict

from pydantic import SecretStr

from deepresearch.config import Settings
from deepresearch.errors import ConfigError, RunStoreError
from deepresearch.research import EventCallback, research, resume, warm_up
from deepresearch.runs import RunDir

logger = logging.getLogger(__name__)

ERROR_MAX_CHARS = 500
"""A failed task's error is kept to one line of at most this many characters."""
RAY_EXTRA_HINT = "pip install 'deepresearch[bench]'"
JOBS_PER_WORKER = 8
"""Runs one Ray worker process hosts at once."""


@dataclass(frozen=True)
class Job:
    """One task to run: its question, its run directory and its own settings (``out`` = the run dir)."""

    task_id: str
    prompt: str
    run_dir: Path
    settings: Settings


class JobResult(TypedDict):
    """What a job reports back (plain data, so it crosses process boundaries)."""

    status: Literal["done", "failed"]
    resumed: bool
    steps: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    """The run's whole spend, earlier attempts included (``resume`` replays their usage)."""
    wall_s: float
    """This attempt only."""
    report_path: str
    report: str
    """The report's text when asked for (Ray), else empty."""
    error: str
    outcome: str
    """The run's outcome once done (``report``, ``extractive``, ``uncited``, ``empty``), else empty."""


class Executor(Protocol):
    live_events: bool
    """Whether ``on_event`` sees the run's events as they happen (else the runner reads ``run.json``)."""

    async def run(self, job: Job, on_event: EventCallback | None) -> JobResult: ...

    async def aclose(self) -> None: ...


def one_line(exc: BaseException) -> str:
    """``Type: message`` on one line, cut to ``ERROR_MAX_CHARS``."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= ERROR_MAX_CHARS else text[: ERROR_MAX_CHARS - 1] + "…"


async def execute_job(
    job: Job, on_event: EventCallback | None = None, *, include_report: bool = False
) -> JobResult:
    """Run (or resume) one task; an ``Exception`` becomes a ``failed`` result, cancellation propagates."""
    resumed = RunDir(job.run_dir).started
    started = time.monotonic()
    try:
        if resumed:
            result = await resume(job.run_dir, job.settings, on_event=on_event)
        else:
            result = await research(job.prompt, job.settings, on_event=on_event)
    except Exception as exc:
        error = one_line(exc)
        logger.warning("benchmark task %s failed: %s", job.task_id, error)
        return _result("failed", resumed, job.run_dir, _recorded_usage(job.run_dir), started, error=error)
    report = result.report if include_report else ""
    return _result(
        "done",
        resumed,
        job.run_dir,
        result.usage,
        started,
        steps=result.steps,
        report=report,
        outcome=result.outcome,
    )


def _recorded_usage(run_dir: Path) -> dict[str, Any]:
    try:
        info = RunDir(run_dir).meta
    except RunStoreError:
        return {}
    return dict(info.usage) | {"steps": info.steps}


def _result(
    status: Literal["done", "failed"],
    resumed: bool,
    run_dir: Path,
    usage: dict[str, Any],
    started: float,
    *,
    steps: int | None = None,
    report: str = "",
    error: str = "",
    outcome: str = "",
) -> JobResult:
    report_file = RunDir(run_dir).report_path
    return JobResult(
        status=status,
        resumed=resumed,
        steps=int(steps if steps is not None else usage.get("steps", 0)),
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
        cost_usd=float(usage.get("cost_usd", 0.0)),
        wall_s=time.monotonic() - started,
        report_path=str(report_file) if status == "done" else "",
        report=report,
        error=error,
        outcome=outcome,
    )


class LocalExecutor:
    """Runs each job in this process's event loop; the first jobs wait for ``warm_up`` (in a thread,
    once) rather than each stalling the loop on the first use of what it loads."""

    live_events = True

    def __init__(self) -> None:
        self._warm: asyncio.Future[None] | None = None

    async def run(self, job: Job, on_event: EventCallback | None) -> JobResult:
        if self._warm is None:
            self._warm = asyncio.ensure_future(asyncio.to_thread(warm_up))
        await asyncio.shield(self._warm)
        return await execute_job(job, on_event)

    async def aclose(self) -> None:
        return None


# --- Ray


def require_ray() -> Any:
    """The ``ray`` module, or a ``ConfigError`` naming the extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            f"the Ray executor needs the optional extra 'bench' ({RAY_EXTRA_HINT}); or use the local executor"
        ) from exc
    return ray


def settings_payload(settings: Settings) -> dict[str, Any]:
    """The settings as JSON for a worker: only the fields that were set, secrets in clear."""
    data = settings.model_dump(mode="json", exclude_unset=True)
    for name in data:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            data[name] = value.get_secret_value()
    return data


def job_payload(job: Job) -> dict[str, Any]:
    return {
        "task_id": job.task_id,
        "prompt": job.prompt,
        "run_dir": str(job.run_dir.absolute()),
        "settings": settings_payload(job.settings),
    }


def job_from_payload(payload: dict[str, Any]) -> Job:
    return Job(
        task_id=payload["task_id"],
        prompt=payload["prompt"],
        run_dir=Path(payload["run_dir"]),
        settings=Settings.model_validate(payload["settings"]),
    )


class BenchWorker:
    """A Ray actor: one process, one event loop, up to ``jobs_per_worker`` runs at once.

    Runs wait on the network, so one process can host many, as the local executor does; a Ray task per
    run would instead start a Python process (imports, token ranks: about a second of CPU) per slot.
    """

    def __init__(self) -> None:
        warm_up()  # before the actor takes jobs: see ``LocalExecutor``

    async def run(self, payload: dict[str, Any]) -> JobResult:
        return await execute_job(job_from_payload(payload), include_report=True)


class RayExecutor:
    """Spreads jobs over a pool of ``BenchWorker`` actors on the cluster at ``address``, or on a local
    Ray it starts; each job goes to the actor with the fewest in flight."""

    live_events = False

    def __init__(
        self, *, address: str | None, concurrency: int, jobs_per_worker: int = JOBS_PER_WORKER
    ) -> None:
        ray = require_ray()
        self._ray = ray
        self._owns_ray = False
        workers = math.ceil(concurrency / jobs_per_worker)
        if not ray.is_initialized():
            options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
            if address:
                ray.init(address=address, **options)
            else:
                ray.init(num_cpus=workers, include_dashboard=False, **options)
            self._owns_ray = True
        # an actor that dies is restarted once and its jobs retried: a retried job resumes its run
        actor = ray.remote(num_cpus=1, max_restarts=1, max_task_retries=1)(BenchWorker)
        per_worker = math.ceil(concurrency / workers)
        self._workers = [
            actor.options(max_concurrency=per_worker, scheduling_strategy="SPREAD").remote()
            for _ in range(workers)
        ]
        self._in_flight = [0] * workers

    async def run(self, job: Job, on_event: EventCallback | None) -> JobResult:
        chosen = min(range(len(self._workers)), key=self._in_flight.__getitem__)
        self._in_flight[chosen] += 1
        ref = self._workers[chosen].run.remote(job_payload(job))
        try:
            result: JobResult = await asyncio.wrap_future(ref.future())
        except asyncio.CancelledError:
            self._ray.cancel(ref)  # the run is cancelled inside the worker and marked so
            raise
        finally:
            self._in_flight[chosen] -= 1
        return result

    async def aclose(self) -> None:
        for worker in self._workers:
            self._ray.kill(worker)
        self._workers = []
        if self._owns_ray:
            self._ray.shutdown()
            self._owns_ray = False


def make_executor(kind: str, *, concurrency: int, ray_address: str | None = None) -> Executor:
    if kind == "local":
        return LocalExecutor()
    if kind == "ray":
        return RayExecutor(address=ray_address, concurrency=concurrency)
    raise ConfigError(f"unknown executor {kind!r}; use local or ray")
