"""``deepresearch train verl``: write a verl PPO run directory for a Ray cluster from rubric tasks.

The command only prepares (dataset, config, tool config, ``launch.sh``); verl trains, in its own
environment, on the cluster. Registered on ``train_app`` by ``cli/train.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from deepresearch.cli.common import say
from deepresearch.cli.options import JUDGE, SEARCH, SettingsFlags, settings_options


@settings_options(*JUDGE, *SEARCH, settings_file=False)
def train_verl(
    tasks: Annotated[Path, typer.Option("--tasks", help="Rubric tasks (JSONL, as judge grade reads).")],
    out: Annotated[Path, typer.Option("--out", help="The run directory to write.")],
    model: Annotated[
        str | None, typer.Option("--model", help="The policy's path on the cluster (else MODEL at launch).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="A verl recipe to use instead of train/verl/ppo.yaml.")
    ] = None,
    *,
    flags: SettingsFlags,
) -> None:
    """Prepare PPO on verl: critic, GAE (γ = λ = 1), our tools in multi-turn rollouts, our judge's reward.

    Writes train/val parquet, ppo.yaml, tools.yaml and launch.sh into --out; run launch.sh on the Ray
    head node in verl's environment. The judge is --judge-model at --judge-base-url (or
    DEEPRESEARCH_JUDGE_*); --search and --index choose what the rollouts search."""
    from deepresearch.errors import DeepResearchError

    try:
        from deepresearch.train.verl.prepare import prepare
    except ImportError as exc:  # pyyaml or pyarrow missing
        say(f"error: {exc.name or exc}: install the train extra: pip install -e '.[train]'", color="red")
        raise typer.Exit(1) from None
    settings = flags.settings()
    try:
        prepared = prepare(tasks, out, settings, model=model, config=config)
    except (DeepResearchError, OSError) as exc:
        say(f"error: {exc}", color="red")
        raise typer.Exit(1) from None
    typer.echo(prepared.describe())
