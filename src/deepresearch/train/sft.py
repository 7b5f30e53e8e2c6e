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

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from deepresearch.errors import ConfigError
from deepresearch.train.format import IGNORE, Rendered, Skipped, load_tokenizer, render_file
from deepresearch.train.tiny import TINY, resolve_model


class LoraSettings(BaseModel):
    """A ``[lora]`` table: train low-rank adapters instead of every weight."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(default=16, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | str = "all-linear"


class RopeScaling(BaseModel):
    """A ``[rope_scaling]`` table: stretch the model's positions past the length it was trained at
    (stage II of mid-training goes from 32K to 128K with YaRN). Merged into the model's own RoPE
    parameters (its ``rope_theta`` is kept) and saved with the checkpoint, so it loads extended."""

    model_config = ConfigDict(extra="forbid")

    rope_type: Literal["yarn", "linear", "dynamic", "longrope", "llama3"] = "yarn"
    factor: float = Field(gt=1.0)
    original_max_position_embeddings: int = Field(ge=16)
    """The length the model was trained at; positions beyond ``factor`` × this are not covered."""


class SftRecipe(BaseModel):
    """What `train sft` trains, on what, and how; one TOML file, unknown keys refused."""

    model_config = ConfigDict(extra="forbid")

    model: Path
    tokenizer: Path | None = None
    data: Path
    output_dir: Path
    max_length: int = Field(default=4096, ge=16)
    learning_rate: float = Field(default=1e-5, gt=0.0)
    epochs: float = Field(default=1.0, gt=0.0)
    max_steps: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=1, ge=1)
    gradient_accumulation: int = Field(default=1, ge=1)
    lora: LoraSettings | None = None
    seed: int = 0
    logging_steps: int = Field(default=1, ge=1)
    save: bool = True
    bf16: bool = False
    activation_checkpointing: bool = False
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """The dtype the weights are loaded in (``auto``: as saved)."""
    rope_scaling: RopeScaling | None = None

    @field_validator("model", "data")
    @classmethod
    def _not_empty(cls, value: Path) -> Path:
        if not str(value).strip() or str(value) == ".":
            raise ValueError("a path is required")
        return value

    @property
    def tokenizer_path(self) -> Path:
        return self.tokenizer or self.model


PATH_KEYS = ("model", "tokenizer", "data", "tasks", "index", "output_dir")
"""Recipe keys holding paths: relative ones are read from the recipe file's folder."""

R = TypeVar("R", bound=BaseModel)


def load_recipe(path: Path, overrides: dict[str, Any] | None = None) -> SftRecipe:
    """The recipe in ``path`` with ``overrides`` (the CLI's flags; None values ignored) laid over it.

    Relative paths in the file are taken from the file's folder; paths given as overrides are taken
    as they are (from the working directory, where the user typed them). ``model = "tiny"`` is kept
    as it is: it names the built-in test model (``train.tiny``), not a folder."""
    return read_recipe(path, SftRecipe, overrides)


def read_recipe(path: Path, kind: type[R], overrides: dict[str, Any] | None = None) -> R:
    """A recipe of ``kind`` from the TOML file ``path`` (``load_recipe``'s rules, for any recipe)."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the recipe ({exc.strerror or exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    base = Path(path).resolve().parent
    for key in PATH_KEYS:
        value = raw.get(key)
        if isinstance(value, str) and value and value != TINY and not Path(value).is_absolute():
            raw[key] = str(base / value)
    raw.update({key: value for key, value in (overrides or {}).items() if value is not None})
    return recipe_from_dict(raw, source=str(path), kind=kind)


def recipe_from_dict(raw: dict[str, Any], *, source: str = "recipe", kind: type[R] = SftRecipe) -> R:  # type: ignore[assignment]
    """A validated recipe, or `ConfigError` naming each bad field."""
    try:
        return kind.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or '?'}: {error['msg']}" for error in exc.errors()
        ]
        raise ConfigError(f"{source}: " + "; ".join(problems)) from exc


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


def _metrics_callback(path: Path, console: bool) -> Any:
    """A TrainerCallback that appends each log to ``path`` as one JSON line (with the step) and prints it."""
    from transformers import TrainerCallback

    class MetricsCallback(TrainerCallback):
        def on_log(
            self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **_: Any
        ) -> None:
            if not logs or not state.is_world_process_zero:
                return
            line = {"step": state.global_step, **{key: _plain(value) for key, value in logs.items()}}
            with path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(line) + "\n")
            if console:
                print(" ".join(f"{key}={_short(value)}" for key, value in line.items()), flush=True)

    return MetricsCallback()


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def run_sft(recipe: SftRecipe, *, console: bool = True) -> SftResult:
    """Train ``recipe`` with TRL's SFTTrainer and save the model (or LoRA adapter) with its tokenizer
    to ``recipe.output_dir``; metrics go to ``metrics.jsonl`` there (started afresh each run)."""
    import datasets
    import torch
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
        output_dir=str(output_dir),
        max_length=recipe.max_length,
        learning_rate=recipe.learning_rate,
        num_train_epochs=recipe.epochs,
        max_steps=recipe.max_steps or -1,
        per_device_train_batch_size=recipe.batch_size,
        gradient_accumulation_steps=recipe.gradient_accumulation,
        seed=recipe.seed,
        logging_steps=recipe.logging_steps,
        save_strategy="no",  # one final save below; intermediate checkpoints are the user's choice
        report_to="none",
        bf16=recipe.bf16,
        fp16=False,
        activation_checkpointing=recipe.activation_checkpointing,
        disable_tqdm=True,  # its bar reprints every log; the metrics callback prints one line instead
        dataloader_pin_memory=torch.accelerator.is_available(),  # pinning without one only warns
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list(data.rows),
        processing_class=tokenizer,
        peft_config=_lora_config(recipe.lora),
        callbacks=[_metrics_callback(metrics_path, console)],
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


def load_model(
    path: Path, *, dtype: str = "auto", rope_scaling: RopeScaling | None = None, max_length: int = 0
) -> Any:
    """The causal LM saved at ``path`` (local files only), in ``dtype``, with ``rope_scaling`` merged
    into its RoPE parameters and its position limit raised to ``max_length`` when that is longer."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    except OSError as exc:
        raise ConfigError(f"{path}: not a model folder ({exc})") from exc
    if rope_scaling is not None:
        parameters = dict(getattr(config, "rope_parameters", None) or {})
        parameters.update(rope_scaling.model_dump())
        config.rope_parameters = parameters
    if max_length > int(getattr(config, "max_position_embeddings", 0) or 0):
        config.max_position_embeddings = max_length
    return AutoModelForCausalLM.from_pretrained(str(path), config=config, dtype=dtype, local_files_only=True)


def _lora_config(lora: LoraSettings | None) -> Any:
    if lora is None:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The lines of a ``metrics.jsonl``."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def _last_loss(path: Path) -> float | None:
    losses = [line["loss"] for line in read_metrics(path) if isinstance(line.get("loss"), int | float)]
    return float(losses[-1]) if losses else None
