"""``deepresearch judge fact``: citation checks of a set of reports (FACT, faithfulness, groundedness).

Kept apart from ``cli/judge.py`` because it fetches the cited pages (with the fetch settings of the
configuration: SSRF guard, allowlist, page cache) and writes per-report numbers rather than
per-rubric records. Register it on the judge group with ``judge_app.command("fact")(judge_fact)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from deepresearch.cli.common import run_or_exit, say
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

    def shown(value: float | None, scale: float = 100.0) -> str:
        return "n/a" if value is None else f"{value * scale:.2f}"

    typer.echo(
        f"FACT citation accuracy: {shown(summary['citation_accuracy'])}; effective citations: "
        f"{shown(summary['effective_citations'], 1.0)} per task over {summary['tasks_with_citations']} tasks"
    )
    typer.echo(
        f"ResearcherBench faithfulness: {shown(summary['faithfulness'])}; "
        f"groundedness: {shown(summary['groundedness'])} over {summary['tasks']} reports"
    )
    verdicts = ", ".join(f"{name} {count}" for name, count in sorted(summary["pair_verdicts"].items()))
    typer.echo(
        f"pairs: {verdicts or 'none'}; {summary['fetches']} URLs fetched; judge tokens "
        f"{summary['tokens']}, cost ${summary['cost_usd']:.4f}; results in {out}, "
        f"summary in {out.parent / 'summary.json'}"
    )
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
    import asyncio

    from deepresearch.judge.commands import judge_client
    from deepresearch.judge.fact import FactChecker, FactResult, summarize
    from deepresearch.judge.loaders import collect_reports
    from deepresearch.services import open_fetcher

    found = collect_reports(reports)
    for problem in found.errors:
        say(f"  {problem}", color="yellow")
    if not found.reports:
        raise ConfigError(f"{reports}: no reports found")
    languages = _languages(queries) if queries is not None else {}
    out.parent.mkdir(parents=True, exist_ok=True)
    results: list[FactResult] = []
    client = judge_client(settings)
    fetcher = open_fetcher(settings)
    try:
        checker = FactChecker(client, fetcher, batch=batch, concurrency=concurrency)

        async def one(task_id: str, text: str) -> FactResult:
            chosen = languages.get(task_id) or (None if language == "auto" else language)
            return await checker.check(text, task_id=task_id, language=chosen)

        jobs = [asyncio.ensure_future(one(task_id, text)) for task_id, text in found.reports.items()]
        with out.open("w", encoding="utf-8") as handle:
            for finished in asyncio.as_completed(jobs):
                result = await finished
                results.append(result)
                handle.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
                handle.flush()
                accuracy = result.citation_accuracy
                rate = "n/a" if accuracy is None else f"{accuracy * 100:.1f}"
                typer.echo(
                    f"fact {result.task_id}: {result.supported}/{result.judged} supported ({rate}), "
                    f"${result.usage.cost_usd:.4f}",
                    err=True,
                )
    finally:
        await client.aclose()
        await fetcher.aclose()
    summary = {
        "protocol": "drb-fact+researcherbench-faithfulness",
        **summarize(results),
        "per_task": {
            r.task_id: {
                "citation_accuracy": r.citation_accuracy,
                "effective_citations": r.effective_citations,
                "faithfulness": r.faithfulness,
                "groundedness": r.groundedness,
            }
            for r in sorted(results, key=lambda r: r.task_id)
        },
        "fetches": checker.fetches,
        "calls": checker.calls,
        "tokens": checker.usage.total_tokens,
        "cost_usd": checker.usage.cost_usd,
    }
    path = out.parent / "summary.json"
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)
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
