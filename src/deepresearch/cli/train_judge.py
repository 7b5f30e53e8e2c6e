"""Judge distillation commands: ``train judge-data``, ``train judge-rl`` and ``judge agreement``.

Registered by the CLI's root module: ``train_app.command("judge-data")(train_judge_data)``,
``train_app.command("judge-rl")(train_judge_rl)`` and ``judge_app.command("agreement")(judge_agreement)``.
The SFT step in between is plain ``train sft`` on the judge data. ``judge-data`` and ``agreement`` need
only the core install; ``judge-rl`` needs the ``train`` extra.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from deepresearch.cli.common import needs_extra, say
from deepresearch.errors import DeepResearchError


def train_judge_data(
    records: Annotated[
        Path, typer.Option("--records", help="The teacher's per-rubric records (judge grade --out).")
    ],
    tasks: Annotated[Path, typer.Option("--tasks", help="The task file the teacher graded.")],
    reports: Annotated[Path, typer.Option("--reports", help="The reports the teacher graded.")],
    out: Annotated[Path, typer.Option("--out", help="Folder for train.jsonl, eval.jsonl, summary.json.")],
    eval_fraction: Annotated[
        float, typer.Option("--eval-fraction", help="Share of the tasks held out for eval.jsonl.")
    ] = 0.1,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the task split.")] = 0,
    prompts: Annotated[
        str | None,
        typer.Option("--prompts", help="Prompt family (default: the teacher's, from its summary.json)."),
    ] = None,
    max_report_tokens: Annotated[
        int, typer.Option("--max-report-tokens", help="Longer reports are skipped (graded in chunks).")
    ] = 100_000,
) -> None:
    """Turn a strong judge's verdicts into SFT data for a small judge: the grader's exact prompt per
    rubric, the teacher's verdict as the answer; split by task so eval tasks are unseen."""
    from deepresearch.train.judge_data import build_judge_data

    try:
        report = build_judge_data(
            tasks_path=tasks,
            reports=reports,
            records_path=records,
            out=out,
            prompts=prompts,
            eval_fraction=eval_fraction,
            seed=seed,
            max_report_tokens=max_report_tokens,
        )
    except (DeepResearchError, OSError) as exc:
        say(f"error: {exc}", color="red")
        raise typer.Exit(1) from None
    typer.echo(report.describe())
    if not report.written:
        say(f"error: no sample could be made from {records}", color="red")
        raise typer.Exit(1)


def train_judge_rl(
    config: Annotated[
        Path, typer.Option("--config", help="The recipe (TOML; see train/recipes/judge_rl.toml).")
    ],
    model: Annotated[
        Path | None, typer.Option("--model", help="A local model folder, or tiny (the built-in test model).")
    ] = None,
    data: Annotated[Path | None, typer.Option("--data", help="train.jsonl from train judge-data.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="The checkpoint folder.")] = None,
    steps: Annotated[int | None, typer.Option("--steps", help="Stop after this many steps.")] = None,
) -> None:
    """RLVR for a distilled judge with TRL GRPO: reward = a verdict our parser reads + agreement with
    the teacher. --model, --data, --out and --steps override the recipe's."""
    with needs_extra("train", "train judge-rl"):
        from deepresearch.train.judge_rl import load_recipe, run_judge_rl

        try:
            recipe = load_recipe(
                config, {"model": model, "data": data, "output_dir": out, "max_steps": steps}
            )
            result = run_judge_rl(recipe, console=True)
        except (DeepResearchError, OSError) as exc:
            say(f"error: {exc}", color="red")
            raise typer.Exit(1) from None
    typer.echo(result.describe())


def judge_agreement(
    teacher: Annotated[
        Path, typer.Option("--teacher", help="Reference records (a strong judge's, or human labels).")
    ],
    records: Annotated[Path, typer.Option("--records", help="The judge's records on the same tasks.")],
    binary: Annotated[
        bool, typer.Option("--binary", help="Count partially as not satisfied on both sides.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
) -> None:
    """How far a judge agrees with a reference judge, rubric by rubric: accuracy, macro-F1, kappa."""
    from deepresearch.train.judge_data import teacher_agreement

    try:
        result = teacher_agreement(teacher, records, binary=binary)
    except DeepResearchError as exc:
        say(f"error: {exc}", color="red")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(asdict(result), indent=2))
        return
    kappa = "n/a" if result.kappa is None else f"{result.kappa:.3f}"
    linear = "n/a" if result.linear_kappa is None else f"{result.linear_kappa:.3f}"
    typer.echo(
        f"{result.n} rubrics: accuracy {result.accuracy:.3f}, macro-F1 {result.macro_f1:.3f}, "
        f"kappa {kappa} (linear {linear}); {result.missing_judge} not graded by the judge, "
        f"{result.unlabelled} without a reference verdict"
    )
    typer.echo("confusion (rows: reference, columns: judge; " + ", ".join(result.labels) + ")")
    for label, row in zip(result.labels, result.confusion, strict=True):
        typer.echo(f"  {label:>13} " + " ".join(f"{count:5d}" for count in row))
