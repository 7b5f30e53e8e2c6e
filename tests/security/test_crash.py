"""Crashes and faults of a run, each kept as a test (issue 11): the run directory must stay whole and
resumable, and the CLI must fail with one line, whatever moment the fault picks.

- Disk full (``ENOSPC`` on a real tmpfs) and a file-size limit (``EFBIG`` under ``RLIMIT_FSIZE``) in
  the middle of a real ``deepresearch research`` process: exit 1 with one line and no traceback,
  ``events.jsonl`` cut back to its last complete line, ``run.json`` ``failed`` with the reason, and a
  ``resume`` once there is room again finishes from the last complete step.
- ``kill -9`` while the context is being compacted, while the report is being written, and while a
  restarted server is recovering its job: ``resume`` (or the next restart) finishes with nothing lost
  and no step taken twice. A kill during an ordinary step is ``tests/test_resume.py``'s.
- ``--api-key`` shows the key in ``ps``: using it warns; ``--api-key-file`` keeps it off the command line
  and out of the run directory.
- ``index add`` of a ``*.md`` symlink to a file without a suffix crashed with ``KeyError``.

The faults are real: a tmpfs filled by a ballast file, a limit set on the live process with
``prlimit``, ``SIGKILL``. The moment is found by watching the run directory and the scripted model's
requests; a reply held by the scripted model (``Gate``) keeps the process waiting there.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import resource
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from deepresearch.cli import app
from deepresearch.research import research
from deepresearch.runs import load_events, read_info
from tests.agent.scripts import cited_keys, research_script, turn
from tests.bench.scripts import agent_script
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.server.test_restart import ServeProcess, job_status
from tests.test_research import check_messages_shape
from tests.test_resume import QUESTION, kill, settings_for, wait_for

pytestmark = pytest.mark.slow
Script = Callable[[dict[str, Any]], Reply]


# --- the agent as a process, and what it left


def start_agent(
    fake: FakeOpenAI, index: Path, run: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    command = [
        *(sys.executable, "-m", "deepresearch", "research", QUESTION, "--base-url", fake.base_url),
        *("--model", "fake-model", "--index", str(index), "--out", str(run), "--quiet"),
    ]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ) | (env or {})
    )


def resume_cli(run: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "deepresearch", "resume", str(run), "--quiet"]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=dict(os.environ))


def whole_log(run: Path) -> list[Any]:
    """The events of a log that ends with a complete line and parses throughout (no torn line)."""
    raw = (run / "events.jsonl").read_bytes()
    assert raw.endswith(b"\n"), f"events.jsonl ends with half a line: {raw[-120:]!r}"
    loaded = load_events(run / "events.jsonl")
    assert loaded.torn_tail is None and not loaded.warnings
    return loaded.events


def check_no_step_twice(events: list[Any], steps: int) -> None:
    calls = [e.step for e in events if e.type == "llm_call"]
    assert calls == list(range(1, steps + 1)), calls
    results = [e.call_id for e in events if e.type == "tool_result"]
    assert len(results) == len(set(results)), "a tool call's result was recorded twice"


def reference(fake: FakeOpenAI, index: Path, out: Path, script: Script, **settings: Any) -> Any:
    """The same research, run in this process without any fault: what the faulted run must deliver."""
    fake.script = script
    result = asyncio.run(research(QUESTION, settings_for(fake, index, out).model_copy(update=settings)))
    fake.reset()
    return result


def one_line_error(stderr: str, run: Path | None = None) -> str:
    """The error line, checking that it is all there is (plus the run-directory note of a failed run)."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), stderr
    note = [f"run directory: {run} (continue with: deepresearch resume {run})"] if run else []
    assert lines[1:] == note, stderr
    return lines[0]


