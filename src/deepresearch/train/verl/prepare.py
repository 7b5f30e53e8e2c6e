"""Turn rubric tasks into a verl run directory: the dataset, the config, the tool config, the command.

``prepare`` reads a tasks JSONL (any format ``judge grade`` reads: ``judge/loaders.py``) and writes
into ``out``:

- ``train.parquet`` / ``val.parquet`` — verl's RL rows: ``prompt`` is the chat the agent starts from
  (our system prompt, in the question's language, then the question), ``agent_name`` picks verl's
  tool agent loop, ``reward_model.ground_truth`` carries the task's rubrics as JSON and
  ``extra_info`` the task id and question, which ``reward.compute_score`` reads back. The validation
  file holds the same rows: the recipe runs no validation by default (``trainer.test_freq: -1``),
  since every validation rollout costs judge calls; point ``data.val_files`` at held-out tasks to
  turn it on.
- ``ppo.yaml`` — the recipe (the packaged one, or the user's ``config``), unchanged.
- ``tools.yaml`` — the tool config with the search settings given here (backend, index path).
- ``launch.sh`` — the exact ``python -m verl.trainer.main_ppo`` command for a Ray cluster, with the
  model path and the cluster size as variables and the judge's endpoint exported (its key is never
  written: the script requires it from the environment when one was given).

Nothing here imports verl: the files are made in the main environment and read in verl's.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from deepresearch.agent import prompts
from deepresearch.config import Settings
from deepresearch.errors import ConfigError
from deepresearch.judge.loaders import load_tasks
from deepresearch.judge.rubrics import Task
from deepresearch.train.verl import CONFIG_NAME, recipe_file

DATA_SOURCE = "deepresearch"
"""``data_source`` of every row (verl's ``reward_fn_key``; the reward uses it only as a fallback id)."""
AGENT_LOOP = "tool_agent"
"""verl's multi-turn agent loop that runs the tools of ``tools.yaml``."""
TRAIN_FILE = "train.parquet"
VAL_FILE = "val.parquet"
TOOLS_FILE = "tools.yaml"
LAUNCH_FILE = "launch.sh"
DEFAULT_MODEL = "/path/to/model"
"""What ``launch.sh`` says when no model was given: it must be set (``MODEL=… ./launch.sh``)."""


@dataclass
class PreparedRecipe:
    """What ``prepare`` wrote, and what it left out."""

    out: Path
    rows: int
    files: dict[str, Path] = field(default_factory=dict)
    """``train``, ``val``, ``config``, ``tools``, ``launch`` → path."""
    skipped: list[str] = field(default_factory=list)
    """Task lines that did not load, and tasks without a positive rubric (no reward scale)."""
    model: str | None = None
    """The policy ``launch.sh`` names; ``None``: ``MODEL`` must be set when it runs."""

    def describe(self) -> str:
        lines = [f"{self.rows} task(s) → {self.files['train']}"]
        lines += [f"  {name}: {path}" for name, path in self.files.items() if name != "train"]
        lines += [f"  skipped: {why}" for why in self.skipped]
        model = "" if self.model else "MODEL=/path/to/model "
        lines.append(f"run on the Ray head node, in verl's environment: {model}bash {self.files['launch']}")
        return "\n".join(lines)


def prepare(
    tasks: Path,
    out: Path,
    settings: Settings,
    *,
    model: str | None = None,
    config: Path | None = None,
    today: str | None = None,
) -> PreparedRecipe:
    """Write the verl run directory ``out`` for the rubric tasks in ``tasks`` (see the module docstring).

    ``model`` is the policy's path as the cluster sees it (default: set ``MODEL`` at launch);
    ``config`` replaces the packaged ``ppo.yaml``; ``today`` is the date in the system prompt.
    """
    from deepresearch.services import llm_config

    llm_config(settings, "judge")  # no judge endpoint: refuse now, not at the first reward on a cluster
    recipe = _read_config(config or recipe_file(f"{CONFIG_NAME}.yaml"))
    loaded = load_tasks(tasks)
    usable = [task for task in loaded.tasks if task.positive_weight > 0]
    skipped = loaded.errors + [
        f"{task.task_id}: no rubric with a positive weight (no reward scale)"
        for task in loaded.tasks
        if task.positive_weight <= 0
    ]
    if not usable:
        raise ConfigError(f"{tasks}: no task to train on" + (f" ({skipped[0]})" if skipped else ""))
    date = today or datetime.now(UTC).date().isoformat()
    rows = [task_row(task, index, settings, date) for index, task in enumerate(usable)]
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "train": out / TRAIN_FILE,
        "val": out / VAL_FILE,
        "config": out / f"{CONFIG_NAME}.yaml",
        "tools": out / TOOLS_FILE,
        "launch": out / LAUNCH_FILE,
    }
    write_parquet(rows, files["train"])
    write_parquet(rows, files["val"])
    files["config"].write_text(recipe, encoding="utf-8")
    files["tools"].write_text(tools_config(settings), encoding="utf-8")
    files["launch"].write_text(launch_script(settings, model), encoding="utf-8")
    files["launch"].chmod(0o755)
    return PreparedRecipe(out=out, rows=len(rows), files=files, skipped=skipped, model=model)


