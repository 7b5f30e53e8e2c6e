"""`train sft`: a tiny random model trained with TRL on our masks lowers its loss, logs every step to
``metrics.jsonl``, and its checkpoint (full or LoRA) loads back and generates; bad recipes are refused.

Everything is built here, offline: a byte-level BPE tokenizer trained on the samples, a Qwen-style chat
template of our own, and a 2-layer Qwen2 with random weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")

from deepresearch.errors import ConfigError
from deepresearch.train.format import IGNORE
from deepresearch.train.sft import build_rows, load_recipe, read_metrics, run_sft
from tests.train.tiny import TOOLS, tiny_tokenizer

TOPICS = [("tidal lagoons", "320 MW"), ("offshore wind", "1.2 GW"), ("rooftop solar", "5 kW")]


def conversation(topic: str, answer: str) -> list[dict[str, Any]]:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "search", "arguments": json.dumps({"query": topic})},
    }
    return [
        {"role": "system", "content": "You are a careful researcher."},
        {"role": "user", "content": f"How much power do {topic} make?"},
        {"role": "assistant", "content": "Let me look that up.", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": f"{topic}: {answer} capacity."},
        {"role": "assistant", "content": f"About {answer} for {topic} [1]."},
    ]


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("WANDB_DISABLED", "true")
    import torch

    torch.set_num_threads(1)
    return tmp_path


@pytest.fixture
def workspace(offline: Path) -> Path:
    """A folder with ``model/`` (tokenizer included) and ``sft.jsonl``, as a user would have them."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    records = [
        {"messages": conversation(topic, answer), "tools": TOOLS, "meta": {"id": f"s{index}"}}
        for index, (topic, answer) in enumerate(TOPICS)
    ]
    # a system and user turn only: nothing to train, so it is skipped and counted
    records.append({"messages": conversation(*TOPICS[0])[:2], "tools": TOOLS, "meta": {"id": "empty"}})
    data = offline / "sft.jsonl"
    data.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")

    tokenizer = tiny_tokenizer((json.dumps(record) for record in records), vocab_size=600)
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    Qwen2ForCausalLM(config).save_pretrained(offline / "model")
    tokenizer.save_pretrained(offline / "model")
    return offline


def write_recipe(folder: Path, body: str) -> Path:
    path = folder / "sft.toml"
    path.write_text(
        'model = "model"\ndata = "sft.jsonl"\noutput_dir = "out"\nmax_length = 512\nseed = 0\n' + body,
        encoding="utf-8",
    )
    return path


