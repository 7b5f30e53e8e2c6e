"""The verl PPO recipe: the dataset, the reward and the command, here; verl itself, in its own venv.

In this environment: ``prepare`` writes parquet rows that ``datasets`` (what verl reads them with)
loads back with our system prompt and the rubrics, and a ``launch.sh`` that holds no secret; the
reward function grades the rollout's final report through the scripted judge over a real socket, and
a judge that fails gives the worst-case reward. With ``.venv-verl`` (``.ci/verl-env``, or
``DEEPRESEARCH_VERL_PYTHON``) the rest runs in subprocesses there: the exact ``launch.sh`` command
composes with Hydra and passes ``validate_config`` (what ``main_ppo`` runs before starting workers),
verl's custom-reward loader loads our function and it reaches the judge, verl's tool loader builds our
tool, which searches a local index and returns exactly what our own tool returns, and verl's
``RLHFDataset`` reads the parquet with the tool schemas. ``DEEPRESEARCH_REQUIRE_VERL=1`` (CI) turns a
missing venv into a failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from deepresearch.agent import prompts
from deepresearch.cli.train_verl import train_verl
from deepresearch.config import load_settings
from deepresearch.errors import ConfigError
from deepresearch.judge import reward as reward_module
from deepresearch.judge.rubrics import Rubric
from deepresearch.train.verl import recipe_file
from deepresearch.train.verl import reward as verl_reward
from deepresearch.train.verl.prepare import prepare
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.judge.scripted_judge import ScriptedJudge
from tests.judge.test_reward import ANSWERS, RUBRICS

REPO = Path(__file__).resolve().parents[2]
# Read at import: the autouse fixture clears DEEPRESEARCH_* from each test's environment.
VERL_PYTHON = Path(os.environ.get("DEEPRESEARCH_VERL_PYTHON") or REPO / ".venv-verl" / "bin" / "python")
REQUIRE_VERL = os.environ.get("DEEPRESEARCH_REQUIRE_VERL") == "1"
TODAY = "2026-03-01"
SECRET = "sk-judge-secret-123"

GRADED = 1 / 8  # strict, for test_reward's rubrics and answers: (4 − 3) / (4 + 2 + 2)
WORST = (0 - 3 - 1) / 8  # nothing satisfied, every flaw present
QUESTION = "Why did EU solar makers struggle in 2024?"
REPORT = "European module makers lost ground in 2024 as prices halved [1]."
TOOL_PAGE = "Solar prices fell. <answer>a page that quotes an answer tag</answer> More text."
ROLLOUT = (
    '<think>plan</think>\n<tool_call>\n{"name": "batch_web_surfer", "arguments": {}}\n</tool_call>\n'
    f"user\n<tool_response>\n{TOOL_PAGE}\n</tool_response>\n"
    f"assistant\n<think>enough</think>\n<answer>\n{REPORT}\n</answer>"
)


def native_task(task_id: str, prompt: str, rubrics: list[Rubric]) -> str:
    return json.dumps({"task_id": task_id, "prompt": prompt, "rubrics": [r.model_dump() for r in rubrics]})


@pytest.fixture
def tasks_file(tmp_path: Path) -> Path:
    """Two usable tasks (one Chinese), one without a positive rubric, one malformed line."""
    path = tmp_path / "tasks.jsonl"
    lines = [
        native_task("solar", QUESTION, RUBRICS),
        native_task("zh-task", "为什么二零二四年欧洲太阳能制造商陷入困境？", RUBRICS[:2]),
        native_task("flaws-only", "A task with flaws only", RUBRICS[3:]),
        '{"task_id": "broken", "prompt": "no rubrics"}',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def judge_settings(base_url: str, **extra: Any) -> Any:
    return load_settings(
        {"judge_model": "fake-judge", "judge_base_url": base_url, "judge_api_key": SECRET, **extra}, env={}
    )


# --- prepare ------------------------------------------------------------------------------------------


def test_prepare_writes_rows_that_verl_reads_and_a_launch_script(tasks_file: Path, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "run"
    settings = judge_settings("http://127.0.0.1:9/v1", index=str(tmp_path / "index.sqlite"))
    prepared = prepare(tasks_file, out, settings, model="/models/policy", today=TODAY)

    assert prepared.rows == 2
    assert len(prepared.skipped) == 2
    assert any("flaws-only" in why and "positive weight" in why for why in prepared.skipped)
    assert any(":4:" in why for why in prepared.skipped)  # the malformed line, by line number
    rows = datasets.load_dataset("parquet", data_files=str(prepared.files["train"]))["train"]
    assert rows.column_names == [
        "data_source",
        "agent_name",
        "prompt",
        "ability",
        "reward_model",
        "extra_info",
    ]
    first, second = rows[0], rows[1]
    assert first["agent_name"] == "tool_agent"
    assert first["prompt"] == [
        {"role": "system", "content": prompts.system_prompt("en", TODAY)},
        {"role": "user", "content": QUESTION},
    ]
    assert second["prompt"][0]["content"] == prompts.system_prompt("zh", TODAY)
    assert [Rubric.model_validate(r) for r in json.loads(first["reward_model"]["ground_truth"])] == RUBRICS
    assert first["extra_info"] == {"index": 0, "task_id": "solar", "question": QUESTION}
    assert second["extra_info"]["index"] == 1
    val = datasets.load_dataset("parquet", data_files=str(prepared.files["val"]))["train"]
    assert val.num_rows == 2

    assert prepared.files["config"].read_text() == recipe_file("ppo.yaml").read_text()
    tools = prepared.files["tools"].read_text()
    assert "deepresearch.train.verl.tools.RegistryTool" in tools
    assert f"index: {tmp_path / 'index.sqlite'}" in tools
    launch = prepared.files["launch"].read_text()
    assert os.access(prepared.files["launch"], os.X_OK)
    assert '"$PYTHON" -m verl.trainer.main_ppo' in launch
    assert "MODEL=${MODEL:-/models/policy}" in launch
    assert "DEEPRESEARCH_JUDGE_MODEL=${DEEPRESEARCH_JUDGE_MODEL:-fake-judge}" in launch
    assert ': "${DEEPRESEARCH_JUDGE_API_KEY:?' in launch  # required at launch, never written
    for path in out.iterdir():
        assert SECRET.encode() not in path.read_bytes(), path
    assert subprocess.run(["bash", "-n", str(prepared.files["launch"])]).returncode == 0


def test_prepare_refuses_what_cannot_train(tasks_file: Path, tmp_path: Path) -> None:
    settings = judge_settings("http://127.0.0.1:9/v1")
    with pytest.raises(ConfigError, match=r"missing\.jsonl does not exist"):
        prepare(tmp_path / "missing.jsonl", tmp_path / "a", settings)
    with pytest.raises(ConfigError, match="no judge endpoint"):
        prepare(tasks_file, tmp_path / "b", load_settings({}, env={}))
    flaws = tmp_path / "flaws.jsonl"
    flaws.write_text(native_task("f", "q", RUBRICS[3:]) + "\n")
    with pytest.raises(ConfigError, match=r"no task to train on .*positive weight"):
        prepare(flaws, tmp_path / "c", settings)
    not_verl = tmp_path / "other.yaml"
    not_verl.write_text("defaults: [something_else]\n")
    with pytest.raises(ConfigError, match="must list ppo_trainer"):
        prepare(tasks_file, tmp_path / "d", settings, config=not_verl)
    assert not any((tmp_path / name).exists() for name in "abcd")  # refused before writing anything


def test_cli_prepares_and_exits_1_on_bad_input(tasks_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    app = typer.Typer()
    app.command("verl")(train_verl)
    app.command("other")(lambda: None)  # two commands: typer keeps `verl` as a sub-command
    runner = CliRunner()
    endpoint = ["--judge-model", "fake-judge", "--judge-base-url", "http://127.0.0.1:9/v1"]
    out = tmp_path / "run"
    done = runner.invoke(app, ["verl", "--tasks", str(tasks_file), "--out", str(out), *endpoint])
    assert done.exit_code == 0, done.output
    assert "2 task(s)" in done.output and (out / "launch.sh").is_file()
    missing = runner.invoke(
        app, ["verl", "--tasks", str(tmp_path / "nope.jsonl"), "--out", str(out), *endpoint]
    )
    assert missing.exit_code == 1
    assert "error:" in missing.output and "nope.jsonl" in missing.output


# --- the reward -----------------------------------------------------------------------------------------


def test_final_report_is_the_last_turns_answer() -> None:
    assert verl_reward.final_report(ROLLOUT) == REPORT  # not the tag quoted inside the tool result
    assert verl_reward.final_report(f"<think>x</think>\n<answer>{REPORT}") == REPORT  # unclosed tag
    plain = f"<tool_response>\nx\n</tool_response>\nassistant\n<think>done</think>\n{REPORT}"
    assert verl_reward.final_report(plain) == REPORT  # no tag: the last turn's text, as the agent takes it
    cut = "<tool_response>\nx\n</tool_response>\nassistant\n<tool_call>\n{}\n</tool_call>"
    assert verl_reward.final_report(cut) == ""  # ended on a tool call: no report
    assert verl_reward.final_report("<think>only thinking</think>") == ""


@pytest.fixture
def rollout_judge(fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """The reward's process-wide judge pointed at ``fake_llm`` through the environment, as on a worker."""
    monkeypatch.setenv("DEEPRESEARCH_JUDGE_MODEL", "fake-judge")
    monkeypatch.setenv("DEEPRESEARCH_JUDGE_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("DEEPRESEARCH_JUDGE_API_KEY", SECRET)
    monkeypatch.setenv("DEEPRESEARCH_MAX_RETRIES", "1")
    monkeypatch.setenv("DEEPRESEARCH_RETRY_BASE_DELAY", "0.001")
    monkeypatch.setenv("DEEPRESEARCH_RETRY_MAX_DELAY", "0.01")
    verl_reward.drop_rollout_judge()
    yield fake_llm
    judge = verl_reward.drop_rollout_judge()
    if judge is not None:
        reward_module._run_in_background(judge.client.aclose())


def score(solution: str) -> float:
    ground_truth = json.dumps([r.model_dump() for r in RUBRICS])
    extra = {"index": 0, "task_id": "solar", "question": QUESTION, "num_turns": 3}
    return verl_reward.compute_score("deepresearch", solution, ground_truth, extra)


def test_compute_score_grades_the_final_report(rollout_judge: FakeOpenAI) -> None:
    rollout_judge.script = ScriptedJudge(ANSWERS)
    assert score(ROLLOUT) == pytest.approx(GRADED)
    sent = [str(request["messages"]) for request in rollout_judge.requests]
    assert len(sent) == len(RUBRICS)
    assert all(REPORT in text and QUESTION in text for text in sent)
    assert not any("quotes an answer tag" in text for text in sent)  # the tool result is not graded
    assert rollout_judge.request_headers[0]["authorization"] == f"Bearer {SECRET}"


def test_a_failing_judge_or_a_missing_report_gives_the_worst_reward(rollout_judge: FakeOpenAI) -> None:
    rollout_judge.script = lambda request: Reply(status=500, body='{"error": {"message": "judge down"}}')
    assert score(ROLLOUT) == pytest.approx(WORST)
    assert rollout_judge.requests  # it did ask, and got nothing usable
    rollout_judge.reset()
    assert score(ROLLOUT.rsplit("assistant", 1)[0] + "assistant\n<tool_call>\n{}") == pytest.approx(WORST)
    assert rollout_judge.requests == []  # no report: nothing to grade
    with pytest.raises(ConfigError, match="positive weight"):
        verl_reward.compute_score("d", ROLLOUT, json.dumps([r.model_dump() for r in RUBRICS[3:]]), {})


# --- in verl's own environment ------------------------------------------------------------------------

needs_verl = pytest.mark.skipif(
    not REQUIRE_VERL and not VERL_PYTHON.exists(),
    reason=f"no verl venv at {VERL_PYTHON} (build it with .ci/verl-env)",
)


def run_in_verl(script: str, args: dict[str, Any], tmp_path: Path, **env: str) -> dict[str, Any]:
    """Run ``script`` with verl's Python (``ARGS`` holds ``args``); it prints one ``RESULT {json}`` line."""
    assert VERL_PYTHON.exists(), f"DEEPRESEARCH_REQUIRE_VERL=1 but there is no verl venv at {VERL_PYTHON}"
    variables = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "TOKENIZERS_PARALLELISM": "false",
        **env,
    }
    code = f"import json\nARGS = json.loads({json.dumps(json.dumps(args))})\n{script}"
    done = subprocess.run(
        [str(VERL_PYTHON), "-c", code],
        cwd=tmp_path,
        env=variables,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, (
        f"verl script failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    return result


TINY_MODEL = """
from tests.train.tiny import tiny_tokenizer
from transformers import Qwen2Config

def tiny_model(folder):
    tokenizer = tiny_tokenizer(["research report answer tool search"] * 4, vocab_size=300)
    tokenizer.save_pretrained(folder)
    Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32768,
        architectures=["Qwen2ForCausalLM"],
    ).save_pretrained(folder)
    return tokenizer
"""

VALIDATE = (
    TINY_MODEL
    + """
import copy
from omegaconf import OmegaConf
from verl.trainer.main_ppo import validate_config
from verl.trainer.ppo.reward import get_custom_reward_fn
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import omega_conf_to_dataclass
from verl.utils.device import auto_set_device

def validate(cfg):  # exactly what verl.trainer.main_ppo.main runs before it starts Ray
    auto_set_device(cfg)
    validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))

tiny_model(ARGS["model"])  # HFModelConfig reads the model's config and tokenizer
cfg = OmegaConf.load(ARGS["composed"])
validate(cfg)
algorithm = omega_conf_to_dataclass(cfg.algorithm)
rollout = omega_conf_to_dataclass(cfg.actor_rollout_ref.rollout)
broken = copy.deepcopy(cfg)
broken.actor_rollout_ref.actor.use_dynamic_bsz = False  # batches by samples: their sizes are checked
broken.data.train_batch_size = 4  # fewer tasks per step than GPUs and than the PPO mini-batch
try:
    validate(broken)
    refused = ""
except Exception as exc:
    refused = type(exc).__name__ + ": " + str(exc)
reward = get_custom_reward_fn(cfg)

# The advantage the recipe's settings give, by verl's own GAE, on one rollout: model, model, tool result,
# tool result, model, model, padding; the terminal reward sits on the last model token.
import torch
from verl.trainer.ppo.core_algos import get_adv_estimator_fn
mask = torch.tensor([[1, 1, 0, 0, 1, 1, 0]], dtype=torch.float32)
values = torch.tensor([[0.1, 0.4, 9.0, 9.0, 0.3, 0.2, 5.0]])
rewards = torch.zeros(1, 7)
rewards[0, 5] = 0.75
gae = get_adv_estimator_fn(algorithm.adv_estimator)
_, returns = gae(rewards, values, mask, gamma=algorithm.gamma, lam=algorithm.lam)
print("RESULT " + json.dumps({
    "returns": returns[0].tolist(), "values": values[0].tolist(), "mask": mask[0].tolist(),
    "adv_estimator": str(algorithm.adv_estimator), "gamma": algorithm.gamma, "lam": algorithm.lam,
    "critic": need_critic(cfg), "reference": need_reference_policy(cfg),
    "multi_turn": rollout.multi_turn.enable, "tool_config": rollout.multi_turn.tool_config_path,
    "model": cfg.actor_rollout_ref.model.path, "critic_model": OmegaConf.select(cfg, "critic.model.path"),
    "train_files": cfg.data.train_files, "nnodes": cfg.trainer.nnodes, "gpus": cfg.trainer.n_gpus_per_node,
    "agent_loop": rollout.agent.default_agent_loop, "refused": refused,
    "reward": reward(data_source="deepresearch", solution_str=ARGS["rollout"], ground_truth=ARGS["rubrics"],
                     extra_info={"task_id": "solar", "question": ARGS["question"]}),
}))
"""
)


@needs_verl
def test_the_launch_command_composes_and_passes_verls_validation(
    tasks_file: Path, tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    pytest.importorskip("pyarrow")
    fake_llm.script = ScriptedJudge(ANSWERS)
    prepared = prepare(tasks_file, tmp_path / "run", judge_settings(fake_llm.base_url), today=TODAY)
    model = tmp_path / "tiny-model"
    env = {
        "PYTHON": str(VERL_PYTHON),
        "MODEL": str(model),
        "NNODES": "2",
        "GPUS_PER_NODE": "4",
        "DEEPRESEARCH_JUDGE_API_KEY": SECRET,
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
    }
    composed = subprocess.run(  # the very command users run, told to print its config and stop
        ["bash", str(prepared.files["launch"]), "--cfg", "job"],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert composed.returncode == 0, composed.stderr[-5000:]
    (tmp_path / "composed.yaml").write_text(composed.stdout)
    args = {
        "composed": str(tmp_path / "composed.yaml"),
        "rollout": ROLLOUT,
        "rubrics": json.dumps([r.model_dump() for r in RUBRICS]),
        "question": QUESTION,
        "model": str(model),
    }
    judge = {
        "DEEPRESEARCH_JUDGE_MODEL": "fake-judge",
        "DEEPRESEARCH_JUDGE_BASE_URL": fake_llm.base_url,
        "DEEPRESEARCH_JUDGE_API_KEY": SECRET,
    }
    result = run_in_verl(VALIDATE, args, tmp_path, **judge)

    assert (result["adv_estimator"], result["gamma"], result["lam"]) == ("gae", 1.0, 1.0)
    assert result["critic"] is True and result["reference"] is False
    assert result["multi_turn"] is True and result["agent_loop"] == "tool_agent"
    assert result["tool_config"] == str(prepared.files["tools"])
    assert result["train_files"] == str(prepared.files["train"])
    assert result["model"] == result["critic_model"] == str(model)
    assert (result["nnodes"], result["gpus"]) == (2, 4)
    assert "train_batch_size" in result["refused"], result["refused"]  # verl's validation is live
    assert result["reward"] == pytest.approx(GRADED)  # verl's loader → our function → the judge
    # γ = λ = 1, terminal reward: the return at every model token is the reward, so its advantage (before
    # verl whitens the batch) is R − V(s_t); tool-result tokens are skipped
    model_tokens = [i for i, kept in enumerate(result["mask"]) if kept]
    assert [result["returns"][i] for i in model_tokens] == pytest.approx([0.75] * 4)
    assert len(fake_llm.requests) == len(RUBRICS)


TOOLS = (
    TINY_MODEL
    + """
import asyncio, os
from omegaconf import OmegaConf
from verl.tools.tool_registry import initialize_tools_from_config
from verl.utils.dataset.rl_dataset import RLHFDataset

[tool] = initialize_tools_from_config(ARGS["tools"])

async def calls():
    out = {}
    for name, parameters in (("search", ARGS["search"]), ("open", ARGS["open"]), ("bad", {"action": "fly"})):
        instance, _ = await tool.create()
        workspace = tool.contexts[instance].workspace
        response, step_reward, metrics = await tool.execute(instance, parameters)
        existed = workspace.is_dir()
        await tool.release(instance)
        out[name] = {"text": response.text, "reward": step_reward, "metrics": metrics,
                     "workspace_existed": existed, "workspace_left": workspace.exists()}
    await tool.aclose()
    return out

result = asyncio.run(calls())
tokenizer = tiny_model("tiny-model")
dataset = RLHFDataset(ARGS["train"], tokenizer, OmegaConf.create({
    "tool_config_path": ARGS["tools"], "max_prompt_length": 100000, "filter_overlong_prompts": True,
    "return_raw_chat": True, "cache_dir": os.path.abspath("verl-cache"), "filter_overlong_prompts_workers": 1,
}))
row = dataset[0]
result.update({
    "name": tool.name, "class": type(tool).__name__,
    "schema": tool.tool_schema.model_dump(exclude_unset=True, exclude_none=True),
    "rows": len(dataset), "raw_prompt": row["raw_prompt"], "dataset_tools": dataset.tool_schemas,
    "extra_info": row["extra_info"], "ground_truth": row["reward_model"]["ground_truth"],
})
print("RESULT " + json.dumps(result))
"""
)


async def our_tool_text(index: Path, arguments: dict[str, Any], workspace: Path) -> str:
    """What our own ``batch_web_surfer`` returns for ``arguments`` (as ``deepresearch research`` runs it)."""
    from deepresearch.llm.messages import ToolCall
    from deepresearch.search.backends import open_search
    from deepresearch.sources import SourceRegistry
    from deepresearch.tools.base import ToolContext
    from deepresearch.tools.execute import execute
    from deepresearch.tools.registry import builtin_tools

    search = open_search(load_settings({"index": str(index)}, env={}))
    workspace.mkdir()
    try:
        ctx = ToolContext(workspace=workspace, sources=SourceRegistry(), state={}, search=search)
        call = ToolCall(id="c", name="batch_web_surfer", arguments=json.dumps(arguments))
        return (await execute(call, builtin_tools(), ctx)).text
    finally:
        await search.aclose()


@needs_verl
def test_verl_loads_our_tools_and_dataset_and_the_tools_return_our_output(
    tasks_file: Path, tmp_path: Path, corpus_index: Path
) -> None:
    from deepresearch.tools.registry import builtin_tools

    pytest.importorskip("pyarrow")
    settings = judge_settings("http://127.0.0.1:9/v1", index=str(corpus_index))
    prepared = prepare(tasks_file, tmp_path / "run", settings, today=TODAY)
    search = {"action": "batch_search", "queries": ["reciprocal rank fusion"], "topk": 3}
    url = "https://notes.example.org/reciprocal-rank-fusion"
    opened = {"action": "batch_open", "urls": [url]}
    args = {
        "tools": str(prepared.files["tools"]),
        "train": str(prepared.files["train"]),
        "search": search,
        "open": opened,
    }
    result = run_in_verl(TOOLS, args, tmp_path)

    ours = builtin_tools()["batch_web_surfer"].schema()
    assert (result["class"], result["name"]) == ("RegistryTool", "batch_web_surfer")
    assert result["schema"] == ours  # our registry's schema, not a hand-written copy
    assert result["dataset_tools"] == [ours]  # verl's dataset sees the same schema
    assert result["search"]["text"] == asyncio.run(our_tool_text(corpus_index, search, tmp_path / "a"))
    assert url in result["search"]["text"] and "<batch_search_results>" in result["search"]["text"]
    assert result["open"]["text"] == asyncio.run(our_tool_text(corpus_index, opened, tmp_path / "b"))
    assert "Each document receives the sum of 1 / (k + rank)" in result["open"]["text"]
    assert result["open"]["metrics"] == {"is_error": False, "sources": 1}
    assert result["bad"]["text"].startswith("Error: invalid arguments for batch_web_surfer")
    assert result["bad"]["metrics"]["is_error"] is True
    for call in ("search", "open", "bad"):
        assert result[call]["workspace_existed"] and not result[call]["workspace_left"]
        assert result[call]["reward"] == 0.0

    assert result["rows"] == 2
    assert result["raw_prompt"] == [
        {"role": "system", "content": prompts.system_prompt("en", TODAY)},
        {"role": "user", "content": QUESTION},
    ]
    assert result["extra_info"]["task_id"] == "solar"
    assert [Rubric.model_validate(r) for r in json.loads(result["ground_truth"])] == RUBRICS


def test_the_verl_venv_is_there_when_ci_requires_it() -> None:
    """CI sets DEEPRESEARCH_REQUIRE_VERL=1 after .ci/verl-env: then a missing venv fails, not skips."""
    if not REQUIRE_VERL:
        pytest.skip("DEEPRESEARCH_REQUIRE_VERL is not set")
    assert VERL_PYTHON.exists(), f"no verl venv at {VERL_PYTHON}: run .ci/verl-env"
    version = subprocess.run(
        [str(VERL_PYTHON), "-c", "import importlib.metadata as m; print(m.version('verl'))"],
        capture_output=True,
        text=True,
    )
    assert version.stdout.strip() == "0.9.1", version.stderr
