"""How much time does the agent itself add per step, and does it grow as the run grows?

A 30-step scripted run against the fake OpenAI server (its own process, zero model latency, SSE
streaming). Each step the model calls a cheap tool that returns ~18k characters, so the context
passes the 80k-token compaction limit around step 25 — where the reference agent slowed from
~0.4 s to 0.9–2.1 s per step. The baseline is a bare OpenAI-SDK loop that sends the same growing
conversation to the same server, in the same benchmark run. Each side runs in its own subprocess so
that peak RSS and CPU time are its own.

    .venv/bin/python benchmarks/agent_overhead.py [--steps 30] [--repeat 3]

Prints per-step wall and CPU time (CPU = the process's own work, excluding waits for the server),
early (steps 1-5) vs late (steps 25-30), startup time to the first model request, peak RSS, and the
ratios against the SDK floor.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STEPS = 30
WORDS = [
    "retrieval",
    "ranking",
    "evidence",
    "source",
    "citation",
    "analysis",
    "energy",
    "density",
    "battery",
    "cathode",
    "policy",
    "market",
    "growth",
    "regulation",
    "2024",
    "percent",
    "index",
    "passage",
    "report",
    "研究",
    "数据",
]


def bulk_text(step: int, chars: int = 18_000) -> str:
    """Deterministic, varied text (so tokenising it is realistic work)."""
    out, i, size = [], step * 7919, 0
    while size < chars:
        i = (i * 1103515245 + 12345) % 2**31
        word = WORDS[i % len(WORDS)] + ("." if i % 13 == 0 else "")
        out.append(word)
        size += len(word) + 1
    return " ".join(out)


def script(request: dict[str, Any]) -> Any:
    """The fake model: call `bulk` until step STEPS, then answer."""
    from tests.fakes.openai_server import Reply

    steps = int(os.environ.get("BENCH_STEPS", STEPS))
    turn = sum(1 for m in request["messages"] if m.get("role") == "assistant")
    if turn < steps:
        return Reply(content=f"Step {turn}: reading more.", tool_calls=[("bulk", {"n": turn})])
    return Reply(content="<answer>Done.</answer>")


# --- the agent side -----------------------------------------------------------------------------


def run_agent(base_url: str, steps: int, out: Path) -> dict[str, Any]:
    started_cpu = time.process_time()
    from pydantic import BaseModel

    from deepresearch.config import load_settings
    from deepresearch.events import LLMCall
    from deepresearch.research import research
    from deepresearch.tools.base import Tool, ToolResult
    from deepresearch.tools.registry import default_tools, register

    class BulkArgs(BaseModel):
        n: int

    async def bulk(args: BulkArgs, ctx: Any) -> ToolResult:
        text = bulk_text(args.n)
        return ToolResult(text=text, compact=text[:500])

    tools = default_tools()
    register(tools, Tool(name="bulk", args=BulkArgs, run=bulk, description="Return a long text."))
    marks: list[tuple[float, float]] = []

    def on_event(event: Any) -> None:
        if isinstance(event, LLMCall):
            marks.append((time.perf_counter(), time.process_time()))

    settings = load_settings(
        {
            "base_url": base_url,
            "model": "fake-model",
            "out": out,
            "max_steps": steps + 5,
            "index": tiny_index(out.parent),
        },
        env={},
    )
    import_done = time.perf_counter()
    start = time.perf_counter()
    asyncio.run(
        research("Benchmark question about battery energy density?", settings, on_event=on_event, tools=tools)
    )
    compactions = sum(
        1 for line in (out / "events.jsonl").read_text().splitlines() if '"context_compacted"' in line
    )
    return {
        "marks": [(w - start, c - started_cpu) for w, c in marks],
        "compactions": compactions,
        "import_s": import_done - _PROCESS_START,
    }


# --- the SDK side ---------------------------------------------------------------------------------


def run_sdk(base_url: str, steps: int) -> dict[str, Any]:
    started_cpu = time.process_time()
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="sk-bench", max_retries=0)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "bulk",
                "description": "Return a long text.",
                "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}},
            },
        }
    ]
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a research agent. " * 200},
        {"role": "user", "content": "Benchmark question about battery energy density?"},
    ]
    marks: list[tuple[float, float]] = []
    import_done = time.perf_counter()

    async def loop() -> None:
        start = time.perf_counter()
        for _ in range(steps + 1):
            stream = await client.chat.completions.create(
                model="fake-model",
                messages=messages,
                tools=tools,
                stream=True,  # type: ignore[arg-type]
                stream_options={"include_usage": True},
            )
            content, calls = "", {}
            async for chunk in stream:
                for choice in chunk.choices:
                    content += choice.delta.content or ""
                    for call in choice.delta.tool_calls or []:
                        slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                        slot["id"] = call.id or slot["id"]
                        if call.function:
                            slot["name"] = call.function.name or slot["name"]
                            slot["arguments"] += call.function.arguments or ""
            marks.append((time.perf_counter() - start, time.process_time() - started_cpu))
            if not calls:
                break
            messages.append(
                {
                    "role": "assistant",
                    "content": content,
                    "tool_calls": [
                        {
                            "id": c["id"],
                            "type": "function",
                            "function": {"name": c["name"], "arguments": c["arguments"]},
                        }
                        for c in calls.values()
                    ],
                }
            )
            for c in calls.values():
                n = json.loads(c["arguments"])["n"]
                messages.append({"role": "tool", "tool_call_id": c["id"], "content": bulk_text(n)})
        await client.close()

    asyncio.run(loop())
    return {"marks": marks, "compactions": 0, "import_s": import_done - _PROCESS_START}


_PROCESS_START = time.perf_counter()


def child(side: str, base_url: str, steps: int, out: Path) -> None:
    result = run_agent(base_url, steps, out) if side == "agent" else run_sdk(base_url, steps)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))


# --- the driver -----------------------------------------------------------------------------------


def per_step(marks: list[list[float]]) -> tuple[list[float], list[float]]:
    """Wall and CPU time between consecutive model replies (step k = reply k-1 → reply k)."""
    walls = [b[0] - a[0] for a, b in itertools.pairwise(marks)]
    cpus = [b[1] - a[1] for a, b in itertools.pairwise(marks)]
    return walls, cpus


def tiny_index(folder: Path) -> Path:
    """A one-document local index in ``folder`` (a run refuses a missing or empty index)."""
    from deepresearch.search.local import LocalIndex

    path = folder / "tiny-index.sqlite"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        document = folder / "tiny-doc" / "battery.md"
        document.parent.mkdir(exist_ok=True)
        document.write_text("# Batteries\n\nLithium-ion cells store about 250 Wh per kilogram.\n")
        with LocalIndex(path) as index:
            index.add_paths([document.parent])
    return path


def startup_seconds(base_url: str, tmp: Path) -> float:
    """Spawn `deepresearch research` and time until its first model reply is recorded."""
    env = dict(os.environ)
    begin = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deepresearch",
            "research",
            "startup probe",
            "--base-url",
            base_url,
            "--model",
            "fake-model",
            "--out",
            str(tmp / "startup"),
            "--quiet",
            "--max-steps",
            "1",
            "--index",
            str(tiny_index(tmp)),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    marker = tmp / "startup" / "events.jsonl"
    while proc.poll() is None and not (marker.exists() and '"llm_call"' in marker.read_text()):
        time.sleep(0.005)
    elapsed = time.perf_counter() - begin
    proc.kill()
    proc.communicate()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", choices=["agent", "sdk"])
    parser.add_argument("--base-url")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.base_url, args.steps, args.out)
        return

    import tempfile

    # this checkout's code, not whatever is installed (so a worktree of another commit measures itself)
    env = dict(os.environ, BENCH_STEPS=str(args.steps), PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT}")
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_server", "--script", "benchmarks.agent_overhead:script"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = server.stdout.readline()  # type: ignore[union-attr]
        base_url = line.strip().split()[-1]
        results: dict[str, list[dict[str, Any]]] = {"agent": [], "sdk": []}
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(args.repeat):
                for side in ("sdk", "agent"):
                    out = Path(tmp) / f"{side}-{r}"
                    done = subprocess.run(
                        [
                            sys.executable,
                            __file__,
                            "--child",
                            side,
                            "--base-url",
                            base_url,
                            "--steps",
                            str(args.steps),
                            "--out",
                            str(out),
                        ],
                        env=env,
                        cwd=ROOT,
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    results[side].append(json.loads(done.stdout.strip().splitlines()[-1]))
            startups = [startup_seconds(base_url, Path(tmp) / f"s{i}") for i in range(args.repeat)]
        report(results, startups, args.steps)
    finally:
        server.terminate()
        server.communicate()


def report(results: dict[str, list[dict[str, Any]]], startups: list[float], steps: int) -> None:
    summary: dict[str, dict[str, float]] = {}
    for side, runs in results.items():
        walls, cpus, early_cpu, late_cpu, early_wall, late_wall = [], [], [], [], [], []
        for run in runs:
            w, c = per_step(run["marks"])
            walls += w
            cpus += c
            early_wall += w[:5]
            early_cpu += c[:5]
            late_wall += w[-6:]
            late_cpu += c[-6:]
        summary[side] = {
            "wall_ms": 1000 * statistics.median(walls),
            "cpu_ms": 1000 * statistics.median(cpus),
            "early_wall_ms": 1000 * statistics.median(early_wall),
            "late_wall_ms": 1000 * statistics.median(late_wall),
            "early_cpu_ms": 1000 * statistics.median(early_cpu),
            "late_cpu_ms": 1000 * statistics.median(late_cpu),
            "rss_mb": max(r["peak_rss_mb"] for r in runs),
            "import_s": statistics.median(r["import_s"] for r in runs),
            "compactions": statistics.median(r["compactions"] for r in runs),
        }
    a, s = summary["agent"], summary["sdk"]
    print(f"{steps}-step run, median over {len(results['agent'])} runs each (ms per step)")
    print(f"{'':24}{'agent':>10}{'sdk':>10}{'ratio':>8}")
    for key, label in (
        ("wall_ms", "wall per step"),
        ("cpu_ms", "cpu per step"),
        ("early_wall_ms", "wall steps 1-5"),
        ("late_wall_ms", "wall steps 25-30"),
        ("early_cpu_ms", "cpu steps 1-5"),
        ("late_cpu_ms", "cpu steps 25-30"),
    ):
        print(f"{label:24}{a[key]:>10.1f}{s[key]:>10.1f}{a[key] / s[key]:>8.2f}")
    print(
        f"late/early cpu: agent {a['late_cpu_ms'] / a['early_cpu_ms']:.2f}, "
        f"sdk {s['late_cpu_ms'] / s['early_cpu_ms']:.2f}; "
        f"late/early wall: agent {a['late_wall_ms'] / a['early_wall_ms']:.2f}, "
        f"sdk {s['late_wall_ms'] / s['early_wall_ms']:.2f}"
    )
    print(
        f"peak RSS: agent {a['rss_mb']:.0f} MB, sdk {s['rss_mb']:.0f} MB; "
        f"import: agent {a['import_s']:.2f} s, sdk {s['import_s']:.2f} s; "
        f"compactions per agent run: {a['compactions']:.0f}"
    )
    print(f"startup (spawn → first model reply recorded): median {statistics.median(startups):.2f} s")


if __name__ == "__main__":
    main()
