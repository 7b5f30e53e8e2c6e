"""How long does counting the tokens of one hostile text take? (issue 11: quadratic counting)

The counter runs on the event loop for every message the agent appends, so a model that writes 16k
characters without a space, or an 8 MB tool argument, used to freeze the whole process: the byte-pair
merge is quadratic in the length of a pre-token. Each case runs in its own subprocess under a time
limit, so the old code can be measured too (it never finishes the large cases):

    .venv/bin/python benchmarks/token_count.py [--limit 60] [--src /path/to/old/checkout/src]

Prints seconds per case (the rank file is loaded before the clock starts) and the token count; the
baseline is the same text counted by ``estimate_tokens`` (a regex over the characters), the cost
floor of any counter that reads the text.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "16k chars, no space (one letter)": lambda: "a" * 16_000,
    "16k chars, no space (random letters)": lambda: _letters(16_000),
    "1 MB, no space (random letters)": lambda: _letters(1_000_000),
    "1 MB prose": lambda: _prose(1_000_000),
    "8 MB JSON tool argument": lambda: json.dumps(
        {"action": "write", "path": "x", "content": "x" * 8_000_000}
    ),
    "60 MB, no space (one letter)": lambda: "b" * 60_000_000,
}


def _letters(n: int) -> str:
    return "".join(random.Random(7).choices("abcdefghijklmnopqrstuvwxyz", k=n))


def _prose(n: int) -> str:
    text = "\n".join(p.read_text() for p in sorted((ROOT / "tests" / "data" / "corpus").rglob("*.md")))
    return (text * (n // len(text) + 1))[:n]


def measure(case: str) -> None:
    """Child process: count one case and print ``seconds tokens estimate_seconds``."""
    from deepresearch.llm.tokens import count_tokens, estimate_tokens

    text = CASES[case]()
    count_tokens("warm up: load the rank file")
    started = time.perf_counter()
    tokens = count_tokens(text)
    counted = time.perf_counter() - started
    started = time.perf_counter()
    estimate_tokens(text)
    print(counted, tokens, time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=float, default=60.0, help="seconds per case before it is killed")
    parser.add_argument("--src", type=Path, default=ROOT / "src", help="the package's src folder to measure")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        measure(args.case)
        return
    env = {**os.environ, "PYTHONPATH": f"{args.src}{os.pathsep}{ROOT}"}
    print(f"counting with {args.src} (limit {args.limit:g} s per case)")
    for case in CASES:
        command = [sys.executable, __file__, "--case", case]
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.limit)
        except subprocess.TimeoutExpired:
            print(f"  {case:40s} > {args.limit:g} s (killed)")
            continue
        if done.returncode != 0:
            print(f"  {case:40s} failed: {done.stderr.strip().splitlines()[-1]}")
            continue
        counted, tokens, floor = done.stdout.split()
        ratio = float(counted) / max(float(floor), 1e-6)
        print(f"  {case:40s} {float(counted):8.3f} s  {int(tokens):>10,} tokens  ({ratio:.1f}x the estimate)")


if __name__ == "__main__":
    main()
