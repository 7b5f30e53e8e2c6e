"""What does the agent cost per step over the least any client could spend on the same work?

Three systems, each a fresh subprocess timed from spawn to exit (start-up, first-use warm-up and
interpreter teardown counted), against the same fakes on loopback, each fake in its own process:

- ``agent``: the real ``deepresearch research`` with its real tools — ``batch_web_surfer``
  ``batch_search`` against a fake Tavily answering ~20 KB of JSON per query, and ``batch_open``
  against a fake site serving ~5 KB HTML pages on two hosts (two of the three pages a step opens are
  on one host) — driven by a scripted fake model (every step searches or opens, then it answers);
- ``floor1``: a bare OpenAI-SDK loop sending the agent's own request bodies, as the fake model
  recorded them during the agent's run, in order, reading each stream to its end: model I/O only;
- ``floor2``: floor 1 plus the same network I/O after each reply (the recorded search requests, a
  GET of every page the agent opened, through the HTTP library the SDK already loaded — httpx2 for
  openai 3.x — bodies read and dropped, no extraction).

They run interleaved (agent, floor1, floor2, agent, …; each floor replays the agent run just before
it), ``--repeat`` times at each ``--steps`` count. CPU is the child's user+sys from ``os.wait4``,
peak RSS its ``ru_maxrss``, bytes written its ``wchar`` (run directory, fetch cache and console; read
from ``/proc`` between its exit and ``wait4``). A hook that a ``python -c`` wrapper installs first
(``overhead_hooks.py``; nothing in ``src/`` changes) marks each model request and reply with the
process CPU and counts generation-2 collections, so the table also has the CPU before the first
request and after the last reply, the per-step CPU series (``late_early``: the median of the last 6
steps over that of steps 3-8) and the CPU spike of the first ``batch_open`` (that step minus the
median of the later open steps).

    .venv/bin/python benchmarks/agent_overhead.py            # 30 and 50 steps, 3 repeats (~2.5 min)
    .venv/bin/python benchmarks/agent_overhead.py --quick    # 10 steps, once (< 1 min)

Two switches look inside the agent's process (the numbers of such a run are not comparable):
``BENCH_PROFILE=FILE`` writes a cProfile of it, ``BENCH_TRACEMALLOC=FILE`` a ``tracemalloc`` snapshot
of what is alive at its end (``BENCH_TRACEMALLOC_FRAMES``: frames per allocation, 1 by default).

The last two lines are ``cpu_ratio_vs_floor=X`` (agent / floor 2, CPU per step, median, at the
largest step count) and ``late_early=Y`` (the agent's, at that count). A ratio to the early steps also
rises when only the early steps get cheaper, so each table is followed by the growth itself, late −
early in milliseconds, for the agent and both floors (the floors' grows with the request bodies they
send, which are the agent's own).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
SYSTEMS = ("agent", "floor1", "floor2")
SEARCH_KEY = "tvly-bench-key"
QUESTION = (
    "How have lithium-ion cathode chemistries changed energy density and cost? (benchmark: {steps} steps)"
)
_VOCABULARY = (
    "cathode anode electrolyte lithium nickel manganese cobalt iron phosphate density cycle capacity "
    "voltage thermal runaway separator graphite silicon solid-state sodium cost kilowatt-hour supply "
    "chain recycling mining refinery grid storage vehicle range charging degradation warranty policy "
    "subsidy tariff market share production gigafactory chemistry laboratory measurement percent"
)
_WORDS = _VOCABULARY.split()


def words(seed: str, count: int) -> str:
    """Deterministic, varied prose (so parsing, extracting and token counting are realistic work)."""
    state = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
    out = []
    for i in range(count):
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        word = _WORDS[(state >> 33) % len(_WORDS)]
        out.append(word.capitalize() if i % 14 == 0 else word)
        if i % 14 == 13:
            out[-1] += "."
    return " ".join(out)


# --- the fake model (runs inside tests.fakes.openai_server's process) ---------------------------------

_URL = re.compile(r"<url>(https?://[^<]+)</url>")


def script(request: dict[str, Any]) -> Any:
    """Even turns search (two queries), odd turns open three URLs of the last results (two on one
    host), and once the question's step count is reached the model answers citing two sources.
    Every request body is appended to ``BENCH_MODEL_LOG`` for the floors to replay."""
    from tests.agent.scripts import cited_keys, question
    from tests.fakes.openai_server import Reply

    with open(os.environ["BENCH_MODEL_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(request, ensure_ascii=False) + "\n")
    n = _turn(request)
    steps = int(re.findall(r"benchmark: (\d+) steps", question(request))[0])
    if n >= steps:
        keys = list(cited_keys(request).values())[:2]
        cites = "".join(f" \\cite{{{key}}}" for key in keys)
        body = (
            f"# Cathodes\n\nLFP traded density for cost and cycle life{cites}.\n\n"
            "Nickel-rich cells lead on range."
        )
        return Reply(content=f"<answer>\n{body}\n</answer>")
    if n % 2 == 0:
        queries = [f"cathode energy density step {n} part {i}" for i in range(2)]
        action = {"action": "batch_search", "queries": queries, "topk": 20}
        return Reply(content=f"Step {n}: searching.", tool_calls=[("batch_web_surfer", action)])
    return Reply(
        content=f"Step {n}: reading three sources.",
        tool_calls=[("batch_web_surfer", {"action": "batch_open", "urls": _pick_urls(request)})],
    )


_STEP = re.compile(r"^Step (\d+):")


def _turn(request: dict[str, Any]) -> int:
    """The step after the latest ``Step N:`` reply. Counting assistant messages would not do: the
    agent's context compaction drops old turns, and the script would lose its place."""
    for message in reversed(request["messages"]):
        found = _STEP.match(str(message.get("content") or "")) if message.get("role") == "assistant" else None
        if found:
            return int(found.group(1)) + 1
    return 0