def generate(folder: Path, *, adapter: bool) -> str:
    """A few greedy tokens from the saved checkpoint, loaded the way a user would load it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer: Any = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if adapter:
        from peft import AutoPeftModelForCausalLM

        model: Any = AutoPeftModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
    prompt = tokenizer.apply_chat_template(
        conversation(*TOPICS[1])[:2],
        tools=TOOLS,
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        out = model.generate(**prompt, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    new = out[0, prompt["input_ids"].shape[1] :]
    assert len(new) >= 1
    return str(tokenizer.decode(new, skip_special_tokens=False))


def test_full_fine_tuning_lowers_the_loss_and_saves_a_model_that_generates(workspace: Path) -> None:
    recipe = load_recipe(write_recipe(workspace, "learning_rate = 3e-3\nmax_steps = 20\nlogging_steps = 1\n"))
    assert recipe.model == workspace / "model"  # relative to the recipe's folder
    assert recipe.lora is None

    result = run_sft(recipe, console=False)

    assert result.steps == 20
    assert result.samples == 3
    assert [item.line for item in result.skipped] == [4]
    metrics = read_metrics(result.metrics_path)
    losses = [line["loss"] for line in metrics if "loss" in line]
    assert len(losses) == 20
    assert [line["step"] for line in metrics if "loss" in line] == list(range(1, 21))
    assert all("learning_rate" in line and "epoch" in line for line in metrics if "loss" in line)
    assert losses[-1] < losses[0] * 0.7
    assert result.final_loss == losses[-1]
    assert (workspace / "out" / "config.json").exists()
    assert (workspace / "out" / "tokenizer.json").exists()
    assert generate(workspace / "out", adapter=False)


def test_the_trainer_sees_our_masks(workspace: Path) -> None:
    from deepresearch.train.format import load_tokenizer

    tokenizer = load_tokenizer(workspace / "model")
    data = build_rows(workspace / "sft.jsonl", tokenizer, max_length=512)
    trained = [
        tokenizer.decode(
            [t for t, label in zip(row["input_ids"], row["labels"], strict=True) if label != IGNORE]
        )
        for row in data.rows
    ]
    assert "Let me look that up." in trained[0]
    assert "How much power" not in trained[0]
    assert "capacity." not in trained[0]  # the tool result stays masked

    # cut before the first assistant turn, a sample has nothing left to train and is dropped
    short = build_rows(workspace / "sft.jsonl", tokenizer, max_length=20)
    assert short.rows == []
    assert short.emptied == 3
    assert short.truncated == 3
    with pytest.raises(ConfigError, match="no sample to train on"):
        run_sft(load_recipe(write_recipe(workspace, ""), {"max_length": 20}), console=False)


# peft 0.21 still reads the attribute transformers 5 renamed; the warning is theirs, not ours
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_lora_trains_and_saves_an_adapter(workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = load_recipe(
        write_recipe(
            workspace,
            "learning_rate = 1e-2\nmax_steps = 4\n"
            '[lora]\nr = 4\nalpha = 8\ntarget_modules = ["q_proj", "v_proj"]\n',
        )
    )
    result = run_sft(recipe)

    assert result.lora
    printed = capsys.readouterr().out
    assert "step=1 loss=" in printed and "step=4 loss=" in printed
    assert "{'loss'" not in printed  # the trainer's own log printer is replaced by ours
    assert result.steps == 4
    out = workspace / "out"
    assert (out / "adapter_config.json").exists()
    assert (out / "adapter_model.safetensors").exists()
    assert not (out / "model.safetensors").exists()
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4
    assert len([line for line in read_metrics(result.metrics_path) if "loss" in line]) == 4
    assert generate(out, adapter=True)


def test_the_example_recipe_is_valid() -> None:
    import deepresearch.train

    path = Path(deepresearch.train.__file__).parent / "recipes" / "sft.toml"
    recipe = load_recipe(path)
    assert recipe.lora is not None and recipe.lora.target_modules == "all-linear"
    assert recipe.data == path.parent / "data" / "sft.jsonl"


def test_command_line_overrides_win_over_the_file(offline: Path) -> None:
    path = write_recipe(offline, "max_steps = 20\n")
    recipe = load_recipe(path, {"max_steps": 3, "output_dir": Path("elsewhere"), "data": None})
    assert recipe.max_steps == 3
    assert recipe.output_dir == Path("elsewhere")
    assert recipe.data == offline / "sft.jsonl"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("optimiser = 'adam'\n", "optimiser"),
        ("learning_rate = -1.0\n", "learning_rate"),
        ("[lora]\nrank = 8\n", "lora.rank"),
        ("batch_size = 'two'\n", "batch_size"),
    ],
)
def test_a_bad_recipe_is_refused_naming_the_field(offline: Path, body: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_recipe(write_recipe(offline, body))


def test_a_recipe_that_is_not_toml_is_refused(offline: Path) -> None:
    path = offline / "broken.toml"
    path.write_text("model = \n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_recipe(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_recipe(offline / "missing.toml")


def test_the_cli_trains_with_overrides_and_refuses_a_bad_recipe(workspace: Path) -> None:
    from typer.testing import CliRunner

    from deepresearch.cli import app

    recipe = write_recipe(workspace, "learning_rate = 3e-3\nlogging_steps = 1\n")
    out = workspace / "cli-out"
    args = ["train", "sft", "--config", str(recipe), "--out", str(out), "--steps", "3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len((out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()) >= 3
    bad = CliRunner().invoke(
        app, ["train", "sft", "--config", str(write_recipe(workspace, "optimiser = 1\n"))]
    )
    assert bad.exit_code == 1 and "optimiser" in bad.output


def test_the_stage_two_recipe_trains_with_yarn_and_saves_the_extended_positions(workspace: Path) -> None:
    import tomllib

    from deepresearch.train.sft import recipe_from_dict

    shipped = Path(__file__).parents[2] / "src/deepresearch/train/recipes/midtrain_stage2.toml"
    raw = tomllib.loads(shipped.read_text(encoding="utf-8"))
    yarn = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    assert raw["rope_scaling"] == yarn
    raw.update(  # the shipped recipe, on this machine: no GPU (fp32) and a tiny model
        model=str(workspace / "model"),
        data=str(workspace / "sft.jsonl"),
        output_dir=str(workspace / "stage2"),
        bf16=False,
        dtype="float32",
        activation_checkpointing=False,
        max_steps=2,
        gradient_accumulation=1,
    )
    recipe = recipe_from_dict(raw)
    result = run_sft(recipe, console=False)

    assert result.steps == 2
    saved = json.loads((workspace / "stage2" / "config.json").read_text())
    rope = saved.get("rope_parameters") or saved.get("rope_scaling")
    assert rope["rope_type"] == "yarn" and rope["factor"] == 4.0
    assert rope["original_max_position_embeddings"] == 32768 and "rope_theta" in rope  # merged, theta kept
    assert saved["max_position_embeddings"] == 131072
    assert generate(workspace / "stage2", adapter=False)


def test_the_tiny_model_is_built_once_in_the_output_folder(offline: Path) -> None:
    (offline / "sft.jsonl").write_text(
        json.dumps({"messages": conversation(*TOPICS[0]), "tools": TOOLS}) + "\n", encoding="utf-8"
    )
    recipe = load_recipe(write_recipe(offline, "max_steps = 2\n"), {"model": Path("tiny")})
    assert str(recipe.model) == "tiny"  # a name, not a folder next to the recipe
    result = run_sft(recipe, console=False)
    assert result.steps == 2 and (offline / "out" / "tiny-model" / "config.json").is_file()
    assert generate(offline / "out", adapter=False)


@pytest.mark.parametrize("name", ["rl", "midtrain_stage2", "judge_rl"])
def test_every_shipped_recipe_loads(name: str) -> None:
    from deepresearch.train.judge_rl import load_recipe as load_judge_recipe
    from deepresearch.train.rl import load_rl_recipe

    loader = {"rl": load_rl_recipe, "judge_rl": load_judge_recipe}.get(name, load_recipe)
    path = Path(__file__).parents[2] / f"src/deepresearch/train/recipes/{name}.toml"
    recipe = loader(path)
    assert recipe.output_dir.is_absolute()  # relative paths are read from the recipe's folder
