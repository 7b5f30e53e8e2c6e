"""How fast is the local index, and does ``batch_open`` really read pages in parallel?

Three measurements, each printed with its target and a ratio:

1. Indexing: a synthetic corpus of ~100k paragraph passages (Zipf-distributed words, English
   function words at the head of the distribution, documents with titles and section headings; 80 %
   of the passages in JSONL files, 20 % as Markdown files) is written to a temporary folder and added
   with ``LocalIndex.add_paths``. Target: >= 9,000 passages per CPU-second (process CPU time, which
   a busy machine does not inflate the way it does wall time); wall time is printed beside it.
2. Query latency: ~500 varied queries (words lifted from a passage, rare words, common words, titles,
   questions, function words alone) against that index, one at a time through the async ``search``.
   Per query class: p50 and p95 of wall time and of CPU time (the process's, so it includes the
   worker thread that runs SQLite). Target: p95 < 30 ms for every class.
3. ``batch_open`` of 20 pages from a local HTTP server that waits 100 ms before each answer,
   through ``deepresearch.tools.web.batch_open`` and ``HttpFetcher`` (cache and politeness delay
   off). Baseline: the same 20 fetches one after another. Target: < 0.5 s for the batch.

    .venv/bin/python benchmarks/search.py [--passages 100000] [--queries 500] [--profile]

``--profile`` also runs indexing and the queries under cProfile and prints where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import math
import pstats
import random
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from deepresearch.fetch.http import FetchConfig, HttpFetcher
from deepresearch.search.local import LocalIndex

try:  # moving from local.py to passages.py while this was written
    from deepresearch.search.passages import build_fts_query
except ImportError:
    from deepresearch.search.local import build_fts_query  # type: ignore[attr-defined, no-redef, unused-ignore]
from deepresearch.sources import SourceRegistry
from deepresearch.tools.base import ToolContext
from deepresearch.tools.web import WebArgs, batch_open

INDEX_TARGET = 9_000.0  # passages per CPU-second
QUERY_P95_TARGET = 0.030  # seconds
OPEN_TARGET = 0.5  # seconds for 20 pages
PAGE_DELAY = 0.1  # seconds the server waits before answering
PAGES = 20


def _word_list(text: str) -> list[str]:
    return text.split()


FUNCTION_WORDS = _word_list(
    "the of and to a in is that for it as was with be by on not he this are or his from at which but have "
    "an they you were her she there been one all we their has would when if so no will more can who its "
    "also than other into some these may only new time could about two first after most over such"
)
SYLLABLES = _word_list(
    "ba be bi bo bu ca ce ci co cu da de di do du fa fe fi fo ga ge gi go ha he hi ho ka ke ki ko la le li "
    "lo lu ma me mi mo mu na ne ni no nu pa pe pi po pu ra re ri ro ru sa se si so su ta te ti to tu va ve "
    "vi vo za ze zi zo tra tre tri pro pre str ion ent ark ell ond ist"
)


# --- the synthetic corpus -----------------------------------------------------------------------


class Words:
    """A Zipf(1.07) vocabulary: English function words first, then invented words."""

    def __init__(self, rng: random.Random, size: int = 60_000) -> None:
        invented: dict[str, None] = {}
        while len(invented) < size - len(FUNCTION_WORDS):
            word = "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 2, 3, 3, 3, 4))))
            if word not in FUNCTION_WORDS:
                invented[word] = None
        self.vocabulary = [*FUNCTION_WORDS, *invented]
        weights = [1.0 / (rank**1.07) for rank in range(1, len(self.vocabulary) + 1)]
        self.cumulative = list(_accumulate(weights))
        self.rng = rng

    def sample(self, n: int) -> list[str]:
        return self.rng.choices(self.vocabulary, cum_weights=self.cumulative, k=n)

    def content_words(self, n: int, *, rare: bool = False) -> list[str]:
        """Words past the function words; ``rare``: from the long tail."""
        start = 2_000 if rare else len(FUNCTION_WORDS)
        return [self.vocabulary[self.rng.randrange(start, len(self.vocabulary))] for _ in range(n)]


def _accumulate(values: list[float]) -> Iterator[float]:
    total = 0.0
    for value in values:
        total += value
        yield total


def paragraph(words: Words, rng: random.Random) -> str:
    """50-280 words (median ~95) in sentences of 6-28 words: one passage each."""
    n = min(280, max(50, int(rng.lognormvariate(math.log(95), 0.45))))
    tokens = words.sample(n)
    sentences, i = [], 0
    while i < n:
        length = rng.randint(6, 28)
        sentence = tokens[i : i + length]
        i += length
        if len(sentence) > 8 and rng.random() < 0.4:
            sentence[len(sentence) // 2] += ","
        sentences.append(" ".join(sentence).capitalize() + ".")
    return " ".join(sentences)


def document(words: Words, rng: random.Random, passages: int) -> tuple[str, str]:
    """(title, Markdown text) with ``passages`` paragraphs under ``##``/``###`` headings."""
    title = " ".join(words.content_words(rng.randint(2, 5))).capitalize()
    lines = [f"# {title}", ""]
    written = 0
    while written < passages:
        heading = " ".join(words.content_words(rng.randint(1, 4))).capitalize()
        lines += [f"{'###' if rng.random() < 0.3 else '##'} {heading}", ""]
        for _ in range(min(passages - written, rng.randint(1, 4))):
            lines += [paragraph(words, rng), ""]
            written += 1
    return title, "\n".join(lines)


