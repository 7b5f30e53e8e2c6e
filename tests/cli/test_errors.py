"""A user's obvious mistakes end in one line that says what to do, with the right exit code, and
create nothing: no index, no server extra, a missing or empty index behind a run, an unknown
``--search`` name, a ``runs --dir`` that is not there.

The CLI is invoked with ``catch_exceptions=False``, so a traceback (an exception leaving the command)
fails the test instead of being folded into exit code 1; a missing extra is a real import failure in
a child process whose import system refuses the extra's modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from deepresearch.cli import app
from deepresearch.config import default_data_dir
from tests.bench.scripts import write_tasks

runner = CliRunner()
ADVICE = (
    "make one with `deepresearch index fetch debian-docs` (the Debian documentation) or "
    "`deepresearch index add PATH` (your own files), or search the web with --search"
)
BACKENDS = "auto, local, searxng, tavily, exa, brave, serper, jina, stepfun, ddg"


def invoke(*args: str, **env: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "220", **env})


def one_line(result: Any) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return str(lines[0])


# --- index stats


@pytest.fixture
def empty_index(tmp_path: Path) -> Path:
    """An index file that exists and holds no document (``index add`` of an empty folder)."""
    index = tmp_path / "empty.sqlite"
    (tmp_path / "nothing").mkdir()
    assert invoke("index", "add", str(tmp_path / "nothing"), "--index", str(index)).exit_code == 0
    return index


def test_index_stats_without_an_index_says_how_to_make_one_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "x" / "none.sqlite"
    named = invoke("index", "stats", "--index", str(missing))
    assert named.exit_code == 1
    assert one_line(named) == f"error: no local index at {missing}: {ADVICE}"
    assert not missing.parent.exists()

    default = default_data_dir() / "index.sqlite"  # under the test's own empty XDG_DATA_HOME
    implied = invoke("index", "stats")
    assert implied.exit_code == 1
    assert one_line(implied) == f"error: no local index at {default}: {ADVICE}"
    assert not default.parent.exists()


def test_index_stats_of_an_empty_index_counts_zero_and_says_how_to_fill_it(empty_index: Path) -> None:
    stats = invoke("index", "stats", "--index", str(empty_index))
    assert stats.exit_code == 0
    assert stats.stdout.startswith(f"{empty_index}: 0 documents from 0 sources, 0 passages")
    assert one_line(stats) == f"warning: the local index at {empty_index} holds no document: {ADVICE}"


def test_an_unreadable_index_is_one_line_for_stats_search_and_research(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_text("not a database")
    expected = f"error: the local index at {garbage} is unreadable (file is not a database); delete it"
    endpoint = ["--model", "m", "--base-url", "http://127.0.0.1:9/v1"]  # never reached
    for args in (
        ["index", "stats"],
        ["search", "bm25"],
        ["research", "q", *endpoint, "--out", str(tmp_path / "r")],
    ):
        result = invoke(*args, "--index", str(garbage))
        assert result.exit_code == 1, args
        assert one_line(result).startswith(expected), args
    assert sorted(tmp_path.iterdir()) == [garbage]


# --- a missing or empty index, before a run starts


def test_research_refuses_a_missing_index_before_a_run_directory_or_a_model_call(
    fake_llm: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "none.sqlite"
    result = invoke(
        "research", "q", "--search", "local", "--index", str(missing),
        "--model", "fake-model", "--base-url", fake_llm.base_url, "--quiet",
    )  # fmt: skip
    assert result.exit_code == 1
    assert one_line(result) == f"error: no local index at {missing}: {ADVICE}"
    assert not (tmp_path / "runs").exists() and not missing.exists()
    assert fake_llm.requests == []


def test_research_refuses_an_index_without_documents_the_same_way(
    fake_llm: Any, empty_index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(
        "research", "q", "--index", str(empty_index), "--model", "fake-model",
        "--base-url", fake_llm.base_url, "--out", "runs/one", "--quiet",
    )  # fmt: skip
    assert result.exit_code == 1
    assert one_line(result) == f"error: the local index at {empty_index} holds no document: {ADVICE}"
    assert not (tmp_path / "runs").exists()
    assert fake_llm.requests == []


def test_search_gives_the_same_advice_for_a_missing_or_empty_index(tmp_path: Path, empty_index: Path) -> None:
    missing = invoke("search", "bm25", "--index", str(tmp_path / "none.sqlite"))
    assert missing.exit_code == 1
    assert one_line(missing) == f"error: no local index at {tmp_path / 'none.sqlite'}: {ADVICE}"
    empty = invoke("search", "bm25", "--index", str(empty_index))
    assert empty.exit_code == 1 and "holds no document" in one_line(empty)


def test_bench_run_refuses_a_missing_index_once_before_creating_the_benchmark(
    fake_llm: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    tasks = write_tasks(tmp_path / "tasks.jsonl", {"q1": "What is BM25?", "q2": "What is FTS5?"})
    result = invoke(
        "bench", "run", "--tasks", str(tasks), "--name", "b", "--index", str(tmp_path / "none.sqlite"),
        "--model", "fake-model", "--base-url", fake_llm.base_url, "--quiet",
    )  # fmt: skip
    assert result.exit_code == 1
    assert one_line(result) == f"error: no local index at {tmp_path / 'none.sqlite'}: {ADVICE}"
    assert not (tmp_path / "bench").exists()
    assert fake_llm.requests == []


def test_a_real_index_still_runs_the_research(fake_llm: Any, corpus_index: Path, tmp_path: Path) -> None:
    from tests.agent.scripts import research_script

    fake_llm.script = research_script
    result = invoke(
        "research", "How does BM25 rank documents?", "--index", str(corpus_index),
        "--model", "fake-model", "--base-url", fake_llm.base_url, "--out", str(tmp_path / "run"), "--quiet",
    )  # fmt: skip
    assert "local index" not in result.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "done", result.output


# --- an unknown --search name


@pytest.mark.parametrize(
    ("args", "env", "origin"),
    [
        (["search", "bm25", "--search", "nosuch"], {}, "--search"),
        (["research", "q", "--search", "nosuch"], {}, "--search"),
        (["search", "bm25"], {"DEEPRESEARCH_SEARCH": "nosuch"}, "DEEPRESEARCH_SEARCH"),
    ],
)
def test_an_unknown_search_backend_is_a_bad_setting_listing_the_choices(
    args: list[str], env: dict[str, str], origin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke(*args, **env)
    assert result.exit_code == 2
    line = one_line(result)
    assert line.startswith(f"error: invalid settings: search (from {origin}): ")
    assert line.endswith(f"unknown search backend 'nosuch'; choose one of: {BACKENDS}")
    assert list(tmp_path.iterdir()) == []


# --- runs --dir


def test_runs_names_a_missing_folder_and_says_when_there_are_no_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    nowhere = invoke("runs", "--dir", "nowhere")
    assert nowhere.exit_code == 1
    assert one_line(nowhere) == "error: no folder nowhere (--dir names the folder holding run directories)"
    none_yet = invoke("runs")
    assert none_yet.exit_code == 0
    assert none_yet.stdout == "no runs in runs/ (deepresearch research QUESTION starts one)\n"
    (tmp_path / "elsewhere").mkdir()
    empty = invoke("runs", "--dir", "elsewhere", DEEPRESEARCH_RUNS_DIR="unused")
    assert empty.exit_code == 0 and empty.stdout == "no runs in elsewhere/\n"
    from_settings = invoke("runs", DEEPRESEARCH_RUNS_DIR="elsewhere")
    assert from_settings.exit_code == 0 and from_settings.stdout == "no runs in elsewhere/\n"


# --- --help


def test_model_help_names_the_local_models_and_any_gguf_file() -> None:
    result = invoke("research", "--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.replace("│", " ").split())
    assert "local (the bundled SmolLM2-135M, after `deepresearch models pull`)" in text
    assert "local:qwen2.5-coder-1.5b (after `deepresearch models pull qwen2.5-coder-1.5b`)" in text
    assert "local:/path/to/model.gguf (any GGUF file)" in text


# --- serve / mcp without the server extra

WITHOUT = """
import sys

