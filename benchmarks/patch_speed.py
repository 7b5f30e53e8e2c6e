"""How long does the ``patch`` tool take to place an edit in a long file?

A 20,000-line report (random words, the same every run). Three cases, interleaved, each repeated:
an exact match (the baseline: one ``str.find``), a fuzzy match (the passage with two typos, found by
the similarity search), and a miss (a passage that is nowhere, so the search scans everything).
Prints median and min–max wall and CPU time per case and the ratio of each to the exact match.

    .venv/bin/python benchmarks/patch_speed.py [--lines 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import time

from deepresearch.errors import ToolError
from deepresearch.tools.patch import apply_patch


def long_report(lines: int) -> list[str]:
    rng = random.Random(7)
    vocab = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(2000)
    ]
    return [
        "" if i % 4 == 3 else " ".join(rng.choice(vocab) for _ in range(rng.randint(4, 12)))
        for i in range(lines)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    lines = long_report(args.lines)
    text = "\n".join(lines) + "\n"
    at = int(args.lines * 0.7)
    target = lines[at] + "\n" + lines[at + 1]
    cases = {
        "exact": target,
        "fuzzy": target[:5] + "#" + target[6:30] + target[31:],
        "miss": "no such passage anywhere in this text at all",
    }
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.repeat):
        for name, old in cases.items():  # interleaved: a busy spell hurts every case alike
            started, started_cpu = time.perf_counter(), time.process_time()
            with contextlib.suppress(ToolError):  # the miss raises, as it should
                apply_patch(text, old, "REPLACED")
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - started_cpu)
    base = statistics.median(wall["exact"])
    print(f"{args.lines:,} lines ({len(text):,} chars), {args.repeat} rounds")
    for name in cases:
        w, c = wall[name], cpu[name]
        print(
            f"{name:>6}: wall {statistics.median(w) * 1e3:8.1f} ms ({min(w) * 1e3:.1f}-{max(w) * 1e3:.1f}), "
            f"cpu {statistics.median(c) * 1e3:8.1f} ms, x{statistics.median(w) / base:,.0f} the exact match"
        )


if __name__ == "__main__":
    main()
