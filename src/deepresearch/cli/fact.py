"""``deepresearch judge fact``: citation checks of a set of reports (FACT, faithfulness, groundedness).

Kept apart from ``cli/judge.py`` because it fetches the cited pages (with the fetch settings of the
configuration: SSRF guard, allowlist, page cache) and writes per-report numbers rather than
per-rubric records. Register it on the judge group with ``judge_app.command("fact")(judge_fact)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from deepresearch.cli.common import run_or_exit, say
from deepresearch.cli.grading import print_citations
from deepresearch.cli.options import JUDGE, SettingsFlags, settings_options
from deepresearch.config import Settings
from deepresearch.errors import ConfigError


@settings_options(*JUDGE)
def judge_fact(
    reports: Annotated[
        Path, typer.Option("--reports", help="Folder of <task_id>.md, folder of run directories, or JSONL.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Per-report results (JSONL).")] = Path("fact.jsonl"),
    language: Annotated[
        Literal["auto", "en", "zh"],
        typer.Option("--language", help="Prompt language; auto: zh for mostly-Chinese reports."),
    ] = "auto",
    queries: Annotated[
        Path | None,
        typer.Option(
            "--queries", help="DeepResearch Bench query.jsonl: each task's language (id, language)."
        ),
    ] = None,
    batch: Annotated[int, typer.Option("--batch", help="Statements of one URL per judge call.")] = 10,
    concurrency: Annotated[int, typer.Option("--concurrency", help="Judge calls in flight.")] = 8,
    *,
    flags: SettingsFlags,
) -> None:
    """Check every citation of the reports against the cited pages; print FACT and ResearcherBench numbers."""
    summary = run_or_exit(
        fact_files(
            flags.settings(),
            reports=reports,
            out=out,
            language=language,
            queries=queries,
            batch=batch,
            concurrency=concurrency,
        )
    )

    print_citations(summary)
    typer.echo(f"summary in {out.with_name('summary.json')}")
    if not summary["tasks"]:  # asked to check reports and checked none
        say("error: no report could be checked", color="red")
        raise typer.Exit(1)


async def fact_files(
    settings: Settings,
    *,
    reports: Path,
    out: Path,
    language: str = "auto",
    queries: Path | None = None,
    batch: int = 10,
    concurrency: int = 8,
) -> dict[str, Any]:
    """Check every report, write ``out`` (one line per report) and ``summary.json`` beside it."""
    from deepresearch.judge.commands import SUMMARY_NAME, check_citations, write_json
    from deepresearch.judge.loaders import collect_reports

    found = collect_reports(reports)
    for problem in found.errors:
        say(f"  {problem}", color="yellow")
    if not found.reports:
        raise ConfigError(f"{reports}: no reports found")

    def progress(result: Any) -> None:
        accuracy = result.citation_accuracy
        rate = "n/a" if accuracy is None else f"{accuracy * 100:.1f}"
        typer.echo(
            f"fact {result.task_id}: {result.supported}/{result.judged} supported ({rate}), "
            f"${result.usage.cost_usd:.4f}",
            err=True,
        )

    summary = {
        "protocol": "drb-fact+researcherbench-faithfulness",
        **await check_citations(
            settings,
            found.reports,
            out=out,
            languages=_languages(queries) if queries is not None else {},
            default_language=None if language == "auto" else language,
            batch=batch,
            concurrency=concurrency,
            on_report=progress,
        ),
    }
    write_json(out.with_name(SUMMARY_NAME), summary)
    return summary


def _languages(path: Path) -> dict[str, str]:
    """Task id → ``en``/``zh`` from a JSONL file of objects with ``id`` and ``language``."""
    languages: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        if isinstance(entry, dict) and "id" in entry and entry.get("language") in ("en", "zh"):
            languages[str(entry["id"])] = entry["language"]
    return languages