blocked = set(sys.argv[1].split(","))


class Uninstalled:
    "Answers an import of a blocked package as a Python without it does."

    def find_spec(self, name, path=None, target=None):
        if name in blocked or name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Uninstalled())
sys.argv = ["deepresearch", *sys.argv[2:]]
from deepresearch.cli import main

main()
"""


def without(blocked: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``deepresearch ARGS`` in a child Python in which the modules ``blocked`` names cannot be imported."""
    return subprocess.run(
        [sys.executable, "-c", WITHOUT, blocked, *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("blocked", "command", "missing"),
    [
        ("fastapi", "serve", "fastapi"),
        ("uvicorn", "serve", "uvicorn"),  # imported only once the server starts, before the fix
        ("mcp,mcp_types", "mcp", "mcp"),
    ],
)
def test_serve_and_mcp_without_the_server_extra_name_it(
    blocked: str, command: str, missing: str, tmp_path: Path
) -> None:
    done = without(blocked, command, *(["--port", "0"] if command == "serve" else []), cwd=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1
    assert done.stderr == (
        f"error: deepresearch {command} needs the optional extra 'server' ({missing} is not installed): "
        "pip install 'deepresearch[server]'\n"
    )
    assert done.stdout == "" and list(tmp_path.iterdir()) == []


def test_a_missing_module_of_our_own_is_a_bug_not_a_missing_extra(tmp_path: Path) -> None:
    done = without("deepresearch.server", "serve", "--port", "0", cwd=tmp_path)
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "No module named 'deepresearch.server'" in done.stderr
    assert "optional extra" not in done.stderr
