"""What a person watching a benchmark sees: the ETA, the counts and spend, one line per change."""

from __future__ import annotations

import io

from rich.console import Console

from deepresearch.bench.progress import LineBenchView, LiveBenchView, describe, eta_seconds, format_duration
from deepresearch.bench.runner import BenchUpdate
from deepresearch.bench.store import TaskRow


def update(**changes: object) -> BenchUpdate:
    fields: dict[str, object] = {
        "kind": "tick",
        "name": "b",
        "total": 10,
        "done": 4,
        "failed": 1,
        "running": 3,
        "pending": 2,
        "queued": 2,
        "spent_usd": 0.125,
        "max_cost": 1.0,
        "concurrency": 2,
        "mean_wall_s": 30.0,
    }
    fields.update(changes)
    return BenchUpdate(**fields)  # type: ignore[arg-type]


def test_eta_counts_waves_of_the_remaining_tasks():
    assert eta_seconds(update()) == 30.0 * 3  # 5 left at concurrency 2: three waves
    assert eta_seconds(update(mean_wall_s=None)) is None
    assert eta_seconds(update(queued=0, running=0)) == 0.0
    assert [format_duration(s) for s in (None, 42, 125, 7300)] == ["?", "42s", "2m05s", "2h01m"]


def test_line_view_prints_starts_finishes_and_the_limit_but_not_ticks():
    stream = io.StringIO()
    view = LineBenchView(stream)
    view(update())
    row = TaskRow("t1", "q", status="failed", error="LLMError: 500", steps=3, cost_usd=0.02, wall_s=12)
    view(update(kind="finish", task_id="t1", row=row))
    view(update(kind="limit", message="spend limit $1.0000 reached"))
    lines = stream.getvalue().splitlines()
    assert lines == [
        "[4/10 done · 1 failed · 3 running · 2 pending · $0.1250 of $1.0000] "
        "t1 failed: LLMError: 500 · 3 steps · $0.0200 · 12s",
        "[4/10 done · 1 failed · 3 running · 2 pending · $0.1250 of $1.0000] "
        "spend limit $1.0000 reached: no new task will start",
    ]
    assert describe(update(kind="start", task_id="t1", row=TaskRow("t1", "q", attempts=2))) == (
        "t1 started (attempt 2)"
    )


def test_live_view_renders_counts_spend_eta_and_running_tasks():
    console = Console(record=True, width=120, file=io.StringIO(), force_terminal=True)
    view = LiveBenchView(console)
    view(update(running_since={"t7": 0.0}))
    view(update(kind="end"))
    text = console.export_text()
    assert "4/10 done · 1 failed · 3 running · 2 pending" in text
    assert "$0.1250 of $1.0000" in text and "t7" in text