class Gate:
    """Holds the model's reply at ``turn`` until the test opens the gate: the agent process waits for
    its answer, at a known point, for as long as the test needs. (It blocks the scripted server's
    thread, whose only client is that agent.)"""

    def __init__(self, at_turn: int) -> None:
        self.at_turn = at_turn
        self.reached = threading.Event()
        self.opened = threading.Event()

    def wrap(self, script: Script) -> Script:
        def gated(request: dict[str, Any]) -> Reply:
            if turn(request) == self.at_turn and not self.opened.is_set():
                self.reached.set()
                self.opened.wait(60)
            return script(request)

        return gated

    def wait(self, process: subprocess.Popen[bytes]) -> None:
        wait_for(self.reached.is_set, process, f"the model call of turn {self.at_turn}")


@contextlib.contextmanager
def gated(fake: FakeOpenAI, gate: Gate, script: Script) -> Iterator[None]:
    fake.script = gate.wrap(script)
    try:
        yield
    finally:
        gate.opened.set()  # never leave the server's thread blocked


# --- disk full


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs of its own (the run directory goes there; nothing else of the test does)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); the RLIMIT_FSIZE test still runs")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False, capture_output=True)


def fill(disk: Path, name: str, leave: int) -> None:
    """Allocate a ballast file that leaves ``leave`` bytes free on ``disk``."""
    fs = os.statvfs(disk)
    size = fs.f_bavail * fs.f_frsize - leave
    handle = os.open(disk / name, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.posix_fallocate(handle, 0, size)
    finally:
        os.close(handle)
    assert os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize <= leave


def test_disk_full_mid_run_fails_in_one_line_keeps_the_log_whole_and_resumes(
    fake_llm, corpus_index, tmp_path, small_disk
):
    expected = reference(fake_llm, corpus_index, tmp_path / "reference", research_script)
    huge = {"on": True}

    def script(request: dict[str, Any]) -> Reply:
        reply = research_script(request)
        if turn(request) == 2 and huge["on"]:  # a long reasoning: its event does not fit in what is left
            reply.reasoning = "Weighing the sources. " * 40_000
        return reply

    run = small_disk / "run"
    gate = Gate(at_turn=2)
    with gated(fake_llm, gate, script):
        agent = start_agent(fake_llm, corpus_index, run)
        gate.wait(agent)
        fill(small_disk, "ballast", leave=256 * 1024)
        gate.opened.set()
        _, err = agent.communicate(timeout=120)

    assert agent.returncode == 1, err.decode()
    line = one_line_error(err.decode(), run)
    assert line.startswith(f"error: cannot append to {run / 'events.jsonl'}") and "No space left" in line
    events = whole_log(run)
    assert [e.step for e in events if e.type == "llm_call"] == [1, 2]  # step 3's reply never got in
    info = read_info(run)
    assert info.status == "failed" and "No space left on device" in (info.error or "")
    assert "\n" not in (info.error or "")
    assert not list(run.glob(".*.tmp"))

    # Still full: resume fails the same way, and what it appended (if anything) is whole.
    huge["on"] = False
    fake_llm.script = script
    fill(small_disk, "ballast-2", leave=0)
    failed = resume_cli(run)
    assert failed.returncode == 1
    assert "No space left on device" in one_line_error(
        failed.stderr, run if "run directory" in failed.stderr else None
    )
    whole_log(run)

    # Room again: resume finishes from the last complete step, as if nothing had happened.
    (small_disk / "ballast").unlink()
    (small_disk / "ballast-2").unlink()
    done = resume_cli(run)
    assert done.returncode == 0, done.stderr
    assert (run / "report.md").read_text() == expected.report
    events = whole_log(run)
    check_no_step_twice(events, expected.steps)
    assert [e.type for e in events].count("run_resumed") in (1, 2)
    assert read_info(run).status == "done"
    check_messages_shape(json.loads((run / "messages.json").read_text()))


WIDE = ["BM25", "ranking", "SQLite", "full-text search", "index", "documents", "query", "term frequency"]


def wide_search(request: dict[str, Any]) -> Reply:
    """``research_script``, except that turn 2 searches wide (some 10 KB of hits)."""
    if turn(request) == 2:
        search = {"action": "batch_search", "queries": WIDE * 2, "topk": 50}
        return Reply(content="Searching wider.", tool_calls=[("batch_web_surfer", search)])
    return research_script(request)


def test_disk_full_while_saving_a_long_tool_output_fails_in_one_line_and_resumes(
    fake_llm, corpus_index, tmp_path, small_disk
):
    # A result over tool_result_max_chars is cut, and its whole text saved in the workspace: that
    # write, in the step's task group, is the one that finds the disk full.
    expected = reference(
        fake_llm, corpus_index, tmp_path / "reference", wide_search, tool_result_max_chars=2000
    )
    run = small_disk / "run"
    gate = Gate(at_turn=2)
    with gated(fake_llm, gate, wide_search):
        agent = start_agent(fake_llm, corpus_index, run, {"DEEPRESEARCH_TOOL_RESULT_MAX_CHARS": "2000"})
        gate.wait(agent)
        fill(small_disk, "ballast", leave=8192)
        gate.opened.set()
        _, err = agent.communicate(timeout=120)

    assert agent.returncode == 1, err.decode()
    assert one_line_error(err.decode(), run) == f"error: cannot write in {run}: No space left on device"
    events = whole_log(run)
    assert "tool_result" not in [e.type for e in events if e.step == 3]
    assert [(e.type, getattr(e, "status", None)) for e in events[-2:]] == [
        ("error", None),
        ("run_finished", "failed"),
    ]
    # The half-saved output took the last free page, so run.json could not be rewritten (best effort).
    assert read_info(run).status in ("failed", "interrupted")

    (small_disk / "ballast").unlink()
    done = resume_cli(run)
    assert done.returncode == 0, done.stderr
    assert (run / "report.md").read_text() == expected.report
    events = whole_log(run)
    check_no_step_twice(events, expected.steps)
    assert read_info(run).status == "done"


def open_pages(request: dict[str, Any]) -> Reply:
    """``research_script``, except that turn 2 opens every local page found (a result of some 13 KB)."""
    if turn(request) == 2:
        urls = [url for url in cited_keys(request) if url.startswith("file:")]
        return Reply(
            content="Opening.", tool_calls=[("batch_web_surfer", {"action": "batch_open", "urls": urls})]
        )
    return research_script(request)


def test_file_size_limit_while_recording_a_tool_result_fails_in_one_line_and_resumes(
    fake_llm, corpus_index, tmp_path
):
    expected = reference(fake_llm, corpus_index, tmp_path / "reference", open_pages)
    opened = next(
        e
        for e in load_events(tmp_path / "reference" / "events.jsonl").events
        if e.step == 3 and e.type == "tool_result"
    )
    assert len(opened.model_dump_json()) > 10 * 1024  # bigger than the room left below

    run = tmp_path / "run"
    gate = Gate(at_turn=2)
    with gated(fake_llm, gate, open_pages):
        agent = start_agent(fake_llm, corpus_index, run)
        gate.wait(agent)
        # Room for the model's reply and the tool call, not for the pages; enough for the error event.
        limit = (run / "events.jsonl").stat().st_size + 8 * 1024
        resource.prlimit(agent.pid, resource.RLIMIT_FSIZE, (limit, limit))
        gate.opened.set()
        _, err = agent.communicate(timeout=120)

    assert agent.returncode == 1, err.decode()
    line = one_line_error(err.decode(), run)
    assert line.startswith(f"error: cannot append to {run / 'events.jsonl'}") and "File too large" in line
    events = whole_log(run)
    step3 = [e.type for e in events if e.step == 3]
    assert step3[:2] == ["llm_call", "tool_call"] and "tool_result" not in step3
    info = read_info(run)
    assert info.status == "failed" and "File too large" in (info.error or "")

    done = resume_cli(run)  # a new process, without the limit
    assert done.returncode == 0, done.stderr
    assert (run / "report.md").read_text() == expected.report
    events = whole_log(run)
    check_no_step_twice(events, expected.steps)
    resumed = next(e for e in events if e.type == "run_resumed")
    call = next(e for e in events if e.type == "tool_call" and e.step == 3)
    assert resumed.pending_calls == [call.call_id]  # the pages are opened again, nothing else is redone
    assert read_info(run).status == "done"


# --- kill -9 at the moments the kill/resume tests did not cover


def test_kill_during_compaction_then_resume_sends_the_same_context(fake_llm, corpus_index, tmp_path):
    plain = reference(fake_llm, corpus_index, tmp_path / "plain", research_script)
    tokens = {
        e.step: e.context_tokens
        for e in load_events(plain.run_dir / "events.jsonl").events
        if e.type == "llm_call"
    }
    upper = (tokens[4] + tokens[5]) // 2  # the context outgrows it before step 5 (and only then)
    limits = {"context_upper": upper, "context_lower": upper - 300}
    expected = reference(fake_llm, corpus_index, tmp_path / "reference", research_script, **limits)
    compacted = [
        e.step for e in load_events(expected.run_dir / "events.jsonl").events if e.type == "context_compacted"
    ]
    assert compacted == [5]

    hold = {"on": True}

    def held(request: dict[str, Any]) -> Reply:
        reply = research_script(request)
        if turn(request) == 4 and hold["on"]:
            reply.delay = 120
        return reply

    fake_llm.script = held
    run = tmp_path / "run"
    env = {"DEEPRESEARCH_CONTEXT_UPPER": str(upper), "DEEPRESEARCH_CONTEXT_LOWER": str(upper - 300)}
    agent = start_agent(fake_llm, corpus_index, run, env)

    def compacted_and_asked() -> bool:
        if not any(turn(r) == 4 for r in list(fake_llm.requests)):
            return False
        return any(e.type == "context_compacted" for e in load_events(run / "events.jsonl").events)

    wait_for(compacted_and_asked, agent, "the compaction before step 5 and its model call")
    kill(agent)
    sent = next(r for r in fake_llm.requests if turn(r) == 4)["messages"]
    hold["on"] = False

    done = resume_cli(run)
    assert done.returncode == 0, done.stderr
    resent = [r for r in fake_llm.requests if turn(r) == 4][-1]["messages"]
    assert resent == sent  # the replayed compaction gives the model exactly the context it had
    events = whole_log(run)
    assert [e.step for e in events if e.type == "context_compacted"] == [5]  # not compacted twice
    check_no_step_twice(events, expected.steps)
    assert (run / "report.md").read_text() == expected.report
    check_messages_shape(json.loads((run / "messages.json").read_text()))


def long_answer(request: dict[str, Any]) -> Reply:
    """``research_script`` with a final report longer than a pipe holds."""
    reply = research_script(request)
    if turn(request) >= 5:
        filler = "\n\n".join(f"Paragraph {i}: BM25 weighs terms by frequency and rarity." for i in range(200))
        reply.content = reply.content.replace("</answer>", f"\n\n{filler}\n</answer>")
    return reply


def test_kill_while_the_report_is_written_then_resume_delivers_it_without_a_new_step(
    fake_llm, corpus_index, tmp_path
):
    expected = reference(fake_llm, corpus_index, tmp_path / "reference", long_answer)
    assert len(expected.report.encode()) > 8192

    run = tmp_path / "run"
    run.mkdir()
    # The report's temporary file is a pipe: the agent's write stops once the pipe (4 KB) is full, in
    # the middle of report.md, until the test reads more, which it never does.
    pipe = run / ".report.md.tmp"
    os.mkfifo(pipe)
    reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
    fcntl.fcntl(reader, fcntl.F_SETPIPE_SZ, 4096)
    try:
        fake_llm.script = long_answer
        agent = start_agent(fake_llm, corpus_index, run)
        wait_for(lambda: bool(select.select([reader], [], [], 0)[0]), agent, "the report's first bytes")
        kill(agent)
        partial = os.read(reader, 65536)
    finally:
        os.close(reader)
    assert 0 < len(partial) < len(expected.report.encode())
    pipe.unlink()
    pipe.write_bytes(partial)  # what a kill leaves of a temporary file written to disk
    assert not (run / "report.md").exists()
    asked = len(fake_llm.requests)

    done = resume_cli(run)
    assert done.returncode == 0, done.stderr
    assert len(fake_llm.requests) == asked  # the answer was in the log: the model is not asked again
    assert (run / "report.md").read_text() == expected.report
    assert not (run / ".report.md.tmp").exists()
    events = whole_log(run)
    check_no_step_twice(events, expected.steps)
    assert [e.type for e in events].count("report") == 1
    info = read_info(run)
    assert info.status == "done" and info.citations == {"cited": 3, "resolved": 2, "unresolved": 1}
    numbered = [s["n"] for s in json.loads((run / "sources.json").read_text()) if s["n"] is not None]
    assert sorted(numbered) == [1, 2]


def test_kill_a_server_while_it_recovers_its_job_then_restart(fake_llm, corpus_index, tmp_path):
    hold = {"on": True}

    def held(request: dict[str, Any]) -> Reply:
        """Search, update the plan (held while ``hold["on"]``), answer."""
        if turn(request) == 1:
            plan = {"1": {"task": "Read about BM25", "status": "completed"}}
            reply = Reply(content="Planning.", tool_calls=[("todo", {"updates": plan})])
            reply.delay = 120 if hold["on"] else 0
            return reply
        return agent_script(request)

    fake_llm.script = held
    data = tmp_path / "data"
    first = ServeProcess(fake_llm, corpus_index, data)
    with first.client() as client:
        job = client.post("/v1/research", json={"question": QUESTION}).json()
    run = data / "runs" / job["id"]
    wait_until(lambda: any(turn(r) == 1 for r in list(fake_llm.requests)), "the first server's held call")
    assert first.finish(signal.SIGKILL) == -signal.SIGKILL

    second = ServeProcess(fake_llm, corpus_index, data)  # takes the job up at once
    wait_until(lambda: resumed_count(run) >= 1, "the second server to resume the run")
    assert second.finish(signal.SIGKILL) == -signal.SIGKILL

    hold["on"] = False
    third = ServeProcess(fake_llm, corpus_index, data)
    try:
        wait_until(lambda: job_status(third.url, job["id"])["status"] == "done", "the job after two kills")
        detail = job_status(third.url, job["id"])
        assert "BM25 ranks documents" in detail["report"]["markdown"]
    finally:
        third.finish(signal.SIGTERM)
    events = whole_log(run)
    assert [e.type for e in events].count("run_resumed") == 2
    check_no_step_twice(events, 3)
    assert read_info(run).status == "done" and (run / "report.md").is_file()
    check_messages_shape(json.loads((run / "messages.json").read_text()))


def resumed_count(run: Path) -> int:
    if not (run / "events.jsonl").is_file():
        return 0
    return sum(e.type == "run_resumed" for e in load_events(run / "events.jsonl").events)


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# --- --api-key in ps

runner = CliRunner()
KEY = "sk-crash-test-do-not-print-0123456789"


def research_args(fake: FakeOpenAI, index: Path, out: Path, *key_args: str) -> list[str]:
    return [
        "research",
        QUESTION,
        "--base-url",
        fake.base_url,
        "--model",
        "fake-model",
        "--index",
        str(index),
        "--out",
        str(out),
        "--quiet",
        *key_args,
    ]


def files_hold(folder: Path, secret: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_api_key_flag_warns_and_a_key_file_keeps_it_off_the_command_line(
    fake_llm, corpus_index, tmp_path, monkeypatch
):
    fake_llm.script = research_script
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"  {KEY}\n")
    by_file = runner.invoke(
        app, research_args(fake_llm, corpus_index, tmp_path / "by-file", "--api-key-file", str(key_file))
    )
    assert by_file.exit_code == 0, by_file.output
    assert {h.get("authorization") for h in fake_llm.request_headers} == {f"Bearer {KEY}"}
    assert "warning" not in by_file.stderr and KEY not in by_file.output
    assert files_hold(tmp_path / "by-file", KEY) == []

    fake_llm.reset()
    fake_llm.script = research_script
    flag = runner.invoke(app, research_args(fake_llm, corpus_index, tmp_path / "by-flag", "--api-key", KEY))
    assert flag.exit_code == 0, flag.output
    warnings = [line for line in flag.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "--api-key" in warnings[0] and "--api-key-file" in warnings[0]
    assert KEY not in flag.stderr and files_hold(tmp_path / "by-flag", KEY) == []

    fake_llm.reset()
    fake_llm.script = research_script
    monkeypatch.setenv("DEEPRESEARCH_API_KEY", KEY)
    by_env = runner.invoke(app, research_args(fake_llm, corpus_index, tmp_path / "by-env"))
    assert by_env.exit_code == 0 and "warning" not in by_env.stderr
    assert {h.get("authorization") for h in fake_llm.request_headers} == {f"Bearer {KEY}"}
    monkeypatch.delenv("DEEPRESEARCH_API_KEY")

    two_lines = tmp_path / "settings.env"
    two_lines.write_text(f"DEEPRESEARCH_API_KEY={KEY}\nOTHER=1\n")
    empty = tmp_path / "empty"
    empty.write_text(" \n")
    cases = {
        tmp_path / "missing": "No such file or directory",
        empty: "is empty",
        two_lines: "more than one line",
    }
    for path, reason in cases.items():
        bad = runner.invoke(app, ["resume", str(tmp_path / "by-file"), "--api-key-file", str(path)])
        assert bad.exit_code == 2, bad.output
        assert bad.stderr.startswith("error: ") and reason in bad.stderr and len(bad.stderr.splitlines()) == 1
        assert KEY not in bad.output
    both = runner.invoke(
        app, ["resume", str(tmp_path / "by-file"), "--api-key", KEY, "--api-key-file", str(key_file)]
    )
    assert both.exit_code == 2 and "not both" in both.stderr


# --- index add and links


def test_index_add_skips_a_md_link_to_a_file_without_suffix(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "bm25.md").write_text("# BM25\n\nBM25 saturates term frequency.\n")
    (tmp_path / "NOTES").write_text("# Notes\n\nA file without a suffix.\n")
    (tmp_path / "fts.txt").write_text("FTS5 is SQLite's full-text search.\n")
    (docs / "notes.md").symlink_to(tmp_path / "NOTES")
    (docs / "fts.md").symlink_to(tmp_path / "fts.txt")  # a supported target: read as its own type
    index = tmp_path / "index.sqlite"

    for paths in ([docs], [docs / "notes.md", docs / "bm25.md"]):
        added = runner.invoke(app, ["index", "add", *map(str, paths), "--index", str(index)])
        assert added.exception is None or isinstance(added.exception, SystemExit), repr(added.exception)
        assert added.exit_code == 1  # one file was skipped, and said so
        skipped = [line for line in added.stderr.splitlines() if "notes.md" in line]
        assert len(skipped) == 1 and "links to" in skipped[0] and "NOTES" in skipped[0]
    stats = runner.invoke(app, ["index", "stats", "--index", str(index)])
    assert "2 documents" in stats.output, stats.output
    found = runner.invoke(app, ["search", "FTS5 full-text", "--index", str(index)])
    assert "fts.txt" in found.output