def _pick_urls(request: dict[str, Any]) -> list[str]:
    """The first two URLs of the first host and the first of another, from the latest search result."""
    tool = next(
        m
        for m in reversed(request["messages"])
        if m.get("role") == "tool" and "<batch_search_results" in str(m.get("content"))
    )
    urls = list(dict.fromkeys(_URL.findall(tool.get("content") or "")))
    hosts = list(dict.fromkeys(url.split("/")[2] for url in urls))
    first = [url for url in urls if url.split("/")[2] == hosts[0]][:2]
    other = [url for url in urls if len(hosts) > 1 and url.split("/")[2] == hosts[1]][:1]
    return first + other


# --- the fake search provider and the fake site (each in its own process) -----------------------------


def _log(path_var: str, record: dict[str, Any]) -> None:
    with open(os.environ[path_var], "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")


async def _body(receive: Any) -> bytes:
    data: bytes = b""
    while True:
        message = await receive()
        data += message.get("body", b"")
        if not message.get("more_body"):
            return data


async def _respond(send: Any, status: int, body: bytes, content_type: str) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def search_results(query: str, limit: int, hosts: list[str]) -> dict[str, Any]:
    """A Tavily answer: up to 10 hits of ~2 KB each (title, URL on the fake site, extract, page text)."""
    slug = re.sub(r"\W+", "-", query.lower()).strip("-")
    results = [
        {
            "title": words(f"{query}/{i}/title", 8),
            "url": f"{hosts[i % 2]}/{slug}/{i}.html",
            "content": words(f"{query}/{i}/snippet", 40),
            "raw_content": words(f"{query}/{i}/raw", 175),
            "score": round(0.95 - i * 0.03, 2),
            "published_date": None,
        }
        for i in range(min(limit, 10))
    ]
    return {"query": query, "answer": None, "results": results, "response_time": 0.61}


async def search_app(scope: Any, receive: Any, send: Any) -> None:
    """POST /search, Tavily's shape; each request is logged (body and headers) for floor 2."""
    if scope["type"] != "http":
        return
    raw = await _body(receive)
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    kept = {k: headers[k] for k in ("authorization", "content-type") if k in headers}
    _log("BENCH_SEARCH_LOG", {"body": raw.decode(), "headers": kept})
    request = json.loads(raw or b"{}")
    hosts = os.environ["BENCH_WEB_HOSTS"].split(",")
    answer = search_results(str(request.get("query", "")), int(request.get("max_results", 10)), hosts)
    await _respond(send, 200, json.dumps(answer).encode(), "application/json")


