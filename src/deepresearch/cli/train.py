"""``deepresearch train …``: training on what ``curate`` and the synth pipelines write (extra ``train``).

``format`` renders ``sft.jsonl`` / ``midtrain.jsonl`` through a model's chat template with loss masks
(assistant tokens only) and packs them; ``sft`` fine-tunes on them; ``rl`` trains the agent with GRPO,
rollouts by our own agent and reward by the judge. The training modules import torch, so each command
imports its module inside and names the missing extra when it is not installed.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from deepresearch.cli.common import needs_extra, say
from deepresearch.cli.options import JUDGE, SEARCH, SettingsFlags, settings_options

train_app = typer.Typer(
    no_args_is_help=True,
    help="Train on curated data (extra train): format, SFT, agentic RL with the judge as reward.",
)


@train_app.command("format")
def train_format(
    data: Annotated[
        Path, typer.Option("--data", help="sft.jsonl or midtrain.jsonl (from deepresearch curate).")
    ],
    tokenizer: Annotated[
        Path, typer.Option("--tokenizer", help="A local tokenizer folder with a chat template (no hub).")
    ],
    max_length: Annotated[
        int, typer.Option("--max-length", help="Tokens per packed sequence (32768, 131072…).")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", help="Packed sequences (JSONL: input_ids, labels, position_ids…).")
    ] = None,
    stage: Annotated[
        Literal["1", "2"] | None,
        typer.Option("--stage", help="Only midtrain stage 1 (text) or 2 (trajectories) records."),
    ] = None,
    show: Annotated[
        int, typer.Option("--show", help="Print this many rendered samples, trained spans in [[ ]].")
    ] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Render samples with the tokenizer's chat template, mask all but the assistant's tokens, and pack."""
    with needs_extra("train", "train format"):
        from deepresearch.train.format import FormatError, format_file, load_tokenizer, render_file
        from deepresearch.train.format import show as show_rendered
    chosen = int(stage) if stage else None
    with needs_extra("train", "train format"):  # transformers is imported when the tokenizer loads
        try:
            loaded = load_tokenizer(tokenizer)
            if show:
                skipped: list[Any] = []
                samples = render_file(data, loaded, skipped, stage=chosen)
                for kind, rendered in itertools.islice(samples, show):
                    typer.echo(f"--- {kind}: {len(rendered.input_ids)} tokens, {rendered.trained} trained")
                    typer.echo(show_rendered(rendered, loaded))
            report = format_file(data, loaded, max_length=max_length, out=out, stage=chosen)
        except (FormatError, OSError, ValueError) as exc:  # a bad file, a tokenizer that will not load
            say(f"error: {exc}", color="red")
            raise typer.Exit(1) from None
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.describe())
    if not report.samples:  # asked for training data and got none
        say(f"error: no sample of {data} could be rendered", color="red")
        raise typer.Exit(1)


@train_app.command("sft")
def train_sft(
    config: Annotated[Path, typer.Option("--config", help="The recipe (TOML; see train/recipes/sft.toml).")],
    model: Annotated[
        Path | None, typer.Option("--model", help="A local model folder, or tiny (the built-in test model).")
    ] = None,
    data: Annotated[Path | None, typer.Option("--data", help="sft.jsonl.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="The checkpoint folder.")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Stop after this many steps.")] = None,
) -> None:
    """Supervised fine-tuning with TRL on curated trajectories: only the assistant's tokens are trained.

    --model, --data, --out and --steps override the recipe's."""
    with needs_extra("train", "train sft"):
        from deepresearch.train.sft import load_recipe, run_sft
    from deepresearch.errors import DeepResearchError

    try:
        recipe = load_recipe(config, {"model": model, "data": data, "output_dir": out, "max_steps": steps})
        with needs_extra("train", "train sft"):  # transformers, trl and peft are imported when it runs
            result = run_sft(recipe, console=True)
    except (DeepResearchError, OSError) as exc:
        say(f"error: {exc}", color="red")
        raise typer.Exit(1) from None
    typer.echo(result.describe())


@train_app.command("rl")
@settings_options(*JUDGE, *SEARCH, settings_file=False)
def train_rl(
    config: Annotated[Path, typer.Option("--config", help="The recipe (TOML; see train/recipes/rl.toml).")],
    model: Annotated[
        str | None, typer.Option("--model", help="A local model folder, or tiny (the built-in test model).")
    ] = None,
    tasks: Annotated[Path | None, typer.Option("--tasks", help="Rubric tasks (JSONL).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="The checkpoint folder.")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Stop after this many steps.")] = None,
    *,
    flags: SettingsFlags,
) -> None:
    """Agentic RL with TRL's GRPO: rollouts are our agent with real tools, the reward is the judge's.

    --model, --tasks, --out, --steps and --index override the recipe's; the judge is --judge-model at
    --judge-base-url (or deepresearch.toml / DEEPRESEARCH_JUDGE_*)."""
    with needs_extra("train", "train rl"):
        from deepresearch.train.rl import load_rl_recipe, run_rl
    from deepresearch.errors import DeepResearchError

    settings = flags.settings()
    overrides = {
        "model": model,
        "tasks": tasks,
        "output_dir": out,
        "max_steps": steps,
        "index": flags.values.get("index"),
        "search": flags.values.get("search"),
    }
    try:
        recipe = load_rl_recipe(config, overrides)
        with needs_extra("train", "train rl"):
            result = run_rl(recipe, settings, console=True)
    except (DeepResearchError, OSError) as exc:
        say(f"error: {exc}", color="red")
        raise typer.Exit(1) from None
    typer.echo(result.describe())
    if result.rollouts and not result.reported:  # every reward was the floor: nothing was learned
        say(f"error: no rollout wrote a report; see {result.rollouts_path}", color="red")
        raise typer.Exit(1)
