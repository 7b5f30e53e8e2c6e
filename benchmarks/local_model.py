"""How fast is ``--model local`` on this machine, and does a growing conversation prefill only its new tokens?

Four measurements against the embedded server (``LocalModelServer``, the pulled default model unless
``--model`` names a GGUF file):

1. Load: spawn → ``/health`` answers, median of ``--loads`` starts.
2. Prefill: a ~2,000-token prompt with ``cache_prompt: false`` and one output token; tokens/s from the
   server's ``timings`` (median of 3).
3. Generation: 256 tokens with ``ignore_eos`` at temperature 0; tokens/s from ``timings`` (median of 3).
4. KV-cache reuse: a 5-step agent-like conversation (a ~600-token system prompt, then per step the model's
   reply plus a ~250-token tool result). Per step it prints the prompt size, the tokens served from the
   cache (``timings.cache_n``) and the tokens prefilled (``timings.prompt_n``), which should equal what the
   step added. Baseline: the same five prompts with ``cache_prompt: false``; the ratio is baseline prefill
   time over cached prefill time.

    .venv/bin/python benchmarks/local_model.py [--model PATH] [--threads N] [--loads 3]

Takes well under two minutes with the bundled 135M model.

``--research MODEL …`` instead times the README's first command, research part: ``deepresearch
research QUESTION --model MODEL`` as a user runs it (a new process each time, start-up, model load and
exit counted), the models interleaved, ``--repeat`` rounds. Per model it prints wall and CPU time
(the CLI and the model server together) as median and min–max, and for each run the outcome, the
resolved citations and whether the CREATE INDEX CONCURRENTLY page is among the references:

    .venv/bin/python benchmarks/local_model.py --research local local:qwen2.5-coder-1.5b --repeat 3
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from deepresearch.config import default_data_dir
from deepresearch.llm.local.models import model_path
from deepresearch.llm.local.server import LocalModelServer

VOCABULARY = (
    "the index ranks passages by authority and recency while the agent reads sources and cites evidence "
    "storage engines consensus protocols bloom filters caching compaction replication latency throughput "
    "benchmarks datasets rubrics judges citations references quotes tables figures"
)
STEPS = 5


def _text(count: int, seed: int) -> str:
    """``count`` pseudo-random words in sentences, the same for the same seed."""
    rng = random.Random(seed)
    vocabulary = VOCABULARY.split()
    sentences = []
    while count > 0:
        length = min(count, rng.randint(8, 18))
        sentences.append(" ".join(rng.choice(vocabulary) for _ in range(length)).capitalize() + ".")
        count -= length
    return " ".join(sentences)


def _chat(client: httpx.Client, model: str, messages: list[dict[str, str]], **extra: Any) -> dict[str, Any]:
    body = {"model": model, "messages": messages, "temperature": 0, **extra}
    response = client.post("/chat/completions", json=body)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def measure_load(path: Path, threads: int | None, loads: int) -> float:
    times = []
    for _ in range(loads):
        started = time.perf_counter()
        with LocalModelServer(path, threads=threads):
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure_speed(client: httpx.Client, model: str) -> tuple[float, int, float]:
    """(prefill tokens/s, prompt tokens, generation tokens/s)."""
    prompt = [{"role": "user", "content": _text(1500, seed=1)}]
    prefill = [_chat(client, model, prompt, max_tokens=1, cache_prompt=False)["timings"] for _ in range(3)]
    generate = [
        _chat(
            client,
            model,
            [{"role": "user", "content": "Write a long story about a lighthouse."}],
            max_tokens=256,
            ignore_eos=True,
            cache_prompt=False,
        )["timings"]
        for _ in range(3)
    ]
    return (
        statistics.median(t["prompt_per_second"] for t in prefill),
        prefill[0]["prompt_n"],
        statistics.median(t["predicted_per_second"] for t in generate),
    )


def conversation(client: httpx.Client, model: str, *, cache: bool) -> list[dict[str, Any]]:
    """Run the 5-step conversation; one row per step with the server's token counts and timings."""
    messages = [
        {"role": "system", "content": "You are a research agent. " + _text(450, seed=2)},
        {"role": "user", "content": "Question: how do storage engines use bloom filters? Start searching."},
    ]
    rows = []
    for step in range(STEPS):
        reply = _chat(client, model, messages, max_tokens=48, cache_prompt=cache)
        timings, usage = reply["timings"], reply["usage"]
        rows.append(
            {
                "prompt": usage["prompt_tokens"],
                "cached": timings["cache_n"],
                "prefilled": timings["prompt_n"],
                "prefill_ms": timings["prompt_ms"],
                "completion": usage["completion_tokens"],
            }
        )
        messages.append({"role": "assistant", "content": reply["choices"][0]["message"]["content"] or ""})
        messages.append({"role": "user", "content": f"Tool result {step + 1}: " + _text(200, seed=10 + step)})
    return rows


QUESTION = "How do I build a PostgreSQL index without blocking writes?"
CONCURRENTLY_PAGE = "sql-createindex.html#SQL-CREATEINDEX-CONCURRENTLY"


