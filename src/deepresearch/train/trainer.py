"""What every trainer here shares around TRL: loading a local model, LoRA settings, and a log callback
that writes ``metrics.jsonl`` and prints each line. torch, transformers and peft are imported inside
the functions, so the module imports on a core install."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deepresearch.errors import ConfigError
from deepresearch.train.recipe import LoraSettings, RopeScaling, TrainRecipe


def metrics_callback(path: Path, console: bool) -> Any:
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


def trainer_arguments(recipe: TrainRecipe, output_dir: Path) -> dict[str, Any]:
    """The TrainingArguments every trainer here shares, from the recipe's common fields."""
    import torch

    return {
        "output_dir": str(output_dir),
        "seed": recipe.seed,
        "logging_steps": recipe.logging_steps,
        "save_strategy": "no",  # one final save; intermediate checkpoints are the user's choice
        "report_to": "none",
        "bf16": recipe.bf16,
        "fp16": False,
        "activation_checkpointing": recipe.activation_checkpointing,
        "disable_tqdm": True,  # its bar reprints every log; the metrics callback prints one line instead
        "dataloader_pin_memory": torch.accelerator.is_available(),  # pinning without one only warns
    }


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


def lora_config(lora: LoraSettings | None) -> Any:
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