def write_corpus(root: Path, passages: int, rng: random.Random) -> tuple[int, Words, list[str]]:
    """Write the corpus under ``root``; returns (paragraphs written, vocabulary, sample passages)."""
    words = Words(rng)
    written, samples = 0, list[str]()
    jsonl_share = int(passages * 0.8)
    (root / "notes").mkdir(parents=True)
    (root / "records").mkdir()
    number = 0
    handle = None
    while written < passages:
        size = min(passages - written, rng.randint(4, 16))
        title, text = document(words, rng, size)
        if rng.random() < 0.002 or len(samples) < 50:
            samples.append(text.split("\n\n")[-2])
        if written < jsonl_share:
            if number % 1000 == 0:
                if handle is not None:
                    handle.close()
                handle = (root / "records" / f"part-{number // 1000:03d}.jsonl").open("w", encoding="utf-8")
            assert handle is not None
            record = {"id": f"doc-{number}", "title": title, "url": f"https://corpus.example/{number}"}
            handle.write(json.dumps({**record, "text": text}) + "\n")
        else:
            (root / "notes" / f"note-{number:06d}.md").write_text(text, encoding="utf-8")
        number += 1
        written += size
    if handle is not None:
        handle.close()
    return written, words, samples


QUERY_KINDS = {
    "passage": "2-5 consecutive words of a passage",
    "rare": "1-2 words from the long tail",
    "zipf": "3-6 words drawn like the text itself (function words included)",
    "question": "what is the X of Y?",
    "content": "3-8 content words",
    "function": "2-4 function words only",
}


def make_queries(words: Words, samples: list[str], count: int, rng: random.Random) -> list[tuple[str, str]]:
    """``(kind, query)`` pairs, mixed 4:2:2:1:1:1 over the kinds of ``QUERY_KINDS``."""
    queries = []
    for i in range(count):
        kind = i % 11
        if kind < 4:  # words lifted from a real passage, as a user who knows what they want
            tokens = [t.strip(".,").lower() for t in rng.choice(samples).split()]
            start = rng.randrange(max(1, len(tokens) - 6))
            queries.append(("passage", " ".join(tokens[start : start + rng.randint(2, 5)])))
        elif kind < 6:
            queries.append(("rare", " ".join(words.content_words(rng.randint(1, 2), rare=True))))
        elif kind < 8:
            queries.append(("zipf", " ".join(words.sample(rng.randint(3, 6)))))
        elif kind < 9:
            a, b = words.content_words(2)
            queries.append(("question", f"what is the {a} of {b}?"))
        elif kind < 10:
            queries.append(("content", " ".join(words.content_words(rng.randint(3, 8)))))
        else:  # "of and the of": the words that match almost every passage
            queries.append(("function", " ".join(rng.choices(FUNCTION_WORDS[:20], k=rng.randint(2, 4)))))
    return queries


# --- 1 and 2: the local index -------------------------------------------------------------------


