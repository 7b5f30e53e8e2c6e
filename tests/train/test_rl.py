"""`train rl`: the policy is served to our own agent over a real socket, the tokens it wrote are the
only ones trained (tool results masked), rollouts share a search cache, and GRPO with the judge's
strict reward records a reward per step and changes the weights.

Everything is offline: the tiny random model and tokenizer of ``train.tiny``, the test corpus index,
and the fake OpenAI server as the judge.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")

from pydantic import SecretStr
from typer.testing import CliRunner

from deepresearch.cli import app
from deepresearch.config import Settings
from deepresearch.errors import ConfigError
from deepresearch.judge.rubrics import Rubric, Task
from deepresearch.research import research
from deepresearch.runs import RunDir
from deepresearch.train.advantages import group_advantages
from deepresearch.train.format import load_tokenizer
from deepresearch.train.policy import PolicyServer, Trajectory, scripted_generator
from deepresearch.train.rl import floor_reward, load_rl_recipe, run_rl
from deepresearch.train.sft import read_metrics
from deepresearch.train.tiny import materialize
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.judge.scripted_judge import verdict_object

SEARCH = (
    "Let me search.\n<tool_call>\n"
    '{"name": "batch_web_surfer", "arguments": {"action": "batch_search", "queries": ["BM25 saturation"]}}'
    "\n</tool_call>"
)
_KEY = re.compile(r"<cite_index>(web_[0-9a-f]{8})</cite_index>")


def cited_report(prompt: str) -> str:
    """A report citing the first source the search returned (the policy read its context)."""
    key = _KEY.findall(prompt)[0]
    return f"# BM25\n\nBM25 saturates the weight of repeated terms \\cite{{{key}}}.\n"


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import torch

    torch.set_num_threads(1)
    return tmp_path


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return materialize(tmp_path_factory.mktemp("tiny") / "model")


def agent_settings(server: PolicyServer, name: str, index: Path, out: Path, **extra: Any) -> Settings:
    return Settings(
        base_url=server.base_url(name),
        model="policy",
        api_key=SecretStr(server.api_key),
        tool_mode="native",
        stream=False,
        index=index,
        out=out,
        **extra,
    )


def test_the_trajectory_is_the_tokens_the_policy_saw_with_only_its_own_trained(
    offline: Path, tiny_folder: Path, corpus_index: Path
) -> None:
    tokenizer = load_tokenizer(tiny_folder)
    generate = scripted_generator(tokenizer, [SEARCH, cited_report])
    with PolicyServer(tokenizer, generate, max_length=60_000, max_new_tokens=512) as server:
        settings = agent_settings(server, "r0", corpus_index, offline / "run", max_steps=4)
        result = asyncio.run(research("How does BM25 treat repeated terms?", settings))
        trajectory = server.trajectory("r0")

    assert result.status == "done"
    run = RunDir.open(offline / "run")
    assert "BM25 saturates the weight of repeated terms" in (run.report() or "")
    assert (trajectory.calls, trajectory.segments, trajectory.overflowed) == (2, 1, False)

    # the trained tokens are exactly the two replies, each ended with EOS
    trained = [t for t, m in zip(trajectory.completion_ids, trajectory.env_mask, strict=True) if m]
    eos = tokenizer.eos_token
    decoded = tokenizer.decode(trained, skip_special_tokens=False)
    assert decoded.startswith(SEARCH + eos)
    assert re.search(r"\\cite\{web_[0-9a-f]{8}\}\.\n" + re.escape(eos) + "$", decoded)
    assert len(trajectory.env_mask) == len(trajectory.completion_ids)

    # the masked tokens are the environment's: the tool result, the turn markers, no policy text
    environment = [t for t, m in zip(trajectory.completion_ids, trajectory.env_mask, strict=True) if not m]
    shown = tokenizer.decode(environment, skip_special_tokens=False)
    assert "<|im_start|>tool" in shown and "BM25" in shown and "<cite_index>web_" in shown
    assert "Let me search." not in shown

    # the prompt is the first request as the chat template renders it, tools included
    prompt = tokenizer.decode(trajectory.prompt_ids, skip_special_tokens=False)
    assert prompt.startswith("<|im_start|>system\n") and "batch_web_surfer" in prompt
    assert prompt.endswith("How does BM25 treat repeated terms?<|im_end|>\n<|im_start|>assistant\n")
    # and nothing was re-tokenised: prompt + completion is one sequence the model can be trained on
    full = tokenizer.decode(trajectory.prompt_ids + trajectory.completion_ids, skip_special_tokens=False)
    assert full.count("<|im_start|>assistant\n") == 2


def test_an_overlong_context_is_refused_like_a_real_server_and_ends_the_run(
    offline: Path, tiny_folder: Path, corpus_index: Path
) -> None:
    tokenizer = load_tokenizer(tiny_folder)
    generate = scripted_generator(tokenizer, [SEARCH, cited_report])
    # the first prompt (system prompt, tools, question) is ~6.2k tiny tokens; with search results it is ~9k
    with PolicyServer(tokenizer, generate, max_length=7_000, max_new_tokens=512) as server:
        settings = agent_settings(server, "r1", corpus_index, offline / "run1", max_steps=4)
        with pytest.raises(Exception, match=r"the policy.s limit is 7000"):
            asyncio.run(research("How does BM25 treat repeated terms?", settings))
        trajectory: Trajectory = server.trajectory("r1")
    assert trajectory.overflowed and trajectory.calls == 2 and trajectory.generated > 0


def test_the_policy_server_wants_its_key_and_a_known_rollout(tiny_folder: Path) -> None:
    import httpx

    tokenizer = load_tokenizer(tiny_folder)
    with PolicyServer(
        tokenizer, scripted_generator(tokenizer, ["hi"]), max_length=4096, max_new_tokens=8
    ) as server:
        base = server.base_url("r0")
        body = {"model": "policy", "messages": [{"role": "user", "content": "hello"}]}
        assert httpx.post(f"{base}/chat/completions", json=body).status_code == 401
        auth = {"Authorization": f"Bearer {server.api_key}"}
        unknown = httpx.post(f"{server.url}/s/nobody/v1/chat/completions", json=body, headers=auth)
        assert unknown.status_code == 404
        bad = httpx.post(f"{base}/chat/completions", content=b"{not json", headers=auth)
        assert bad.status_code == 400 and "bad body" in bad.json()["error"]["message"]
        good = httpx.post(f"{base}/chat/completions", json=body, headers=auth).json()
        assert good["choices"][0]["message"] == {"role": "assistant", "content": "hi"}
        assert good["choices"][0]["finish_reason"] == "stop"
        assert server.url.startswith("http://127.0.0.1:")


# --- GRPO end to end -------------------------------------------------------------------------------

TASKS = [
    {
        "task_id": "bm25",
        "prompt": "How does BM25 treat repeated terms?",
        "rubrics": [
            {"criterion": "Explains term-frequency saturation", "weight": 3},
            {"criterion": "Mentions the k1 parameter", "weight": 1},
            {"criterion": "Invents a source", "weight": -2},
        ],
    },
    {
        "task_id": "fts5",
        "prompt": "What does SQLite FTS5 offer for ranking?",
        "rubrics": [{"criterion": "Names bm25() as the ranking function", "weight": 2}],
    },
]


def hashed_judge(request: dict[str, Any]) -> Reply:
    """Verdicts that depend on the report's text, so sampled reports get different rewards."""
    text = str(request["messages"][0]["content"])
    digest = hashlib.sha256(text.encode()).digest()[0]
    negative = "flaw" in text.lower() and "present" in text.lower()
    label = (
        ("present" if digest % 2 else "absent")
        if negative
        else ("satisfied" if digest % 2 else "not_satisfied")
    )
    return Reply(content=json.dumps(verdict_object(label)))


