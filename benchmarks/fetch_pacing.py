"""Does politeness slow a run whose pages share one host? A 30-step run against local page servers.

Each step the model "thinks" for ``--latency`` seconds (a sleep standing in for the model's reply),
and every ``--open-every``-th step opens ``--pages`` pages at once, as ``batch_open`` does, through
the real ``HttpFetcher`` (its SSRF guard, per-host cap, pacer and HTML extraction) from page servers
on loopback serving ~5 KB pages. The pages either all share one host, or are spread over ten hosts
(ten ports: the fetcher paces host and port). Both layouts run with a politeness burst of 1 (every
request to a host ``--host-delay`` after the previous one: the fetcher before the token bucket) and
with the default burst, interleaved, ``--repeat`` times; the median wall time of each is printed.

The bucket refills at one request per ``--host-delay``, so a run that asks one host for more than that
on average is held to that rate whatever the burst: one host then is slower than ten by design. The
last line says whether one host is as fast as ten (``one_vs_ten=X``: median wall, one host over ten
hosts, at the default burst; ≤ 1.05 counts as not slower, the noise of a loaded machine).

    .venv/bin/python benchmarks/fetch_pacing.py [--steps 30] [--latency 0.75] [--open-every 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fakes live in tests/
from tests.fakes.serve import ThreadedServer

from deepresearch.fetch.http import DEFAULT_HOST_BURST, DEFAULT_HOST_DELAY_S, FetchConfig, HttpFetcher

HOSTS = 10
WORDS = [
    "politeness",
    "bucket",
    "burst",
    "host",
    "delay",
    "page",
    "fetch",
    "extract",
    "model",
    "step",
    "source",
    "evidence",
]


def page_html(path: str, size: int = 5_000) -> bytes:
    """A ~``size``-byte article whose text differs by path (so extraction does real work)."""
    seed = sum(path.encode())
    paragraphs, length, i = [], 0, 0
    while length < size:
        words = " ".join(WORDS[(seed + i * 7 + k) % len(WORDS)] for k in range(40))
        paragraph = f"<p>{words.capitalize()}.</p>"
        paragraphs.append(paragraph)
        length += len(paragraph)
        i += 1
    body = "\n".join(paragraphs)
    head = f"<html><head><title>Page {path}</title></head>"
    return f"{head}<body><article><h1>Page {path}</h1>{body}</article></body></html>".encode()


Scope = MutableMapping[str, Any]


async def page_app(
    scope: Scope,
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    """ASGI: every GET answers a ~5 KB HTML page."""
    body = page_html(scope["path"])
    headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def page_urls(bases: list[str], layout: str, step: int, pages: int, run: str) -> list[str]:
    """The pages a step opens: all on the first host (``one``) or round-robin over all (``ten``)."""
    urls = []
    for k in range(pages):
        base = bases[0] if layout == "one" else bases[(step * pages + k) % len(bases)]
        urls.append(f"{base}/{run}/step-{step}/page-{k}.html")
    return urls


async def one_run(
    bases: list[str],
    *,
    layout: str,
    burst: int,
    steps: int,
    latency: float,
    open_every: int,
    pages: int,
    delay: float,
    run: str,
) -> tuple[float, int]:
    """A run of ``steps`` steps; returns its wall time and the pages it read."""
    config = FetchConfig(allow_private=True, host_delay_s=delay, host_burst=burst)
    read = 0
    started = time.perf_counter()
    async with HttpFetcher(config) as fetcher:
        for step in range(steps):
            await asyncio.sleep(latency)  # the model's reply
            if step % open_every == open_every - 1:
                opened = await asyncio.gather(
                    *(fetcher.fetch(u) for u in page_urls(bases, layout, step, pages, run))
                )
                read += sum(1 for page in opened if page.text)
    return time.perf_counter() - started, read


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--latency", type=float, default=0.75, help="seconds the model takes per step")
    parser.add_argument(
        "--open-every", type=int, default=2, help="a batch_open every N steps (2: search, open, ...)"
    )
    parser.add_argument("--pages", type=int, default=3, help="pages per batch_open")
    parser.add_argument("--host-delay", type=float, default=DEFAULT_HOST_DELAY_S)
    parser.add_argument("--burst", type=int, default=DEFAULT_HOST_BURST)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    servers = [ThreadedServer(page_app, f"pages-{i}") for i in range(HOSTS)]
    bases = [f"http://127.0.0.1:{server.start()}" for server in servers]
    opens = sum(1 for step in range(args.steps) if step % args.open_every == args.open_every - 1)
    demand = args.pages / (args.open_every * args.latency)
    pages_total = opens * args.pages
    # a token bucket allows at most burst + t / delay starts in t seconds: the last page of one host
    # cannot start before (pages - burst) × delay, whatever the model's speed
    paced = max(0, pages_total - args.burst) * args.host_delay
    print(
        f"{args.steps} steps × {args.latency:.2f} s model, {args.pages} pages every {args.open_every} "
        f"step(s): {pages_total} pages, {demand:.2f}/s asked of one host; politeness allows a burst of "
        f"{args.burst}, then {1 / args.host_delay:.2f}/s"
    )
    print(
        f"floors: the model {args.steps * args.latency:.2f} s; one host's politeness {paced:.2f} s "
        f"({'binds' if paced > args.steps * args.latency else 'does not bind'})"
    )
    walls: dict[tuple[int, str], list[float]] = {}
    try:
        for repeat in range(args.repeat):
            for burst in (1, args.burst):
                for layout in ("one", "ten"):
                    wall, read = asyncio.run(
                        one_run(
                            bases,
                            layout=layout,
                            burst=burst,
                            steps=args.steps,
                            latency=args.latency,
                            open_every=args.open_every,
                            pages=args.pages,
                            delay=args.host_delay,
                            run=f"r{repeat}-b{burst}-{layout}",
                        )
                    )
                    assert read == opens * args.pages, f"read {read} of {opens * args.pages} pages"
                    walls.setdefault((burst, layout), []).append(wall)
    finally:
        for server in servers:
            server.stop()
    for (burst, layout), values in walls.items():
        spread = f" (min {min(values):.2f}, max {max(values):.2f})" if len(values) > 1 else ""
        hosts = "one host " if layout == "one" else "ten hosts"
        print(f"burst {burst}, {hosts}: {statistics.median(values):.2f} s{spread}")
    one = statistics.median(walls[(args.burst, "one")])
    ten = statistics.median(walls[(args.burst, "ten")])
    before = statistics.median(walls[(1, "one")]) / statistics.median(walls[(1, "ten")])
    print(f"one_vs_ten_burst1={before:.2f}")
    print(f"one_vs_ten={one / ten:.2f}")


if __name__ == "__main__":
    main()