def page_html(path: str) -> str:
    """A ~5 KB article page with navigation, sidebar and footer boilerplate around five paragraphs."""
    title = words(path + "/title", 7)
    paragraphs = "\n".join(
        f"<h2>{words(f'{path}/h/{i}', 4)}</h2>\n<p>{words(f'{path}/p/{i}', 95)}</p>" for i in range(5)
    )
    nav = " ".join(f'<a href="/section/{i}">{w}</a>' for i, w in enumerate(_WORDS[:12]))
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        "<script>window.analytics = {enabled: true};</script><style>nav a {margin: 0 4px}</style>"
        f"</head><body><header><nav>{nav}</nav></header><main><article><h1>{title}</h1>\n"
        f"{paragraphs}\n</article><aside>Related: {words(path + '/aside', 20)}</aside></main>"
        "<footer>Copyright 2025 Battery Notes. Privacy. Terms. Newsletter.</footer></body></html>"
    )


async def web_app(scope: Any, receive: Any, send: Any) -> None:
    """Any ``*.html`` path is an article page; anything else is 404. Each request is logged."""
    if scope["type"] != "http":
        return
    await _body(receive)
    _log("BENCH_WEB_LOG", {"method": scope["method"], "path": scope["path"], "port": scope["server"][1]})
    if scope["path"].endswith(".html"):
        await _respond(send, 200, page_html(scope["path"]).encode(), "text/html; charset=utf-8")
    else:
        await _respond(send, 404, b"<html><body>Not found</body></html>", "text/html")


def serve(kind: str) -> None:
    """Run one fake until SIGTERM; print ``listening on URL`` per port."""
    import signal
    import threading

    from tests.fakes.serve import ThreadedServer

    servers = [ThreadedServer(search_app, "bench-search")]
    if kind == "web":
        servers = [ThreadedServer(web_app, f"bench-web-{i}") for i in range(2)]
    for server in servers:
        print(f"listening on http://127.0.0.1:{server.start(0)}", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    stopped.wait()
    for server in servers:
        server.stop()


# --- the driver -------------------------------------------------------------------------------------


@dataclass
class Fakes:
    """The three fake processes and where they log."""

    logs: Path
    processes: list[subprocess.Popen[str]] = field(default_factory=list)
    model_url: str = ""
    search_url: str = ""
    web_hosts: list[str] = field(default_factory=list)

    def _start(self, args: list[str], env: dict[str, str], ports: int) -> list[str]:
        process = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        self.processes.append(process)
        assert process.stdout is not None
        return [process.stdout.readline().split()[-1] for _ in range(ports)]

    def start(self) -> None:
        env = _base_env(self.logs / "home") | {
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'src'}",
            "BENCH_MODEL_LOG": str(self.logs / "model.jsonl"),
            "BENCH_SEARCH_LOG": str(self.logs / "search.jsonl"),
            "BENCH_WEB_LOG": str(self.logs / "web.jsonl"),
        }
        self.web_hosts = self._start([__file__, "--serve", "web"], env, 2)
        env["BENCH_WEB_HOSTS"] = ",".join(self.web_hosts)
        self.search_url = self._start([__file__, "--serve", "search"], env, 1)[0]
        script_ref = "benchmarks.agent_overhead:script"
        self.model_url = self._start(["-m", "tests.fakes.openai_server", "--script", script_ref], env, 1)[0]

    def take_logs(self, into: Path) -> None:
        """Move what the fakes logged so far into ``into`` (they reopen their logs per request)."""
        into.mkdir(parents=True, exist_ok=True)
        for name in ("model.jsonl", "search.jsonl", "web.jsonl"):
            source = self.logs / name
            if source.exists():
                source.rename(into / name)
            else:
                (into / name).touch()

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=15)


