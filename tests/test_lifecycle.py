"""A one-shot ``deepresearch research`` process freezes its start-up objects and exits without the
interpreter's teardown — and still says everything and leaves a whole run directory; elsewhere (this
test process, a server) neither happens."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deepresearch import lifecycle
from tests.agent.scripts import research_script
from tests.fakes.openai_server import FakeOpenAI
from tests.test_resume import QUESTION


def test_outside_a_one_shot_process_nothing_is_frozen_and_exit_is_ordinary() -> None:
    assert not lifecycle.is_one_shot()
    frozen = gc.get_freeze_count()
    lifecycle.freeze_long_lived()
    assert gc.get_freeze_count() == frozen
    with pytest.raises(SystemExit) as exited:
        lifecycle.exit_now(3)
    assert exited.value.code == 3


@pytest.mark.slow
def test_a_research_process_exits_fast_with_its_output_and_run_whole(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path
) -> None:
    fake_llm.script = research_script
    run = tmp_path / "run"
    probe = (
        "import gc, sys, atexit\n"
        "atexit.register(lambda: print('teardown ran', file=sys.stderr))\n"  # skipped by os._exit
        "from deepresearch.cli import main\n"
        "sys.argv = ['deepresearch', *sys.argv[1:]]\n"
        "import deepresearch.lifecycle as life\n"
        "original = life.exit_now\n"
        "def report(code):\n"
        "    print(f'frozen={gc.get_freeze_count()}', file=sys.stderr)\n"
        "    original(code)\n"
        "life.exit_now = report\n"
        "main()\n"
    )
    command = [
        *(sys.executable, "-c", probe, "research", QUESTION, "--base-url", fake_llm.base_url),
        *("--model", "fake-model", "--index", str(corpus_index), "--out", str(run), "--quiet"),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=dict(os.environ))

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"report: {run / 'report.md'}")  # flushed before leaving
    assert "outcome: " in done.stderr
    assert "teardown ran" not in done.stderr  # the interpreter's teardown was skipped
    frozen = int(done.stderr.split("frozen=")[1].split()[0])
    assert frozen > 10_000  # start-up objects (modules, the run's services) were frozen
    messages = json.loads((run / "messages.json").read_text())
    assert messages[-1]["role"] == "assistant" and (run / "report.md").is_file()
    assert json.loads((run / "run.json").read_text())["status"] == "done"


def test_importing_deepresearch_keeps_httpx_from_loading_its_command_line_client() -> None:
    """httpx imports click, pygments and rich (~6 MB) for its CLI whenever they are installed."""
    probe = "import deepresearch, httpx, sys; print(sorted({'rich', 'pygments', 'click'} & set(sys.modules)))"
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "[]"
    assert callable(__import__("httpx").main)  # the stub httpx puts in its place


def test_warm_up_loads_before_the_first_run_what_a_run_loads_on_first_use(tmp_path: Path) -> None:
    """A process hosting many runs (the benchmark runner, a Ray worker) warms up once before launching
    them, so its first runs do not all wait on the loop behind imports taken mid-step."""
    probe = (
        "import sys\n"
        "from deepresearch.research import warm_up\n"
        "from deepresearch.llm import tokens\n"
        "from deepresearch import tls\n"
        "warm_up()\n"
        "wanted = {'trafilatura', 'lxml.html', 'markdown_it', 'deepresearch.fetch.http'}\n"
        "loaded = wanted <= set(sys.modules)\n"
        "print(loaded, tokens._counter.cache_info().currsize, tls.shared_ssl_context.cache_info().currsize)\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert shown.stdout.split() == ["True", "1", "1"], shown.stderr