def task_row(task: Task, index: int, settings: Settings, today: str) -> dict[str, Any]:
    """One verl RL row: the agent's opening chat, the rubrics as ground truth, the task's identity."""
    language = prompts.language_of(settings.language, task.prompt)
    system = prompts.system_prompt(language, today, small=settings.is_local)
    return {
        "data_source": DATA_SOURCE,
        "agent_name": AGENT_LOOP,
        "prompt": [{"role": "system", "content": system}, {"role": "user", "content": task.prompt}],
        "ability": "deep_research",
        "reward_model": {
            "style": "rubric",
            "ground_truth": json.dumps([rubric.model_dump() for rubric in task.rubrics], ensure_ascii=False),
        },
        "extra_info": {"index": index, "task_id": task.task_id, "question": task.prompt},
    }


def write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    """``rows`` as a parquet file (verl reads it with ``datasets.load_dataset("parquet")``)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # core install: pyarrow comes with the train extra (datasets) and verl
        raise ConfigError("writing verl's dataset needs pyarrow: pip install -e '.[train]'") from exc
    pq.write_table(pa.Table.from_pylist(rows), path)


def tools_config(settings: Settings) -> str:
    """The packaged ``tools.yaml`` with this run's search settings (no secrets: those stay in the
    environment of each node)."""
    config = yaml.safe_load(recipe_file(TOOLS_FILE).read_text(encoding="utf-8"))
    search: dict[str, Any] = {"search": settings.search}
    if settings.index is not None:
        search["index"] = str(settings.index.resolve())
    for tool in config["tools"]:
        tool["config"]["settings"] = {**(tool["config"].get("settings") or {}), **search}
    header = (
        "# verl multi-turn tool config written by `deepresearch train verl` (the packaged tools.yaml\n"
        "# explains each field). Secrets (search API keys) come from each node's DEEPRESEARCH_* variables.\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False)


def launch_script(settings: Settings, model: str | None) -> str:
    """``launch.sh``: the verl command with this directory's files, the model and the cluster size;
    the judge's effective endpoint (its own, else the agent's) exported for the reward function."""
    judge = {
        "DEEPRESEARCH_JUDGE_MODEL": settings.judge_model or settings.model,
        "DEEPRESEARCH_JUDGE_BASE_URL": settings.judge_base_url or settings.base_url,
    }
    lines = [f"export {name}=${{{name}:-{shlex.quote(value)}}}" for name, value in judge.items() if value]
    if settings.judge_api_key is not None or settings.api_key is not None:
        lines.append(': "${DEEPRESEARCH_JUDGE_API_KEY:?export the judge API key}"')
    return LAUNCH_TEMPLATE.format(
        model=shlex.quote(model or DEFAULT_MODEL),
        exports="\n".join(lines),
        config_name=CONFIG_NAME,
        train=TRAIN_FILE,
        val=VAL_FILE,
        tools=TOOLS_FILE,
    )


def _read_config(path: Path) -> str:
    """The recipe's text, refused early when it is not a Hydra config built on verl's ``ppo_trainer``."""
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the verl config {path}: {exc}") from exc
    if not isinstance(data, dict) or "ppo_trainer" not in (data.get("defaults") or []):
        raise ConfigError(f"{path}: not a verl recipe (its `defaults` must list ppo_trainer)")
    return text


LAUNCH_TEMPLATE = """\
#!/usr/bin/env bash
# PPO on verl for deepresearch, written by `deepresearch train verl`. Edit the variables, not the command;
# any extra argument is a Hydra override appended to it (e.g. trainer.total_epochs=2, or --cfg job to
# print the composed config and stop).
#
# Run it on the Ray head node, in the verl environment with deepresearch installed (core only:
# pip install -e <repo> --no-deps plus its core dependencies, or .ci/verl-env). One node: this script's
# environment reaches every worker. Several nodes: start Ray on each (ray start --head / ray start
# --address=HEAD:6379) with the same DEEPRESEARCH_* variables exported (the judge's endpoint and key, any
# search API key) and the model, this directory and the search index at the same paths.
set -euo pipefail
HERE="$(cd "$(dirname "${{BASH_SOURCE[0]}}")" && pwd)"
PYTHON="${{PYTHON:-python}}"
MODEL=${{MODEL:-{model}}}                   # the policy (and the critic's starting point): a local folder
NNODES="${{NNODES:-1}}"
GPUS_PER_NODE="${{GPUS_PER_NODE:-8}}"
CHECKPOINTS="${{CHECKPOINTS:-$HERE/checkpoints}}"
{exports}

exec "$PYTHON" -m verl.trainer.main_ppo \\
  --config-path="$HERE" --config-name={config_name} \\
  data.train_files="$HERE/{train}" \\
  data.val_files="$HERE/{val}" \\
  actor_rollout_ref.model.path="$MODEL" \\
  actor_rollout_ref.rollout.multi_turn.tool_config_path="$HERE/{tools}" \\
  trainer.nnodes="$NNODES" \\
  trainer.n_gpus_per_node="$GPUS_PER_NODE" \\
  trainer.default_local_dir="$CHECKPOINTS" \\
  "$@"
"""