def bench_index(passages: int, queries: int, seed: int, profile: bool) -> None:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="deepresearch-bench-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        paragraphs, words, samples = write_corpus(root / "corpus", passages, rng)
        size = sum(f.stat().st_size for f in (root / "corpus").rglob("*") if f.is_file())
        print(
            f"corpus: {paragraphs:,} paragraphs, {size / 1e6:.0f} MB "
            f"(generated in {time.perf_counter() - started:.1f} s)"
        )

        index = LocalIndex(root / "index.sqlite")
        profiler = cProfile.Profile() if profile else None
        started, cpu_started = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        report = index.add_paths([root / "corpus"])
        if profiler:
            profiler.disable()
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        stats = index.stats()
        rate = report.passages / cpu
        print(
            f"index: {report.passages:,} passages from {report.added:,} documents in {elapsed:.1f} s wall, "
            f"{cpu:.1f} s CPU = {rate:,.0f} passages per CPU-second, {report.passages / elapsed:,.0f} per "
            f"second of wall (target >= {INDEX_TARGET:,.0f} per CPU-second: {rate / INDEX_TARGET:.2f}x), "
            f"index file {stats.size_bytes / 1e6:.0f} MB, errors {len(report.errors)}"
            + (" — under cProfile, which slows it" if profiler else "")
        )
        if profiler:
            _print_profile(profiler, "indexing")

        kinds_and_queries = make_queries(words, samples, queries, rng)
        query_list = [query for _, query in kinds_and_queries]
        first_latencies: list[float] = []
        for limit in (10, 50):
            latencies, cpu_times, hits = asyncio.run(_run_queries(index, query_list, limit))
            first_latencies = first_latencies or latencies
            p50, p95 = _percentile(latencies, 50), _percentile(latencies, 95)
            print(
                f"query (limit {limit}): {len(latencies)} queries, wall p50 {p50 * 1000:.1f} ms, "
                f"p95 {p95 * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms; CPU p50 "
                f"{_ms(cpu_times, 50)} ms, p95 {_ms(cpu_times, 95)} ms; "
                f"mean hits {statistics.mean(hits):.1f}"
            )
            worst = 0.0
            for kind, description in QUERY_KINDS.items():
                chosen = [k == kind for k, _ in kinds_and_queries]
                wall = [t for t, keep in zip(latencies, chosen, strict=True) if keep]
                cpu = [t for t, keep in zip(cpu_times, chosen, strict=True) if keep]
                worst = max(worst, _percentile(wall, 95))
                print(
                    f"  {kind:9} {len(wall):3} queries, wall p50 {_ms(wall, 50)} ms p95 {_ms(wall, 95)} ms, "
                    f"CPU p50 {_ms(cpu, 50)} ms p95 {_ms(cpu, 95)} ms  ({description})"
                )
            verdict = "meets" if worst < QUERY_P95_TARGET else "misses"
            print(
                f"  worst class p95 {worst * 1000:.1f} ms ({verdict} p95 < {QUERY_P95_TARGET * 1000:.0f} ms "
                f"for every class: {QUERY_P95_TARGET / worst:.2f}x the target)"
            )
            slow = sorted(zip(latencies, query_list, strict=True), reverse=True)[:3]
            print("  slowest: " + "; ".join(f"{q!r} {t * 1000:.0f} ms" for t, q in slow))
        if profile:
            _profile_queries(index.path, query_list, first_latencies)
        index.close()


async def _run_queries(
    index: LocalIndex, queries: list[str], limit: int
) -> tuple[list[float], list[float], list[int]]:
    """Wall and CPU time of each query (CPU of the whole process: the search runs in a worker thread)."""
    await index.search(queries[0], limit=limit)  # open the connection outside the measurement
    latencies, cpu_times, hits = [], [], []
    for query in queries:
        started, cpu_started = time.perf_counter(), time.process_time()
        results = await index.search(query, limit=limit)
        latencies.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
        hits.append(len(results))
    return latencies, cpu_times, hits


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)]


def _ms(values: list[float], p: float) -> str:
    return f"{_percentile(values, p) * 1000:6.1f}"


def _profile_queries(path: Path, queries: list[str], latencies: list[float]) -> None:
    """Query time by how many passages match, next to FTS5's own share (MATCH + bm25 top 40).

    Queries run in a worker thread inside SQLite, where cProfile sees nothing; this times the
    statements directly on a second, read-only connection.
    """
    db = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True)
    top_only = (
        "SELECT rowid, bm25(passages_fts, 0.5, 1.0, 0.5, 1.0) AS s FROM passages_fts "
        "WHERE passages_fts MATCH ? ORDER BY s LIMIT 40"
    )
    rows: list[tuple[int, float, float]] = []
    for query, latency in zip(queries, latencies, strict=True):
        fts = build_fts_query(query)
        if fts is None:
            continue
        (matches,) = db.execute(
            "SELECT count(*) FROM passages_fts WHERE passages_fts MATCH ?", (fts.match,)
        ).fetchone()
        started = time.perf_counter()
        db.execute(top_only, (fts.match,)).fetchall()
        rows.append((matches, time.perf_counter() - started, latency))
    db.close()
    print("--- profile: queries by matching passages (limit 10)")
    for low, high in ((0, 1_000), (1_000, 10_000), (10_000, 30_000), (30_000, 60_000), (60_000, 10**9)):
        chosen = [(f, t) for m, f, t in rows if low <= m < high]
        if chosen:
            bucket = f"{low:,}-{high:,}" if high < 10**9 else f">= {low:,}"
            print(
                f"  {bucket:>15} matches: {len(chosen):3} queries, "
                f"search p50 {_percentile([t for _, t in chosen], 50) * 1000:6.1f} ms "
                f"p95 {_percentile([t for _, t in chosen], 95) * 1000:6.1f} ms; "
                f"FTS5 MATCH + bm25 top-40 alone p95 {_percentile([f for f, _ in chosen], 95) * 1000:6.1f} ms"
            )