def write_rl_folder(folder: Path, judge: FakeOpenAI, index: Path, body: str = "") -> Path:
    (folder / "tasks.jsonl").write_text("".join(json.dumps(task) + "\n" for task in TASKS), encoding="utf-8")
    recipe = folder / "rl.toml"
    recipe.write_text(
        'model = "tiny"\ntasks = "tasks.jsonl"\noutput_dir = "out"\n'
        f'index = "{index}"\n'
        "max_steps = 2\nnum_generations = 2\ntasks_per_step = 1\nlearning_rate = 5e-3\n"
        "max_length = 60000\nmax_new_tokens = 24\nrollout_max_steps = 2\nconcurrency = 2\n" + body,
        encoding="utf-8",
    )
    return recipe


def test_grpo_with_our_agent_as_rollouts_records_rewards_and_changes_the_weights(
    offline: Path, fake_llm: FakeOpenAI, corpus_index: Path
) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    fake_llm.script = hashed_judge
    recipe = load_rl_recipe(write_rl_folder(offline, fake_llm, corpus_index))
    settings = Settings(judge_base_url=fake_llm.base_url, judge_model="judge", judge_api_key=SecretStr("k"))
    result = run_rl(recipe, settings, console=False)

    assert result.steps == 2 and (result.rollouts, result.reported) == (4, 4)
    metrics = read_metrics(result.metrics_path)
    per_step = [line for line in metrics if "reward" in line]
    assert [line["step"] for line in per_step] == [1, 2]
    rollouts = [json.loads(line) for line in result.rollouts_path.read_text().splitlines()]
    assert len(rollouts) == 4 and {r["step"] for r in rollouts} == {1, 2}
    for rollout in rollouts:
        assert Path(rollout["run_dir"]).is_dir() and rollout["calls"] >= 1 and rollout["generated_tokens"] > 0
        assert rollout["reward"] is not None
    # each step's logged reward is the mean of its rollouts' rewards; advantages are the group's
    for line in per_step:
        group = [r for r in rollouts if r["step"] == line["step"]]
        rewards = [r["reward"] for r in group]
        assert line["reward"] == pytest.approx(sum(rewards) / len(rewards), abs=1e-6)
        assert [r["advantage"] for r in group] == pytest.approx(group_advantages(rewards, 2))
    assert (recipe.output_dir / "search-cache.sqlite").is_file()

    trained = AutoModelForCausalLM.from_pretrained(str(result.output_dir), local_files_only=True)
    initial = AutoModelForCausalLM.from_pretrained(
        str(recipe.output_dir / "tiny-model"), local_files_only=True
    )
    changed = [
        name
        for (name, after), (_, before) in zip(
            trained.named_parameters(), initial.named_parameters(), strict=True
        )
        if not torch.equal(after, before)
    ]
    assert changed, "no weight moved"


