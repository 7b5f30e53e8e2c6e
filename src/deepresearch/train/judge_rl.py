"""`train judge-rl`: RLVR for a distilled judge with TRL's GRPOTrainer and two verifiable rewards.

The data is what `train judge-data` writes (``train.jsonl``): the prompt is the sample's conversation
without the teacher's answer (exactly what the grader sends), the label its ``meta.verdict``. Each
completion is scored by plain reward functions, no rollout of our own:

- ``valid_verdict``: 1 when the grader's own parser (`judge.verdicts.parse_verdict`) reads a verdict
  in the reply, else 0. A reply the grader cannot read costs a retry or a failed rubric, so this is the
  reward for being usable at all.
- ``verdict_agreement``: 1 for the teacher's verdict, ``adjacent_credit`` (0.5 by default) for a
  neighbour on the ordinal scale satisfied > partially > not satisfied, 0 for the opposite verdict or an
  unreadable reply. The half credit is linear-weighted agreement, the same weighting as the linear
  kappa in `judge.agreement`: saying "partially" where the teacher said "satisfied" is half as wrong
  as "not satisfied", and "partially" is where judges disagree most (Step-DeepResearch). Set
  ``adjacent_credit = 0`` for exact-match only.

The recipe is a TOML file read by `train sft`'s ``read_recipe`` (``recipes/judge_rl.toml``): relative
paths from its folder, ``model = "tiny"`` for the built-in test model, unknown keys refused, the same
``[lora]`` table. Logs go to ``<output_dir>/metrics.jsonl``
(``step``, ``reward``, each reward's mean…) through `train sft`'s metrics callback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from deepresearch.errors import ConfigError
from deepresearch.judge.agreement import LABELS
from deepresearch.judge.records import Verdict
from deepresearch.judge.verdicts import InvalidJudgeOutput, parse_verdict
from deepresearch.train.format import load_tokenizer
from deepresearch.train.recipe import TrainRecipe, read_recipe
from deepresearch.train.tiny import resolve_model
from deepresearch.train.trainer import (
    load_model,
    lora_config,
    metrics_callback,
    read_metrics,
    trainer_arguments,
)

RewardFunction = Callable[..., list[float]]


class JudgeRlRecipe(TrainRecipe):
    """What `train judge-rl` trains, on what, and how; one TOML file, unknown keys refused."""

    data: Path
    learning_rate: float = Field(default=1e-6, gt=0.0)
    epochs: float = Field(default=1.0, gt=0.0)
    max_steps: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=8, ge=1)
    gradient_accumulation: int = Field(default=1, ge=1)
    num_generations: int = Field(default=8, ge=2)
    max_completion_length: int = Field(default=512, ge=1)
    temperature: float = Field(default=1.0, gt=0.0)
    beta: float = Field(default=0.0, ge=0.0)
    valid_weight: float = Field(default=1.0, ge=0.0)
    agreement_weight: float = Field(default=1.0, ge=0.0)
    adjacent_credit: float = Field(default=0.5, ge=0.0, le=1.0)


def load_recipe(path: Path, overrides: dict[str, Any] | None = None) -> JudgeRlRecipe:
    """The recipe in ``path`` with ``overrides`` (None values ignored) laid over it, under `train sft`'s
    rules: relative paths from the file's folder, ``model = "tiny"`` for the built-in test model."""
    return read_recipe(path, JudgeRlRecipe, overrides)


# --- rewards


def completion_text(completion: Any) -> str:
    """The reply in a TRL completion: a string, or (conversational) a list of messages."""
    if isinstance(completion, str):
        return completion
    return "".join(str(message.get("content") or "") for message in completion if isinstance(message, dict))


def read_verdict(text: str) -> Verdict | None:
    """The verdict the grader would read in ``text``, or None when it could not read one."""
    try:
        return parse_verdict(text).verdict
    except InvalidJudgeOutput:
        return None


def agreement_credit(reply: Verdict | None, teacher: Verdict, adjacent_credit: float = 0.5) -> float:
    """1 for the teacher's verdict, ``adjacent_credit`` for a neighbour on the ordinal scale, else 0."""
    if reply is None:
        return 0.0
    distance = abs(LABELS.index(reply) - LABELS.index(teacher))
    return 1.0 if distance == 0 else adjacent_credit if distance == 1 else 0.0