def _print_profile(profiler: cProfile.Profile, label: str) -> None:
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(12)
    print(f"--- profile: {label} (by own time)")
    print("\n".join(line for line in out.getvalue().splitlines()[6:] if line.strip()))


# --- 3: batch_open ------------------------------------------------------------------------------


class _SlowPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        time.sleep(PAGE_DELAY)
        body = (
            f"<html><head><title>Page {self.path}</title></head><body><article><h1>Page {self.path}</h1>"
            + "<p>A paragraph of text that the extractor should keep because it is long enough. </p>" * 20
            + "</article></body></html>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    """The default listen backlog (5) drops a burst of connections, and the kernel retries them after
    a whole second: that would be measured instead of the fetcher."""


def _fetch_config(**overrides: Any) -> tuple[FetchConfig, dict[str, Any]]:
    """Cache and politeness delay off where this version of ``FetchConfig`` has them."""
    fields = FetchConfig.model_fields
    settings: dict[str, Any] = {"allow_private": True}
    for name, value in (("host_delay_s", 0.0), ("cache_path", None), ("cache_ttl_s", 0.0)):
        if name in fields:
            settings[name] = value
    settings.update({k: v for k, v in overrides.items() if k in fields})
    return FetchConfig(**settings), settings


async def _sequential(urls: list[str], config: FetchConfig) -> float:
    async with HttpFetcher(config) as fetcher:
        started = time.perf_counter()
        for url in urls:
            await fetcher.fetch(url)
        return time.perf_counter() - started


async def _batch(urls: list[str], config: FetchConfig, workspace: Path) -> tuple[float, int]:
    async with HttpFetcher(config) as fetcher:
        ctx = ToolContext(workspace=workspace, sources=SourceRegistry(), state={}, fetcher=fetcher)
        started = time.perf_counter()
        result = await batch_open(WebArgs(action="batch_open", urls=urls), ctx)
        elapsed = time.perf_counter() - started
    return elapsed, sum(1 for item in result.data["opened"] if item["ok"])


def bench_batch_open() -> None:
    servers = [_Server(("127.0.0.1", 0), _SlowPage) for _ in range(10)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ports = [server.server_address[1] for server in servers]
    one_host = [f"http://127.0.0.1:{ports[0]}/page/{i}" for i in range(PAGES)]
    ten_hosts = [f"http://127.0.0.1:{ports[i % 10]}/page/{i}" for i in range(PAGES)]
    try:
        with tempfile.TemporaryDirectory(prefix="deepresearch-bench-") as tmp:
            config, settings = _fetch_config()
            print(f"fetcher settings: {settings} (other FetchConfig fields at their defaults)")
            print(
                f"  max_concurrency {config.max_concurrency}, per_host_concurrency "
                f"{config.per_host_concurrency}; batch_open opens at most 8 at once"
            )
            baseline = asyncio.run(_sequential(one_host, config))
            print(f"batch_open baseline: {PAGES} fetches one after another: {baseline:.2f} s")
            cases = [
                ("20 pages on 10 hosts (2 each), defaults", ten_hosts, config),
                ("20 pages on 1 host, defaults (2 per host)", one_host, config),
                (
                    "20 pages on 1 host, per_host_concurrency 8",
                    one_host,
                    _fetch_config(per_host_concurrency=8)[0],
                ),
            ]
            for i, (label, urls, case_config) in enumerate(cases):
                workspace = Path(tmp) / f"ws{i}"
                workspace.mkdir()  # batch_open writes each page into the run's workspace
                elapsed, ok = asyncio.run(_batch(urls, case_config, workspace))
                verdict = "meets" if elapsed < OPEN_TARGET else "misses"
                print(
                    f"batch_open {label}: {elapsed:.2f} s, {ok}/{PAGES} ok, "
                    f"{baseline / elapsed:.1f}x faster than sequential ({verdict} < {OPEN_TARGET} s)"
                )
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="print cProfile tables")
    parser.add_argument("--skip-index", action="store_true", help="only the batch_open measurement")
    args = parser.parse_args()
    if not args.skip_index:
        bench_index(args.passages, args.queries, args.seed, args.profile)
    bench_batch_open()


if __name__ == "__main__":
    main()
