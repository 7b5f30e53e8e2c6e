"""`train judge-rl`: the verifiable rewards read replies with the grader's own parser, and GRPO on a tiny
judge (first taught the answer format by `train sft` on judge data) logs a reward per step and changes
its weights; recipes are validated like `train sft`'s.

The teacher's records are written here as data (no server needed): `build_judge_data` renders the
prompts through the real grader in-process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl")

from deepresearch.errors import ConfigError
from deepresearch.judge.loaders import load_tasks, sample_tasks_path
from deepresearch.judge.records import TERNARY_SCORE, JudgeRecord, Trial
from deepresearch.train.judge_data import build_judge_data
from deepresearch.train.judge_rl import (
    agreement_credit,
    load_prompts,
    load_recipe,
    read_verdict,
    reward_functions,
    run_judge_rl,
)
from deepresearch.train.sft import read_metrics
from tests.train.tiny import tiny_model, tiny_tokenizer

LABELS = ("satisfied", "partially", "not_satisfied")
# TRL 1.16's generation unwrapping still reads the attribute transformers 5 renamed; theirs, not ours
TRL_DEPRECATION = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")


def tiny_judge_model(data: Path, folder: Path) -> None:
    """A random 2-layer Qwen2 with a tokenizer trained on ``data``'s samples, saved to ``folder``."""
    lines = data.read_text(encoding="utf-8").splitlines()
    corpus = [m["content"] for line in lines for m in json.loads(line)["messages"]]
    tokenizer = tiny_tokenizer(corpus, vocab_size=800)
    tiny_model(tokenizer, max_positions=4096).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("WANDB_DISABLED", "true")
    import torch

    torch.set_num_threads(1)
    return tmp_path


def teacher_records(folder: Path, tasks: int = 3) -> tuple[Path, Path]:
    """Records a teacher could have written for the first sample tasks (short reports), and the reports."""
    reports = folder / "reports"
    reports.mkdir()
    records = []
    for task in load_tasks(sample_tasks_path()).tasks[:tasks]:
        (reports / f"{task.task_id}.md").write_text(f"A report on {task.task_id}.")
        for index, rubric in enumerate(task.rubrics):
            verdict = LABELS[index % 3]
            trial = Trial(verdict=verdict, score=TERNARY_SCORE[verdict], reasoning="Brief.", evidence=[])
            records.append(
                JudgeRecord(
                    task_id=task.task_id,
                    criterion=rubric.criterion,
                    weight=rubric.weight,
                    verdict=verdict,
                    score=trial.score,
                    trials=[trial],
                    reasoning="Brief.",
                    judge_model="teacher-x",
                )
            )
    path = folder / "teacher.jsonl"
    path.write_text("".join(r.model_dump_json() + "\n" for r in records))
    return path, reports


def test_rewards_use_the_graders_parser_and_credit_neighbours_half() -> None:
    valid, agree = reward_functions()
    assert (valid.__name__, agree.__name__) == ("valid_verdict", "verdict_agreement")
    completions = [
        [{"role": "assistant", "content": '{"verdict": "satisfied", "score": 1, "reasoning": "ok"}'}],
        [{"role": "assistant", "content": '```json\n{"verdict": "partially", "score": 0.5'}],  # cut: repaired
        [{"role": "assistant", "content": "I cannot evaluate this."}],
        [{"role": "assistant", "content": '{"verdict": "not_satisfied"}'}],
    ]
    assert valid(completions=completions) == [1.0, 1.0, 0.0, 1.0]
    teacher = ["satisfied"] * 4
    assert agree(completions=completions, verdict=teacher) == [1.0, 0.5, 0.0, 0.0]
    assert reward_functions(adjacent_credit=0.0)[1](completions=completions, verdict=teacher)[1] == 0.0
    assert read_verdict("Verdict: Partially Satisfied") == "partially"  # what the grader accepts
    assert agreement_credit("partially", "not_satisfied") == 0.5
    assert agreement_credit(None, "partially") == 0.0