def _base_env(home: Path) -> dict[str, str]:
    """The parent's environment without any deepresearch or OpenAI setting, with its own home dirs
    (no user config, cache or data leaks into a run)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEEPRESEARCH_", "OPENAI_"))}
    for name in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        env[name] = str(home / name.lower())
    env["XDG_CACHE_HOME"] = str(home.parents[1] / USER_CACHE)  # shared: what one user's runs share
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env | {"HF_HUB_OFFLINE": "1"}


def _child_command(system: str, run: Path, steps: int) -> list[str]:
    prelude = f"import sys; sys.path.insert(0, {str(BENCH)!r}); import overhead_hooks as h; "
    if system == "agent":
        question = QUESTION.format(steps=steps)
        argv = [question, "--quiet", "--out", str(run / "run"), "--max-steps", str(steps + 5)]
        return [sys.executable, "-c", prelude + "h.run_cli(sys.argv[1:])", "research", *argv]
    return [sys.executable, "-c", prelude + f"h.run_floor({system == 'floor2'})"]


USER_CACHE = "user-cache"
"""The XDG cache folder every run of the benchmark shares, as one user's runs do."""
SOURCE = ROOT / "src"
"""The ``deepresearch`` the agent side runs: this checkout's (``--src`` picks another tree, e.g. an
exported commit, so "before" and "after" can be measured side by side without switching branches)."""


def _child_env(system: str, run: Path, fakes: Fakes, recorded: Path) -> dict[str, str]:
    env = _base_env(run / "home") | {"PYTHONPATH": str(SOURCE), "BENCH_MARKS": str(run / "marks.jsonl")}
    if system == "agent":
        return env | {
            "DEEPRESEARCH_BASE_URL": fakes.model_url,
            "DEEPRESEARCH_MODEL": "fake-model",
            "DEEPRESEARCH_API_KEY": "sk-bench",
            "DEEPRESEARCH_SEARCH": "tavily",
            "DEEPRESEARCH_TAVILY_API_KEY": SEARCH_KEY,
            "DEEPRESEARCH_SEARCH_ENDPOINT": fakes.search_url,
            "DEEPRESEARCH_ALLOW_PRIVATE_URLS": "1",
            "DEEPRESEARCH_FETCH_CACHE": str(run / "fetch-cache.sqlite"),
        }
    return env | {
        "BENCH_BASE_URL": fakes.model_url,
        "BENCH_SEARCH_URL": f"{fakes.search_url}/search",
        "BENCH_MODEL_REQUESTS": str(recorded / "model.jsonl"),
        "BENCH_SEARCH_REQUESTS": str(recorded / "search.jsonl"),
    }


@dataclass
class Run:
    """One child's measurements (seconds, MB, bytes)."""

    system: str
    steps: int
    wall: float
    cpu: float
    rss_mb: float
    cpu_first: float
    wall_first: float
    cpu_after_last: float
    wall_after_last: float
    wchar: int
    dir_bytes: int
    gc2: int
    gc2_run: int
    gc2_pause_ms: float
    series: list[float]
    searches: int
    pages: int

    @property
    def cpu_per_step(self) -> float:
        return self.cpu / self.steps

    @property
    def early_step(self) -> float:
        """Median CPU of steps 3-8 (one step: from a model request to the next)."""
        return statistics.median(self.series[2:8])

    @property
    def late_step(self) -> float:
        """Median CPU of the last 6 steps."""
        return statistics.median(self.series[-6:])

    @property
    def late_early(self) -> float:
        return self.late_step / self.early_step

    @property
    def first_open_spike(self) -> float:
        """CPU of the step after the first ``batch_open`` reply minus the median of the later ones."""
        return self.series[1] - statistics.median(self.series[3::2])


