"""Training recipes: the TOML files users edit, validated by pydantic models that refuse unknown keys.

Every trainer's recipe (`train sft`, `train rl`, `train judge-rl`) is a ``TrainRecipe``: the model (a
local folder, or ``tiny`` for the built-in test model), its tokenizer, the output folder, LoRA, the
precision and the logging. ``read_recipe`` reads one the same way for all of them: relative paths are
taken from the recipe's folder (a recipe travels with its data) and the CLI's flags laid over it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from deepresearch.errors import ConfigError
from deepresearch.train.tiny import TINY


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


def required_path(value: Path) -> Path:
    """A path field that must name something (not empty, not ``.``)."""
    if not str(value).strip() or str(value) == ".":
        raise ValueError("a path is required")
    return value


class TrainRecipe(BaseModel):
    """What every trainer's recipe has: the model, where the result goes, LoRA, precision, logging."""

    model_config = ConfigDict(extra="forbid")

    model: Path
    """A local model folder, or ``tiny`` (the built-in random test model, built in ``output_dir``)."""
    tokenizer: Path | None = None
    output_dir: Path
    lora: LoraSettings | None = None
    seed: int = 0
    logging_steps: int = Field(default=1, ge=1)
    save: bool = True
    bf16: bool = False
    activation_checkpointing: bool = False
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """The dtype the weights are loaded in (``auto``: as saved)."""

    _model_given = field_validator("model")(required_path)

    @property
    def tokenizer_path(self) -> Path:
        return self.tokenizer or self.model


PATH_KEYS = ("model", "tokenizer", "data", "tasks", "index", "output_dir")
"""Recipe keys holding paths: relative ones are read from the recipe file's folder."""

R = TypeVar("R", bound=TrainRecipe)


def read_recipe(path: Path, kind: type[R], overrides: dict[str, Any] | None = None) -> R:
    """A recipe of ``kind`` from the TOML file ``path`` with ``overrides`` (the CLI's flags; None
    values ignored) laid over it. Relative paths in the file are taken from the file's folder; paths
    given as overrides as they are (from the working directory, where the user typed them); ``tiny``
    is a name, not a folder."""
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
    return validate_recipe(raw, kind, source=str(path))


def validate_recipe(raw: dict[str, Any], kind: type[R], *, source: str = "recipe") -> R:
    """A validated recipe, or `ConfigError` naming each bad field."""
    try:
        return kind.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or '?'}: {error['msg']}" for error in exc.errors()
        ]
        raise ConfigError(f"{source}: " + "; ".join(problems)) from exc