def test_train_rl_command_takes_its_overrides_and_fails_clearly(
    offline: Path, fake_llm: FakeOpenAI, corpus_index: Path
) -> None:
    fake_llm.script = hashed_judge
    recipe = write_rl_folder(offline, fake_llm, corpus_index)
    runner = CliRunner()
    out = offline / "cli-out"
    result = runner.invoke(
        app,
        [
            "train", "rl", "--config", str(recipe), "--model", "tiny", "--steps", "1", "--out", str(out),
            "--tasks", str(offline / "tasks.jsonl"), "--index", str(corpus_index),
            "--judge-model", "judge", "--judge-base-url", fake_llm.base_url, "--judge-api-key", "k",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [line["step"] for line in read_metrics(out / "metrics.jsonl") if "reward" in line] == [1]

    (offline / "empty.jsonl").write_text("", encoding="utf-8")
    bad = runner.invoke(
        app, ["train", "rl", "--config", str(recipe), "--tasks", str(offline / "empty.jsonl")]
    )
    assert bad.exit_code == 1 and "empty.jsonl" in bad.output and "Writing model" not in bad.output


def test_the_floor_is_every_flaw_present_and_nothing_satisfied() -> None:
    task = Task.model_validate(TASKS[0])
    assert floor_reward(task) == pytest.approx(-2 / 4)
    only_positive = Task(task_id="t", prompt="q", rubrics=[Rubric(criterion="c", weight=1)])
    assert floor_reward(only_positive) == 0.0


def test_a_recipe_with_an_unknown_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rl.toml"
    path.write_text(
        'model = "tiny"\ntasks = "t.jsonl"\noutput_dir = "o"\nlearning_rat = 1\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="learning_rat"):
        load_rl_recipe(path)