@TRL_DEPRECATION
def test_grpo_on_a_tiny_judge_logs_rewards_and_changes_the_weights(offline: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from deepresearch.train.sft import load_recipe as load_sft_recipe
    from deepresearch.train.sft import run_sft

    records, reports = teacher_records(offline)
    data = offline / "data"
    build_judge_data(
        tasks_path=sample_tasks_path(), reports=reports, records_path=records, out=data, eval_fraction=0.0
    )
    tiny_judge_model(data / "train.jsonl", offline / "base")
    sft = offline / "sft.toml"  # first teach the answer format, so rollouts differ in their rewards
    sft.write_text(
        'model = "base"\ndata = "data/train.jsonl"\noutput_dir = "sft"\nmax_length = 2048\n'
        "learning_rate = 1e-2\nmax_steps = 50\nbatch_size = 2\n"
    )
    run_sft(load_sft_recipe(sft), console=False)
    recipe_path = offline / "judge_rl.toml"
    recipe_path.write_text(
        'model = "sft"\ndata = "data/train.jsonl"\noutput_dir = "rl"\nlearning_rate = 1e-3\n'
        "batch_size = 8\nnum_generations = 8\nmax_completion_length = 24\nmax_steps = 4\nbf16 = false\n"
    )
    recipe = load_recipe(recipe_path)
    assert recipe.model == offline / "sft" and recipe.adjacent_credit == 0.5

    result = run_judge_rl(recipe, console=False)

    assert result.steps == 4 and result.prompts == 39
    metrics = [line for line in read_metrics(result.metrics_path) if "reward" in line]
    assert [line["step"] for line in metrics] == [1, 2, 3, 4]
    assert all(0.0 <= line["reward"] <= 2.0 for line in metrics)
    assert all(
        "rewards/valid_verdict/mean" in line and "rewards/verdict_agreement/mean" in line for line in metrics
    )
    assert result.final_reward == metrics[-1]["reward"]
    # some rollouts were readable verdicts and some not: a group with a spread, so a gradient
    assert any(line["rewards/valid_verdict/mean"] > 0 for line in metrics)
    assert any(line["reward_std"] > 0 for line in metrics)
    before = AutoModelForCausalLM.from_pretrained(str(offline / "sft"), local_files_only=True).state_dict()
    after = AutoModelForCausalLM.from_pretrained(str(offline / "rl"), local_files_only=True).state_dict()
    assert any(not torch.equal(before[name], after[name]) for name in before)


def test_prompts_drop_the_teacher_answer_and_bad_data_is_refused(tmp_path: Path) -> None:
    records, reports = teacher_records(tmp_path, tasks=1)
    build_judge_data(
        tasks_path=sample_tasks_path(),
        reports=reports,
        records_path=records,
        out=tmp_path / "d",
        eval_fraction=0,
    )
    rows = load_prompts(tmp_path / "d" / "train.jsonl")
    assert len(rows) == 13
    assert all(row["prompt"][-1]["role"] == "user" for row in rows)
    assert [row["verdict"] for row in rows[:3]] == list(LABELS)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"messages": [{"role": "user", "content": "x"}], "meta": {"verdict": "yes"}}) + "\n"
    )
    with pytest.raises(ConfigError, match=r"bad\.jsonl:1"):
        load_prompts(bad)


def write(folder: Path, body: str) -> Path:
    path = folder / "rl.toml"
    path.write_text('model = "m"\ndata = "d.jsonl"\noutput_dir = "o"\n' + body)
    return path


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("reward = 1\n", "reward"),
        ("num_generations = 1\n", "num_generations"),
        ("adjacent_credit = 2\n", "adjacent_credit"),
        ("[lora]\nrank = 4\n", "lora.rank"),
    ],
)
def test_a_bad_recipe_is_refused_naming_the_field(tmp_path: Path, body: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_recipe(write(tmp_path, body))


def test_the_example_recipe_is_valid_and_overrides_win(tmp_path: Path) -> None:
    import deepresearch.train

    path = Path(deepresearch.train.__file__).parent / "recipes" / "judge_rl.toml"
    recipe = load_recipe(path, {"max_steps": 7, "output_dir": Path("elsewhere"), "data": None})
    assert recipe.max_steps == 7 and recipe.output_dir == Path("elsewhere")
    assert recipe.data == path.parent / "data" / "judge" / "train.jsonl"
    assert recipe.lora is not None and recipe.batch_size % recipe.num_generations == 0
    with pytest.raises(ConfigError, match="not valid TOML"):
        (tmp_path / "x.toml").write_text("model = \n")
        load_recipe(tmp_path / "x.toml")


@TRL_DEPRECATION
def test_the_cli_trains_with_overrides(offline: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from deepresearch.cli.train_judge import train_judge_rl

    records, reports = teacher_records(offline, tasks=1)
    build_judge_data(
        tasks_path=sample_tasks_path(),
        reports=reports,
        records_path=records,
        out=offline / "d",
        eval_fraction=0,
    )
    recipe = write(
        offline, "batch_size = 2\nnum_generations = 2\nmax_completion_length = 8\nmax_steps = 50\n"
    )
    local: Any = typer.Typer()
    local.command("judge-rl")(train_judge_rl)
    local.command("unused")(lambda: None)  # two commands, so the name is required as in `deepresearch train`
    data = str(offline / "d" / "train.jsonl")
    out = offline / "cli-out"
    result = CliRunner().invoke(
        local,
        [
            "judge-rl",
            "--config",
            str(recipe),
            "--data",
            data,
            "--out",
            str(out),
            "--steps",
            "2",
            "--model",
            "tiny",  # the built-in random test model, built in the output folder
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / "tiny-model" / "config.json").is_file()
    assert "2 steps on 13 prompts" in result.stdout
    assert [line["step"] for line in read_metrics(out / "metrics.jsonl") if "reward" in line] == [1, 2]
    bad = CliRunner().invoke(local, ["judge-rl", "--config", str(write(offline, "optimiser = 1\n"))])
    assert bad.exit_code == 1 and "optimiser" in bad.output