def _written(pid: int) -> int:
    """Bytes the process passed to write() in its whole life (``wchar``: files and pipes, not socket
    sends), read while it is a zombie; -1 where ``/proc`` has no I/O accounting."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("wchar:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def measure(system: str, steps: int, run: Path, fakes: Fakes, recorded: Path) -> Run:
    """Spawn one child, wait for it with ``wait4`` and read its marks and the fakes' logs."""
    run.mkdir(parents=True)
    out, err = (run / "stdout").open("w"), (run / "stderr").open("w")
    fakes.take_logs(run / "before")  # anything stray is not this run's
    began = time.monotonic()
    process = subprocess.Popen(
        _child_command(system, run, steps),
        env=_child_env(system, run, fakes, recorded),
        cwd=run,
        stdout=out,
        stderr=err,
    )
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped: its
    ended = time.monotonic()  # /proc entry still holds the whole life's I/O counters
    written = _written(process.pid)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    out.close()
    err.close()
    fakes.take_logs(run / "fakes")
    if process.returncode != 0:
        tail = (run / "stderr").read_text()[-3000:]
        raise SystemExit(f"{system} exited with {process.returncode}:\n{tail}")
    marks = [json.loads(line) for line in (run / "marks.jsonl").read_text().splitlines()]
    requests = [m for m in marks if m["kind"] == "request"]
    replies = [m for m in marks if m["kind"] == "reply"]
    if len(requests) != steps + 1:
        raise SystemExit(f"{system}: {len(requests)} model requests for {steps} steps (see {run})")
    cpu = usage.ru_utime + usage.ru_stime
    last = replies[-1] if replies else requests[-1]
    gc2 = [m for m in marks if m["kind"] == "gc2"]
    web = (run / "fakes" / "web.jsonl").read_text().splitlines()
    return Run(
        system=system,
        steps=steps,
        wall=ended - began,
        cpu=cpu,
        rss_mb=usage.ru_maxrss / 1024,
        cpu_first=requests[0]["cpu"],
        wall_first=requests[0]["t"] - began,
        cpu_after_last=cpu - last["cpu"],
        wall_after_last=ended - last["t"],
        wchar=written,
        dir_bytes=_folder_bytes(run / "run"),
        gc2=len(gc2),
        gc2_run=sum(1 for m in gc2 if m["t"] > requests[0]["t"]),
        gc2_pause_ms=1000 * sum(m["pause"] for m in gc2),
        series=[b["cpu"] - a["cpu"] for a, b in itertools.pairwise(requests)],
        searches=len((run / "fakes" / "search.jsonl").read_text().splitlines()),
        pages=sum(1 for line in web if '.html"' in line),
    )


def rounds(step_counts: list[int], repeat: int) -> Iterator[tuple[int, int, str]]:
    """(steps, repeat, system) in the interleaved order: agent, floor1, floor2, agent, …"""
    for steps in step_counts:
        for r in range(repeat):
            for system in SYSTEMS:
                yield steps, r, system


