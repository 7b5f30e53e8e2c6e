"""``bench compare``: judge every pair of benchmarks head to head and rank them.

For each pair of systems the LLM verdicts go to ``<root>/comparisons/<A>-vs-<B>.jsonl`` as they land,
so an interrupted comparison picks up where it stopped: a task that already has a usable verdict from
the same judge model is not asked again (failed ones are). Verdicts from elsewhere — people, via
``bench import-pairs``, or another judge — join through ``extra`` and ``source`` picks which count:
``llm``, ``human`` or ``both`` (each verdict is then one observation; a task with a human and an LLM
verdict counts twice, which is what "the same statistics from both" means).

With three systems or more, Bradley–Terry strengths over every pairwise game (``overall``) are
reported on the Elo scale with bootstrap intervals over tasks.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from deepresearch.bench.pairwise import (
    Missing,
    PairSummary,
    PairVerdict,
    compare_systems,
    games_from_verdicts,
    summarize_pairs,
)
from deepresearch.bench.stats import DEFAULT_RESAMPLES, Interval, bootstrap_elo
from deepresearch.bench.store import STORE_FILE, BenchStore, TaskRow
from deepresearch.config import Settings
from deepresearch.errors import ConfigError

logger = logging.getLogger(__name__)

Source = Literal["llm", "human", "both"]
COMPARISONS = "comparisons"


@dataclass
class Comparison:
    """Every pair's statistics, the ranking (three systems or more) and what went wrong."""

    systems: list[str]
    pairs: list[PairSummary] = field(default_factory=list)
    elo: dict[str, Interval] = field(default_factory=dict)
    verdict_files: list[Path] = field(default_factory=list)
    asked: int = 0
    """Pairs sent to the LLM judge in this call (the others came from earlier files or ``extra``)."""
    cost_usd: float = 0.0
    problems: list[str] = field(default_factory=list)


def resolve_bench(name: str, root: Path) -> Path:
    """A benchmark folder from a name under ``root`` or a path to the folder itself."""
    given = Path(name)
    for candidate in (given, root / name):
        if (candidate / STORE_FILE).is_file():
            return candidate
    raise ConfigError(f"no benchmark {name!r}: neither {given} nor {root / name} holds a {STORE_FILE}")


