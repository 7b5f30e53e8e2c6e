"""How fast do events reach a browser, and what does the server add to a job?

Three processes: the fake OpenAI server (each reply after ``--latency`` seconds: a 10-step plan-and-
update run), ``deepresearch serve``, and this client. Event latency is the time from the agent
stamping an event (its ``ts``, millisecond precision) to this client reading it off the SSE stream.
Overhead per job: jobs submitted one at a time, submit → the stream's ``end``, against the same run
started with ``research()`` in this process (the baseline, same model, same steps).

    .venv/bin/python benchmarks/server.py [--jobs 10] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
STEPS = 10


def script(request: dict[str, Any]) -> Any:
    """Plan, then update the plan STEPS - 2 times, then answer; each reply after BENCH_LATENCY s."""
    from tests.fakes.openai_server import Reply

    delay = float(os.environ.get("BENCH_LATENCY", "0.05"))
    turn = sum(1 for m in request["messages"] if m.get("role") == "assistant")
    if turn < STEPS - 1:
        update = {str(turn + 1): {"task": f"Look up fact {turn + 1}", "status": "completed"}}
        return Reply(content=f"Step {turn + 1}.", tool_calls=[("todo", {"updates": update})], delay=delay)
    return Reply(content="<answer>\n# Report\n\nThe answer.\n</answer>", delay=delay)


def start(command: list[str], marker: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    stream = process.stdout if marker == "stdout" else process.stderr
    assert stream is not None
    for line in stream:
        if line.startswith("listening on"):
            return process, line.split()[-1]
    raise SystemExit(f"{command[2:5]} did not start: {process.communicate()[1][-2000:]}")


def stamped(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def follow(client: httpx.Client, job_id: str) -> tuple[list[float], float]:
    """The job's event latencies (seconds) and when its stream ended."""
    latencies = []
    with client.stream("GET", f"/v1/research/{job_id}/events") as response:
        event = ""
        for line in response.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event != "end":
                latencies.append(time.time() - stamped(json.loads(line[6:])["ts"]))
            elif line.startswith("data: "):
                return latencies, time.perf_counter()
    raise SystemExit(f"job {job_id}: the stream ended without an end event")


def through_server(url: str, jobs: int) -> tuple[list[float], list[float]]:
    latencies, walls = [], []
    with httpx.Client(base_url=url, timeout=120) as client:
        for i in range(jobs):
            started = time.perf_counter()
            job = client.post("/v1/research", json={"question": f"Question {i}?"}).json()
            found, ended = follow(client, job["id"])
            latencies += found
            walls.append(ended - started)
            status = client.get(f"/v1/research/{job['id']}").json()["status"]
            if status != "done":
                raise SystemExit(f"job {job['id']} ended {status}")
    return latencies, walls


def in_process(base_url: str, index: Path, tmp: Path, jobs: int, tag: str) -> list[float]:
    from deepresearch.config import load_settings
    from deepresearch.research import research

    walls = []
    for i in range(jobs):
        settings = load_settings(
            {"base_url": base_url, "model": "fake-model", "index": index, "out": tmp / f"direct-{tag}-{i}"},
            env={},
        )
        started = time.perf_counter()
        asyncio.run(research(f"Question {i}?", settings))
        walls.append(time.perf_counter() - started)
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()
    env = dict(os.environ, BENCH_LATENCY=str(args.latency), PYTHONPATH=str(ROOT))
    fake, base_url = start(
        [sys.executable, "-m", "tests.fakes.openai_server", "--script", "benchmarks.server:script"],
        "stdout",
        env,
    )
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        from deepresearch.search.local import LocalIndex

        LocalIndex(tmp / "index.sqlite").close()
        serve, url = start(
            [
                *(
                    sys.executable,
                    "-m",
                    "deepresearch",
                    "serve",
                    "--port",
                    "0",
                    "--data-dir",
                    str(tmp / "data"),
                ),
                *("--base-url", base_url, "--model", "fake-model", "--index", str(tmp / "index.sqlite")),
            ],
            "stderr",
            env,
        )
        try:
            through_server(url, 1)  # warm the server's imports and token ranks
            latencies, served = through_server(url, args.jobs)
            in_process(base_url, tmp / "index.sqlite", tmp, 1, "warm")
            direct = in_process(base_url, tmp / "index.sqlite", tmp, args.jobs, "timed")
        finally:
            serve.terminate()
            serve.wait(timeout=60)
            fake.terminate()
            fake.wait(timeout=10)
    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    print(f"{args.jobs} jobs × {STEPS} steps, model latency {args.latency * 1000:.0f} ms")
    print(
        f"event latency agent → SSE client over {len(ms)} events: p50 {statistics.median(ms):.1f} ms, "
        f"p95 {p95:.1f} ms, max {ms[-1]:.1f} ms (timestamps have 1 ms resolution)"
    )
    served_median, direct_median = statistics.median(served), statistics.median(direct)
    print(
        f"job wall time: server {served_median:.3f} s, in-process research() {direct_median:.3f} s; "
        f"server overhead {1000 * (served_median - direct_median):.0f} ms per job "
        f"({served_median / direct_median:.2f}×)"
    )


if __name__ == "__main__":
    main()