def run_all(step_counts: list[int], repeat: int, keep: Path | None) -> dict[int, dict[str, list[Run]]]:
    tmp = Path(tempfile.mkdtemp(prefix="agent-overhead-"))
    fakes = Fakes(tmp / "fakes")
    fakes.logs.mkdir(parents=True)
    results: dict[int, dict[str, list[Run]]] = {s: {name: [] for name in SYSTEMS} for s in step_counts}
    # bytecode up to date first, as in any installed copy: no measured run pays for compiling; and the
    # user cache as after a first run (the token ranks' decoded copy): every agent run finds it there
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(SOURCE), str(BENCH)], check=True)
    prepare = "import sys; from pathlib import Path; from deepresearch.llm.tokens import cached_ranks; "
    prepare += "cached_ranks(Path(sys.argv[1]))"
    subprocess.run(
        [sys.executable, "-c", prepare, str(tmp / USER_CACHE / "deepresearch")],
        env=os.environ | {"PYTHONPATH": str(SOURCE)},
        check=False,  # an older tree without the copy: its runs decode the shipped file, as they did
    )
    try:
        fakes.start()
        for steps, r, system in rounds(step_counts, repeat):
            recorded = tmp / f"{steps}-{r}-agent" / "fakes"
            started = time.monotonic()
            done = measure(system, steps, tmp / f"{steps}-{r}-{system}", fakes, recorded)
            results[steps][system].append(done)
            print(
                f"  {steps} steps #{r + 1} {system:7} wall {done.wall:6.2f} s  cpu {done.cpu:5.2f} s  "
                f"({time.monotonic() - started:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
    finally:
        fakes.stop()
        if keep is not None:
            shutil.copytree(tmp, keep, dirs_exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return results


# --- the report -------------------------------------------------------------------------------------

ROWS: list[tuple[str, str, float]] = [
    ("cpu_per_step", "CPU per step (ms)", 1000),
    ("cpu", "CPU total (s)", 1),
    ("wall", "wall, spawn to exit (s)", 1),
    ("cpu_first", "CPU before 1st request (s)", 1),
    ("wall_first", "wall before 1st request (s)", 1),
    ("cpu_after_last", "CPU after last reply (s)", 1),
    ("wall_after_last", "wall after last reply (s)", 1),
    ("rss_mb", "peak RSS (MB)", 1),
    ("wchar", "bytes written, all files (MB)", 1 / 2**20),
    ("dir_bytes", "run directory at exit (MB)", 1 / 2**20),
    ("gc2", "gen-2 collections, all", 1),
    ("gc2_run", "gen-2 after 1st request", 1),
    ("gc2_pause_ms", "gen-2 pauses, total (ms)", 1),
    ("early_step", "CPU per step, steps 3-8 (ms)", 1000),
    ("late_step", "CPU per step, last 6 (ms)", 1000),
    ("late_early", "late/early CPU per step", 1),
    ("first_open_spike", "1st batch_open spike (ms)", 1000),
]


def spread(values: list[float]) -> str:
    """``median (min–max)``, or just the value for a single run."""
    med = statistics.median(values)
    digits = 0 if abs(med) >= 100 else 2 if abs(med) < 10 else 1
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def report(results: dict[int, dict[str, list[Run]]], elapsed: float) -> tuple[float, float]:
    """Print one table per step count; return (cpu ratio vs floor 2, late_early) at the largest."""
    print(
        "Medians of interleaved runs (agent, floor1, floor2, …), min–max in brackets; each system is a "
        "fresh process\ntimed from spawn to exit. A loaded machine inflates every figure (CPU included: "
        "caches, frequency);\ncompare within one run of this benchmark, not across machines or days.\n"
        "floor1 = bare OpenAI-SDK loop replaying the agent's requests; floor2 = floor1 + the same search "
        "and page I/O.\n"
    )
    ratio = late = float("nan")
    for steps, by_system in results.items():
        runs = by_system["agent"]
        print(f"{steps} steps, {len(runs)} run(s) each")
        print(f"{'':30}" + "".join(f"{name:>22}" for name in SYSTEMS))
        for key, label, scale in ROWS:
            cells = [spread([scale * getattr(run, key) for run in by_system[name]]) for name in SYSTEMS]
            print(f"{label:30}" + "".join(f"{cell:>22}" for cell in cells))
        agent, f1, f2 = (statistics.median(r.cpu_per_step for r in by_system[n]) for n in SYSTEMS)
        late = statistics.median(run.late_early for run in runs)
        ratio = agent / f2
        io = {n: (by_system[n][0].searches, by_system[n][0].pages) for n in ("agent", "floor2")}
        print(f"agent CPU per step / floor1 {agent / f1:.2f}, / floor2 {ratio:.2f}")
        growth = {n: statistics.median(r.late_step - r.early_step for r in by_system[n]) for n in SYSTEMS}
        print(  # a ratio to the early steps also rises when only the early steps get cheaper
            f"growth over the run, late − early CPU per step (ms): agent {1000 * growth['agent']:.1f}, "
            f"floor1 {1000 * growth['floor1']:.1f}, floor2 {1000 * growth['floor2']:.1f}"
        )
        print(
            f"I/O per run (search requests, page GETs): agent {io['agent']}, floor2 {io['floor2']}"
            + ("" if io["agent"] == io["floor2"] else "  <-- MISMATCH: floor 2 did not do the same I/O")
        )
        print()
    print(f"benchmark wall time: {elapsed:.0f} s")
    return ratio, late


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, nargs="+", default=[30, 50], help="step counts (30 50)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each system per step count (3)")
    parser.add_argument("--quick", action="store_true", help="10 steps, once: a smoke run under a minute")
    parser.add_argument("--keep", type=Path, help="copy the run directories, marks and fake logs here")
    parser.add_argument("--src", type=Path, help="the src/ tree the agent runs (default: this checkout's)")
    parser.add_argument("--serve", choices=["search", "web"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.src is not None:
        global SOURCE
        SOURCE = args.src.resolve()
    print(f"agent code: {SOURCE}", file=sys.stderr)
    steps, repeat = ([10], 1) if args.quick else (sorted(args.steps), args.repeat)
    if min(steps) < 10:
        parser.error("--steps below 10 leave no late steps to compare with steps 3-8")
    started = time.monotonic()
    results = run_all(steps, repeat, args.keep)
    ratio, late = report(results, time.monotonic() - started)
    print(f"cpu_ratio_vs_floor={ratio:.2f}")
    print(f"late_early={late:.2f}")


if __name__ == "__main__":
    main()