def research_once(model: str, out: Path) -> dict[str, Any]:
    """One ``deepresearch research`` in a child process: wall and CPU time, and what it delivered."""
    command = [sys.executable, "-m", "deepresearch", "research", QUESTION, "--model", model]
    command += ["--out", str(out), "--quiet"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    try:
        info = json.loads((out / "run.json").read_text())
        report = (out / "report.md").read_text()
    except OSError:
        info, report = {}, ""
    references = report.split("## References", 1)[-1] if "## References" in report else ""
    return {
        "exit": finished.returncode,
        "wall": wall,
        "cpu": cpu,
        "outcome": info.get("outcome"),
        "resolved": (info.get("citations") or {}).get("resolved", 0),
        "concurrently": CONCURRENTLY_PAGE in references,
        "threads": (info.get("local_threads") or {}).get("threads"),
        "error": finished.stderr.strip().splitlines()[-1] if finished.returncode not in (0, 3) else "",
    }


def research_benchmark(models: list[str], repeat: int) -> None:
    rows: dict[str, list[dict[str, Any]]] = {m: [] for m in models}
    with tempfile.TemporaryDirectory(prefix="local-research-") as scratch:
        for round_ in range(repeat):
            for model in models:  # interleaved: a busy spell hurts every model, not one
                row = research_once(model, Path(scratch) / f"{round_}-{model.replace('/', '_')}")
                rows[model].append(row)
                print(
                    f"round {round_ + 1} {model}: exit {row['exit']}, {row['wall']:.1f} s wall, "
                    f"{row['cpu']:.1f} s CPU, outcome {row['outcome']}, {row['resolved']} resolved "
                    f"citations, CONCURRENTLY page cited: {row['concurrently']}, threads {row['threads']}"
                    + (f" ({row['error']})" if row["error"] else ""),
                    flush=True,
                )
    print(f"\n{'model':<28}{'wall s (median, min-max)':>28}{'CPU s (median, min-max)':>28}  outcomes")
    for model, found in rows.items():
        walls, cpus = [r["wall"] for r in found], [r["cpu"] for r in found]
        outcomes = ", ".join(str(r["outcome"]) for r in found)
        print(f"{model:<28}{_spread(walls):>28}{_spread(cpus):>28}  {outcomes}")


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--research", nargs="+", metavar="MODEL", help="time the first command's research")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of --research")
    parser.add_argument("--model", type=Path, help="a GGUF file (default: the pulled default model)")
    parser.add_argument("--threads", type=int, help="CPU threads (default: llama.cpp's choice)")
    parser.add_argument("--loads", type=int, default=3, help="server starts to time")
    args = parser.parse_args()
    if args.research:
        research_benchmark(args.research, args.repeat)
        return
    path = args.model or model_path("local", default_data_dir())
    print(f"model: {path} ({path.stat().st_size / 1e6:.1f} MB), threads: {args.threads or 'auto'}")

    load = measure_load(path, args.threads, args.loads)
    print(f"load (spawn -> /health ok): median {load:.2f} s over {args.loads} starts")

    with LocalModelServer(path, threads=args.threads) as server:
        headers = {"Authorization": f"Bearer {server.api_key}"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=300) as client:
            prefill, prompt_tokens, generation = measure_speed(client, server.model_name)
            print(f"prefill: {prefill:.0f} tokens/s ({prompt_tokens}-token prompt, cache off, median of 3)")
            print(f"generation: {generation:.1f} tokens/s (256 tokens, median of 3)")
            cached = conversation(client, server.model_name, cache=True)
            baseline = conversation(client, server.model_name, cache=False)

    print(f"\n{STEPS}-step growing conversation, tokens ('new' = prompt minus the previous prompt and reply)")
    print(f"{'step':>4}{'prompt':>8}{'new':>6}{'cached':>8}{'prefilled':>10}{'ms':>8}{'no-cache ms':>13}")
    seen = 0
    for step, (row, base) in enumerate(zip(cached, baseline, strict=True), start=1):
        print(
            f"{step:>4}{row['prompt']:>8}{row['prompt'] - seen:>6}{row['cached']:>8}{row['prefilled']:>10}"
            f"{row['prefill_ms']:>8.1f}{base['prefill_ms']:>13.1f}"
        )
        seen = row["prompt"] + row["completion"]
    later = cached[1:]
    with_cache = sum(r["prefill_ms"] for r in cached)
    without = sum(r["prefill_ms"] for r in baseline)
    print(
        f"steps 2-{STEPS}: prefilled {sum(r['prefilled'] for r in later)} of "
        f"{sum(r['prompt'] for r in later)} prompt tokens ({sum(r['cached'] for r in later)} from the cache)"
    )
    print(
        f"prefill time over {STEPS} steps: {with_cache:.0f} ms with the cache, {without:.0f} ms without "
        f"(cache_prompt false): ratio {without / with_cache:.1f}x"
    )


if __name__ == "__main__":
    main()
