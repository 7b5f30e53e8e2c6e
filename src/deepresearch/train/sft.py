"""`train sft`: supervised fine-tuning on curated trajectories with TRL's SFTTrainer, full or LoRA.

The loss masks are ours, not TRL's: every ``sft.jsonl`` line is rendered by `format.render_file`
(assistant tokens trained; system, user and tool results masked) and handed to the trainer as
``input_ids`` + ``labels``, which TRL uses as they are. That keeps the mask independent of whether a
model's template carries TRL's ``{% generation %}`` markers, and identical to what `train format` shows.

The recipe is a TOML file the user edits (see ``recipes/sft.toml``); relative paths in it are read
from the file's folder, so a recipe travels with its data. Every log line goes to
``<output_dir>/metrics.jsonl`` and the console. torch, transformers, trl and peft are imported inside
the functions, so the module imports on a core install.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from deepresearch.errors import ConfigError
from deepresearch.train.format import IGNORE, Rendered, Skipped, load_tokenizer, render_file
from deepresearch.train.recipe import RopeScaling, TrainRecipe, read_recipe, required_path, validate_recipe
from deepresearch.train.tiny import resolve_model
from deepresearch.train.trainer import (
    load_model,
    lora_config,
    metrics_callback,
    read_metrics,
    trainer_arguments,
)


class SftRecipe(TrainRecipe):
    """What `train sft` trains, on what, and how; one TOML file, unknown keys refused."""

    data: Path
    max_length: int = Field(default=4096, ge=16)
    learning_rate: float = Field(default=1e-5, gt=0.0)
    epochs: float = Field(default=1.0, gt=0.0)
    max_steps: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=1, ge=1)
    gradient_accumulation: int = Field(default=1, ge=1)
    rope_scaling: RopeScaling | None = None

    _data_given = field_validator("data")(required_path)


def load_recipe(path: Path, overrides: dict[str, Any] | None = None) -> SftRecipe:
    """The recipe in ``path`` with ``overrides`` (the CLI's flags; None values ignored) laid over it.

    Relative paths in the file are taken from the file's folder; paths given as overrides are taken
    as they are (from the working directory, where the user typed them). ``model = "tiny"`` is kept
    as it is: it names the built-in test model (``train.tiny``), not a folder."""
    return read_recipe(path, SftRecipe, overrides)


def recipe_from_dict(raw: dict[str, Any], *, source: str = "recipe") -> SftRecipe:
    """A validated SFT recipe, or `ConfigError` naming each bad field."""
    return validate_recipe(raw, SftRecipe, source=source)


@dataclass(slots=True)
class SftData:
    """The training samples and what was left out of them."""

    rows: list[dict[str, list[int]]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    truncated: int = 0
    emptied: int = 0
    """Samples whose trained tokens all lay past ``max_length``."""
    trained_tokens: int = 0


def build_rows(path: Path, tokenizer: Any, max_length: int) -> SftData:
    """``input_ids`` + ``labels`` per sample, cut to ``max_length``; a sample with no trained token
    (before or after the cut) is skipped and counted, since it would only add a zero loss."""
    data = SftData()
    for _, rendered in render_file(Path(path), tokenizer, data.skipped):
        row = _cut(rendered, max_length)
        if len(rendered.input_ids) > max_length:
            data.truncated += 1
        trained = sum(label != IGNORE for label in row["labels"])
        if not trained:
            data.emptied += 1
            continue
        data.trained_tokens += trained
        data.rows.append(row)
    return data


def _cut(rendered: Rendered, max_length: int) -> dict[str, list[int]]:
    return {"input_ids": rendered.input_ids[:max_length], "labels": rendered.labels[:max_length]}


@dataclass(frozen=True, slots=True)
class SftResult:
    """What a run did and where it left it."""

    output_dir: Path
    metrics_path: Path
    steps: int
    final_loss: float | None
    samples: int
    skipped: list[Skipped]
    emptied: int
    truncated: int
    lora: bool

    def describe(self) -> str:
        loss = "n/a" if self.final_loss is None else f"{self.final_loss:.4f}"
        kind = "LoRA adapter" if self.lora else "model"
        return (
            f"{self.steps} steps on {self.samples} samples ({len(self.skipped) + self.emptied} skipped, "
            f"{self.truncated} truncated); final loss {loss}; {kind} in {self.output_dir}; "
            f"metrics in {self.metrics_path}"
        )


def run_sft(recipe: SftRecipe, *, console: bool = True) -> SftResult:
    """Train ``recipe`` with TRL's SFTTrainer and save the model (or LoRA adapter) with its tokenizer
    to ``recipe.output_dir``; metrics go to ``metrics.jsonl`` there (started afresh each run)."""
    import datasets
    from transformers import PrinterCallback
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    recipe = recipe.model_copy(update={"model": resolve_model(recipe.model, recipe.output_dir)})
    tokenizer = load_tokenizer(recipe.tokenizer_path)
    data = build_rows(recipe.data, tokenizer, recipe.max_length)
    if not data.rows:
        reasons = "; ".join(str(item) for item in data.skipped[:3])
        raise ConfigError(f"{recipe.data}: no sample to train on" + (f" ({reasons})" if reasons else ""))
    output_dir = Path(recipe.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = output_dir / "metrics.jsonl"
    metrics_path.write_text("", encoding="utf-8")

    model = load_model(
        recipe.model, dtype=recipe.dtype, rope_scaling=recipe.rope_scaling, max_length=recipe.max_length
    )
    args = SFTConfig(
        **trainer_arguments(recipe, output_dir),
        max_length=recipe.max_length,
        learning_rate=recipe.learning_rate,
        num_train_epochs=recipe.epochs,
        max_steps=recipe.max_steps or -1,
        per_device_train_batch_size=recipe.batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list(data.rows),
        processing_class=tokenizer,
        peft_config=lora_config(recipe.lora),
        callbacks=[metrics_callback(metrics_path, console)],
    )
    trainer.remove_callback(PrinterCallback)  # its dicts would repeat the callback's lines
    trainer.train()
    if recipe.save:
        trainer.save_model(str(output_dir))
        tokenizer.save_pretrained(str(output_dir))
    return SftResult(
        output_dir=output_dir,
        metrics_path=metrics_path,
        steps=int(trainer.state.global_step),
        final_loss=_last_loss(metrics_path),
        samples=len(data.rows),
        skipped=data.skipped,
        emptied=data.emptied,
        truncated=data.truncated,
        lora=recipe.lora is not None,
    )


def _last_loss(path: Path) -> float | None:
    losses = [line["loss"] for line in read_metrics(path) if isinstance(line.get("loss"), int | float)]
    return float(losses[-1]) if losses else None