def verdict_file(root: Path, name_a: str, name_b: str) -> Path:
    def safe(name: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "bench"

    return root / COMPARISONS / f"{safe(name_a)}-vs-{safe(name_b)}.jsonl"


def load_bench_reports(bench: Path) -> tuple[dict[str, str], dict[str, str]]:
    with BenchStore.open(bench) as store:
        return reports_from_rows(store.tasks(), bench)


def select(verdicts: Iterable[PairVerdict], source: Source) -> list[PairVerdict]:
    """The verdicts of people (``human:…``), of models (``llm:…``), or both."""
    prefix = {"llm": ("llm:",), "human": ("human:",), "both": ("llm:", "human:")}[source]
    return [v for v in verdicts if v.judge.startswith(prefix)]


async def compare_benchmarks(
    settings: Settings | None,
    benches: Sequence[Path],
    *,
    root: Path,
    source: Source = "both",
    extra: Iterable[PairVerdict] = (),
    concurrency: int = 4,
    missing: Missing = "failed",
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    on_verdict: Callable[[PairVerdict], None] | None = None,
) -> Comparison:
    """Compare every pair of ``benches`` (named after their folders); see the module docstring.

    ``settings`` is the judge's (``None`` when only ``extra`` verdicts are to be counted).
    """
    names = [bench.name for bench in benches]
    if len(set(names)) != len(names):
        raise ConfigError(f"benchmarks need distinct folder names to be compared: {', '.join(names)}")
    if len(benches) < 2:
        raise ConfigError("compare needs at least two benchmarks")
    asking = settings is not None and source != "human"
    outcome = Comparison(systems=names)
    loaded = {bench.name: load_bench_reports(bench) for bench in benches}
    prompts = {task: text for _, (_, ps) in loaded.items() for task, text in ps.items()}
    pool = list(extra)
    client = None
    if asking:
        from deepresearch.judge.commands import judge_client

        assert settings is not None
        client = judge_client(settings)
    try:
        for a, b in itertools.combinations(names, 2):
            path = verdict_file(root, a, b)
            earlier = read_verdicts(path) if path.is_file() else []
            if client is not None:
                judge = f"llm:{client.config.model}"
                mine = [v for v in earlier if v.judge == judge and {a, b} == _pair(v)]
                done = {v.task_id for v in mine if not v.failed}
                reports_a = {t: r for t, r in loaded[a][0].items() if t not in done}
                reports_b = {t: r for t, r in loaded[b][0].items() if t not in done}
                fresh: list[PairVerdict] = []

                def keep(verdict: PairVerdict, fresh: list[PairVerdict] = fresh, path: Path = path) -> None:
                    fresh.append(verdict)
                    append_verdict(path, verdict)  # as it lands: a kill loses at most this one
                    if on_verdict is not None:
                        on_verdict(verdict)

                if reports_a or reports_b:
                    outcome.asked += 1
                    await compare_systems(
                        reports_a,
                        reports_b,
                        prompts,
                        client,
                        concurrency,
                        name_a=a,
                        name_b=b,
                        missing=missing,
                        on_verdict=keep,
                    )
                outcome.cost_usd += sum(v.cost_usd for v in fresh)
                earlier = latest([*mine, *fresh])  # a retried comparison replaces its failed one
            else:
                earlier = latest(earlier)
            if earlier:
                outcome.verdict_files.append(path)
            pool.extend(earlier)
    finally:
        if client is not None:
            await client.aclose()
    chosen = select(pool, source)
    for a, b in itertools.combinations(names, 2):
        mine = [v for v in chosen if _pair(v) == {a, b}]
        if not mine:
            outcome.problems.append(f"{a} vs {b}: no {source} verdict to count")
            continue
        outcome.pairs.append(summarize_pairs(mine, system_a=a, resamples=resamples, seed=seed))
        failed = sum(v.failed for v in mine)
        if failed:
            outcome.problems.append(f"{a} vs {b}: {failed} comparison(s) failed and are not counted")
    if len(names) >= 3:
        games = games_from_verdicts(v for v in chosen if _pair(v) <= set(names))
        if games:
            outcome.elo = bootstrap_elo(games, resamples=min(resamples, 1000), seed=seed)
    return outcome


def write_verdicts(path: Path, verdicts: Iterable[PairVerdict]) -> None:
    """Write verdicts as JSONL (one ``PairVerdict`` per line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for verdict in verdicts:
            handle.write(verdict.model_dump_json() + "\n")


def append_verdict(path: Path, verdict: PairVerdict) -> None:
    """Add one verdict to a JSONL file; earlier lines (other judges, failed tries) stay as they were."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(verdict.model_dump_json() + "\n")


def read_verdicts(path: Path) -> list[PairVerdict]:
    """Verdicts from a JSONL file; a line that does not parse raises ``ConfigError`` naming it, except
    a last line cut short (no newline: the writer was killed mid-line), which is skipped."""
    verdicts = []
    lines = path.read_text(encoding="utf-8").split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            verdicts.append(PairVerdict.model_validate_json(line))
        except ValidationError as exc:
            if number == len(lines):
                logger.warning("%s:%d: skipped a verdict cut short", path, number)
                continue
            raise ConfigError(f"{path}:{number}: not a pairwise verdict ({exc.errors()[0]['msg']})") from exc
    return verdicts


def latest(verdicts: Iterable[PairVerdict]) -> list[PairVerdict]:
    """The last verdict of each judge on each task and pair of systems, in order of first appearance."""
    found: dict[tuple[str, str, frozenset[str]], PairVerdict] = {}
    for verdict in verdicts:
        found[(verdict.task_id, verdict.judge, frozenset(_pair(verdict)))] = verdict
    return list(found.values())


def reports_from_rows(rows: Iterable[TaskRow], bench_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(reports, prompts) by task id from a bench's rows: finished tasks whose report file exists.

    A relative ``report_path`` is taken relative to ``bench_dir``.
    """
    reports: dict[str, str] = {}
    prompts: dict[str, str] = {}
    for row in rows:
        prompts[row.task_id] = row.prompt
        if row.status != "done" or not row.report_path:
            continue
        path = Path(row.report_path)
        path = path if path.is_absolute() else bench_dir / path
        try:
            reports[row.task_id] = path.read_text(encoding="utf-8")
        except OSError as exc:
            logger.warning("bench %s: report of task %s unreadable: %s", bench_dir, row.task_id, exc)
    return reports, prompts


def _pair(verdict: PairVerdict) -> set[str]:
    return {verdict.system_a, verdict.system_b}
