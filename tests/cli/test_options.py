"""The options that set ``Settings`` are declared once (``cli.options.FLAGS``) and reach the settings.

Three layers: every flag in the table, given alone to a command built with the real decorator, sets its
``Settings`` field and nothing else; every command of the real CLI takes such options only through the
decorator (so none can be declared and forgotten); and end to end, ``research`` records what its flags
said, and ``resume`` continues a run against another endpoint and model than the one it started with.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import typer
from pydantic import SecretStr
from typer.testing import CliRunner

from deepresearch.cli import app
from deepresearch.cli.options import FLAGS, KEY_FLAGS, SettingsFlags, settings_options
from deepresearch.config import Settings
from tests.agent.scripts import research_script
from tests.fakes.openai_server import FakeOpenAI

runner = CliRunner()

SAMPLES: dict[str, tuple[list[str], str, Any]] = {
    # FLAGS name: (arguments, the Settings field, its value)
    "base_url": (["--base-url", "http://127.0.0.1:1/v1"], "base_url", "http://127.0.0.1:1/v1"),
    "model": (["--model", "m-1"], "model", "m-1"),
    "api_key": (["--api-key", "key-cli"], "api_key", "key-cli"),
    "api_key_file": (["--api-key-file", "{key_file}"], "api_key", "key-in-file"),
    "tool_mode": (["--tool-mode", "json"], "tool_mode", "json"),
    "stream": (["--no-stream"], "stream", False),
    "judge_model": (["--judge-model", "j-1"], "judge_model", "j-1"),
    "judge_base_url": (["--judge-base-url", "http://127.0.0.1:2/v1"], "judge_base_url", "http://127.0.0.1:2/v1"),
    "judge_api_key": (["--judge-api-key", "judge-cli"], "judge_api_key", "judge-cli"),
    "judge_api_key_file": (["--judge-api-key-file", "{key_file}"], "judge_api_key", "key-in-file"),
    "search": (["--search", "ddg"], "search", "ddg"),
    "index": (["--index", "idx.sqlite"], "index", Path("idx.sqlite")),
    "max_steps": (["--max-steps", "7"], "max_steps", 7),
    "max_cost": (["--max-cost", "1.5"], "max_cost", 1.5),
    "max_run_cost": (["--max-run-cost", "2.5"], "max_cost", 2.5),
    "max_tokens": (["--max-tokens", "1000"], "max_total_tokens", 1000),
    "max_time": (["--max-time", "60"], "max_wall_time", 60.0),
    "strategy": (["--strategy", "guided"], "strategy", "guided"),
    "language": (["--language", "zh"], "language", "zh"),
    "out": (["--out", "runs/x"], "out", Path("runs/x")),
    "index_url": (["--index-url", "http://127.0.0.1:3/simple"], "package_index_url", "http://127.0.0.1:3/simple"),
}  # fmt: skip
SYNTH_COMMANDS = ("plan", "kg", "walk", "difficulty", "reflect", "verify", "draft", "rubrics")
NOT_SETTINGS = {
    # (command, option parameter) named like a Settings field that is not one, and why
    ("bench run", "max_cost"): "the whole benchmark's USD limit (--max-run-cost sets each run's)",
    ("runs", "runs_dir"): "--dir: a folder to list instead of the configured runs_dir",
    ("judge grade", "out"): "the records file, not a run directory",
    ("judge synth-rubrics", "out"): "the tasks file",
    ("bench report", "out"): "the HTML report",
    ("bench export-pairs", "out"): "the export folder",
    ("bench import-pairs", "out"): "the verdicts file",
    ("judge race", "out"): "the per-task RACE file",
    ("judge fact", "out"): "the per-report FACT file",
    ("judge fact", "language"): "the prompt language for the reports checked, not a run's",
    ("curate", "out"): "the folder of training files",
    ("train format", "out"): "the packed sequences file",
    ("train sft", "out"): "the checkpoint folder",
    ("train sft", "model"): "a local model folder to fine-tune, not the agent's model",
    ("train sft", "config"): "the training recipe, not deepresearch.toml",
    ("train rl", "out"): "the checkpoint folder",
    ("train rl", "model"): "a local model folder (or tiny) to train, not the agent's model",
    ("train rl", "config"): "the training recipe, not deepresearch.toml",
    ("train judge-data", "out"): "the folder of judge training files",
    ("train judge-rl", "out"): "the checkpoint folder",
    ("train judge-rl", "model"): "a local model folder (or tiny) to train, not the agent's model",
    ("train judge-rl", "config"): "the training recipe, not deepresearch.toml",
    ("train verl", "out"): "the verl run folder (dataset, recipe, launch.sh)",
    ("train verl", "model"): "the policy's path on the cluster, not the agent's model",
    ("train verl", "config"): "a verl recipe, not deepresearch.toml",
    **{(f"synth {name}", "out"): "the pipeline's output JSONL" for name in SYNTH_COMMANDS},
    ("synth kg", "language"): "the language of the questions written, not a run's",
    ("synth walk", "language"): "the language of the questions written, not a run's",
}


def one_flag_app(name: str, seen: list[Settings]) -> typer.Typer:
    """A one-command app that takes the option ``name`` through the real decorator."""
    tiny = typer.Typer()

    @tiny.command()
    @settings_options(name)
    def show(*, flags: SettingsFlags) -> None:
        seen.append(flags.settings())

    return tiny


def plain(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def test_every_flag_has_a_sample_and_names_a_setting() -> None:
    assert set(SAMPLES) == set(FLAGS)
    for name, flag in FLAGS.items():
        key = flag.field.removesuffix("_file")
        field = key if key in KEY_FLAGS else flag.field  # a key file sets the key
        assert field in Settings.model_fields, name
        assert SAMPLES[name][1] == field, name
    assert {f"{key}_file" for key in KEY_FLAGS} <= {flag.field for flag in FLAGS.values()}


@pytest.mark.parametrize("name", sorted(FLAGS))
def test_each_flag_sets_its_field_and_nothing_else(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no deepresearch.toml; the environment is cleared by conftest
    (tmp_path / "key.txt").write_text("key-in-file\n")
    args, field, value = SAMPLES[name]
    seen: list[Settings] = []
    given = [arg.format(key_file=tmp_path / "key.txt") for arg in args]
    result = runner.invoke(one_flag_app(name, seen), given, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [settings] = seen
    assert plain(getattr(settings, field)) == value
    assert settings.model_fields_set == {field}
    none: list[Settings] = []
    assert runner.invoke(one_flag_app(name, none), [], catch_exceptions=False).exit_code == 0
    assert none[0].model_fields_set == set()  # not given: the default, the environment or the file decides


def test_config_names_the_file_and_a_flag_wins_over_it(tmp_path: Path) -> None:
    config = tmp_path / "elsewhere.toml"
    config.write_text('model = "from-toml"\nmax_steps = 4\n')
    seen: list[Settings] = []
    args = ["--config", str(config), "--model", "from-flag"]
    assert runner.invoke(one_flag_app("model", seen), args, catch_exceptions=False).exit_code == 0
    assert (seen[0].model, seen[0].max_steps) == ("from-flag", 4)
    bad = runner.invoke(one_flag_app("max_steps", seen), ["--max-steps", "0"], catch_exceptions=False)
    assert bad.exit_code == 2 and "max_steps (from --max-steps)" in bad.stderr


def test_the_decorator_refuses_a_command_it_cannot_serve() -> None:
    with pytest.raises(ValueError, match="unknown"):
        settings_options("modle")
    with pytest.raises(ValueError, match="repeated"):
        settings_options("model", "model")

    def no_flags(model: str | None = None) -> None: ...

    def clashes(*, model: str | None = None, flags: SettingsFlags) -> None: ...

    for command in (no_flags, clashes):
        with pytest.raises(ValueError, match="'flags' parameter"):
            settings_options("model")(command)


def commands(group: Any, path: str = "") -> dict[str, Any]:
    """Every command of the CLI by its path (typer's own click types, as docs/generate.py walks them)."""
    if hasattr(group, "commands"):
        found: dict[str, Any] = {}
        for name, sub in group.commands.items():
            found |= commands(sub, f"{path} {name}".strip())
        return found
    return {path: group}


def test_no_command_takes_a_settings_option_outside_the_group() -> None:
    settings_like = set(FLAGS) | set(Settings.model_fields) | {"config"}
    taken: dict[str, set[str]] = {}
    declared: set[tuple[str, str]] = set()
    for path, command in commands(typer.main.get_command(app)).items():
        options = {p.name for p in command.params if p.param_type_name == "option" and p.name}
        declared |= {(path, name) for name in options}
        names = getattr(command.callback, "settings_options", None)  # set by the decorator
        injected = set() if names is None else {*names, "config"}
        assert injected <= options, path
        stray = {name for name in options & settings_like - injected if (path, name) not in NOT_SETTINGS}
        assert not stray, f"{path}: {stray} set Settings fields but bypass @settings_options"
        taken[path] = injected
    assert set(NOT_SETTINGS) <= declared  # the exceptions name real options
    model_options = {"base_url", "model", "api_key", "api_key_file", "max_steps", "max_cost", "max_tokens"}
    assert model_options | {"max_time", "search", "index", "tool_mode", "stream"} <= taken["resume"]
    assert model_options | {"out", "strategy", "language", "config"} <= taken["research"]
    assert taken["research"] - taken["resume"] == {"out", "strategy", "language"}
    for path in ("serve", "mcp", "bench run", "judge synth-rubrics"):
        assert {"base_url", "model", "api_key", "api_key_file"} <= taken[path], path
    for path in ("judge grade", "judge synth-rubrics", "bench grade", "bench compare"):
        assert {"judge_model", "judge_base_url", "judge_api_key", "judge_api_key_file"} <= taken[path], path


# --- end to end, against the scripted model


def first_event(run: Path) -> dict[str, Any]:
    return dict(json.loads((run / "events.jsonl").read_text().splitlines()[0]))


def test_research_records_what_each_flag_said(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path
) -> None:
    fake_llm.script = research_script
    (tmp_path / "key.txt").write_text("key-from-file\n")
    config = tmp_path / "dr.toml"
    config.write_text('model = "from-toml"\ntemperature = 0.25\n')
    run = tmp_path / "run"
    args = [
        "research", "How does BM25 rank documents?", "--quiet",
        "--base-url", fake_llm.base_url, "--model", "fake-cli", "--api-key-file", str(tmp_path / "key.txt"),
        "--search", "local", "--index", str(corpus_index), "--out", str(run),
        "--max-steps", "9", "--max-cost", "5", "--max-tokens", "500000", "--max-time", "600",
        "--strategy", "react", "--tool-mode", "native", "--no-stream", "--language", "en",
        "--config", str(config),
    ]  # fmt: skip
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    recorded = first_event(run)["settings"]
    expected = {
        "base_url": fake_llm.base_url, "model": "fake-cli", "search": "local", "index": str(corpus_index),
        "out": str(run), "max_steps": 9, "max_cost": 5.0, "max_total_tokens": 500000,
        "max_wall_time": 600.0, "strategy": "react", "tool_mode": "native", "stream": False,
        "language": "en", "temperature": 0.25, "keys_set": ["api_key"],
    }  # fmt: skip
    assert {name: recorded[name] for name in expected} == expected
    assert "key-from-file" not in (run / "events.jsonl").read_text()
    assert len(fake_llm.requests) == 6
    for body, headers in zip(fake_llm.requests, fake_llm.request_headers, strict=True):
        assert body["model"] == "fake-cli" and not body.get("stream") and body["temperature"] == 0.25
        assert headers["authorization"] == "Bearer key-from-file"


def test_a_run_without_out_lives_in_a_folder_named_by_its_id(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    fake_llm.script = research_script
    args = ["research", "How does BM25 rank documents?", "--quiet", "--base-url", fake_llm.base_url]
    result = runner.invoke(app, [*args, "--model", "m", "--index", str(corpus_index)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [run] = list((tmp_path / "runs").iterdir())
    assert json.loads((run / "run.json").read_text())["id"] == run.name
    assert first_event(run)["run_id"] == run.name
    assert f"report: runs/{run.name}/report.md" in result.stdout


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_resume_continues_against_another_endpoint_and_model(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    dead = f"http://127.0.0.1:{closed_port()}/v1"
    start = ["research", "How does BM25 rank documents?", "--quiet", "--base-url", dead, "--model", "first"]
    start += ["--index", str(corpus_index), "--out", str(run), "--max-steps", "9"]
    failed = runner.invoke(app, start, catch_exceptions=False, env={"DEEPRESEARCH_MAX_RETRIES": "0"})
    assert failed.exit_code == 1 and f"deepresearch resume {run}" in failed.stderr
    info = json.loads((run / "run.json").read_text())
    assert (info["status"], info["model"], info["steps"]) == ("failed", "first", 0)
    assert fake_llm.requests == []

    fake_llm.script = research_script
    (tmp_path / "key.txt").write_text("second-key")
    again = ["resume", str(run), "--quiet", "--base-url", fake_llm.base_url, "--model", "other"]
    again += ["--api-key-file", str(tmp_path / "key.txt"), "--max-steps", "12"]
    result = runner.invoke(app, again, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"report: {run}/report.md" in result.stdout and "outcome: report" in result.stderr
    assert len(fake_llm.requests) == 6
    assert {body["model"] for body in fake_llm.requests} == {"other"}
    assert {headers["authorization"] for headers in fake_llm.request_headers} == {"Bearer second-key"}
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "done" and info["outcome"] == "report"
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert [e["type"] for e in events].count("run_resumed") == 1
    assert events[0]["settings"]["model"] == "first"  # the record of how it started stays