def reward_functions(adjacent_credit: float = 0.5) -> list[RewardFunction]:
    """``[valid_verdict, verdict_agreement]`` as TRL reward functions (their names label the metrics)."""

    def valid_verdict(completions: Sequence[Any], **_: Any) -> list[float]:
        return [0.0 if read_verdict(completion_text(c)) is None else 1.0 for c in completions]

    def verdict_agreement(completions: Sequence[Any], verdict: Sequence[Verdict], **_: Any) -> list[float]:
        return [
            agreement_credit(read_verdict(completion_text(c)), label, adjacent_credit)
            for c, label in zip(completions, verdict, strict=True)
        ]

    return [valid_verdict, verdict_agreement]


# --- data


def load_prompts(path: Path) -> list[dict[str, Any]]:
    """GRPO rows from a `train judge-data` file: ``prompt`` (the grader's messages, without the
    teacher's answer) and ``verdict`` (the teacher's label). Lines without both are refused."""
    from deepresearch.synth.engine import read_jsonl

    rows = []
    for number, sample in read_jsonl(Path(path)):
        try:
            if isinstance(sample, ValueError):
                raise sample
            messages, verdict = sample["messages"], sample["meta"]["verdict"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}:{number}: not a judge-data sample ({exc})") from exc
        if verdict not in LABELS or not messages or messages[-1].get("role") != "assistant":
            raise ConfigError(f"{path}:{number}: needs the teacher's answer last and a known verdict")
        rows.append({"prompt": messages[:-1], "verdict": verdict})
    if not rows:
        raise ConfigError(f"{path}: no sample to train on")
    return rows


# --- training


@dataclass(frozen=True, slots=True)
class JudgeRlResult:
    """What a run did and where it left it."""

    output_dir: Path
    metrics_path: Path
    steps: int
    prompts: int
    final_reward: float | None
    lora: bool

    def describe(self) -> str:
        reward = "n/a" if self.final_reward is None else f"{self.final_reward:.4f}"
        kind = "LoRA adapter" if self.lora else "model"
        return (
            f"{self.steps} steps on {self.prompts} prompts; final reward {reward}; {kind} in "
            f"{self.output_dir}; metrics in {self.metrics_path}"
        )


def run_judge_rl(recipe: JudgeRlRecipe, *, console: bool = True) -> JudgeRlResult:
    """Train ``recipe`` with TRL's GRPOTrainer on the verifiable rewards and save the model (or LoRA
    adapter) with its tokenizer to ``recipe.output_dir``; metrics go to ``metrics.jsonl`` there."""
    import datasets
    from transformers import PrinterCallback
    from trl.trainer.grpo_config import GRPOConfig
    from trl.trainer.grpo_trainer import GRPOTrainer

    recipe = recipe.model_copy(update={"model": resolve_model(recipe.model, recipe.output_dir)})
    rows = load_prompts(recipe.data)
    tokenizer = load_tokenizer(recipe.tokenizer_path)
    output_dir = Path(recipe.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = output_dir / "metrics.jsonl"
    metrics_path.write_text("", encoding="utf-8")

    model = load_model(recipe.model, dtype=recipe.dtype)
    rewards: list[Any] = reward_functions(recipe.adjacent_credit)  # TRL types them list[float | None]
    args = GRPOConfig(
        **trainer_arguments(recipe, output_dir),
        learning_rate=recipe.learning_rate,
        num_train_epochs=recipe.epochs,
        max_steps=recipe.max_steps or -1,
        per_device_train_batch_size=recipe.batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation,
        num_generations=recipe.num_generations,
        max_completion_length=recipe.max_completion_length,
        temperature=recipe.temperature,
        beta=recipe.beta,
        reward_weights=[recipe.valid_weight, recipe.agreement_weight],
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=rewards,
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora_config(recipe.lora),
        callbacks=[metrics_callback(metrics_path, console)],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    if recipe.save:
        trainer.save_model(str(output_dir))
        tokenizer.save_pretrained(str(output_dir))
    logged = [line["reward"] for line in read_metrics(metrics_path) if isinstance(line.get("reward"), float)]
    return JudgeRlResult(
        output_dir=output_dir,
        metrics_path=metrics_path,
        steps=int(trainer.state.global_step),
        prompts=len(rows),
        final_reward=logged[-1] if logged else None,
        lora=recipe.lora is not None,
    )
