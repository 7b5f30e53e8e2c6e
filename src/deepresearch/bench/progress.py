"""What a person watching a benchmark sees: a live panel on a terminal, one line per change otherwise.

Both views are fed the ``BenchUpdate`` snapshots that ``run_benchmark`` sends to ``on_update``; the
store, not the view, is the record. The ETA assumes the tasks still to run take as long as the ones
finished in this invocation and run ``concurrency`` at a time.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import IO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from deepresearch.bench.runner import BenchUpdate

RUNNING_SHOWN = 6
"""Running tasks listed by name in the live panel."""


def eta_seconds(update: BenchUpdate) -> float | None:
    """Seconds until the queued and running tasks are done; ``None`` before any task has finished."""
    left = update.queued + update.running
    if left == 0:
        return 0.0
    if update.mean_wall_s is None:
        return None
    return update.mean_wall_s * math.ceil(left / update.concurrency)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_spend(update: BenchUpdate) -> str:
    limit = f" of ${update.max_cost:.4f}" if update.max_cost is not None else ""
    return f"${update.spent_usd:.4f}{limit}"


def format_counts(update: BenchUpdate) -> str:
    return (
        f"{update.done}/{update.total} done · {update.failed} failed · {update.running} running · "
        f"{update.pending} pending"
    )


class LiveBenchView:
    """A rich panel, redrawn on every update and four times a second for the clocks."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.last: BenchUpdate | None = None
        self.recent: list[str] = []
        self.live = Live(self, console=self.console, refresh_per_second=4, transient=False)

    def __rich__(self) -> Group:
        update = self.last
        if update is None:
            return Group(Text("benchmark starting…", style="dim"))
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        table.add_row("tasks", format_counts(update))
        table.add_row("spend", format_spend(update))
        table.add_row("eta", format_duration(eta_seconds(update)))
        now = time.monotonic()
        running = sorted(update.running_since.items(), key=lambda item: item[1])[:RUNNING_SHOWN]
        shown = ", ".join(f"{task_id} ({format_duration(now - t)})" for task_id, t in running)
        more = len(update.running_since) - len(running)
        table.add_row("running", Text(shown + (f" +{more}" if more > 0 else ""), overflow="ellipsis"))
        lines = [Text(line, style="dim") for line in self.recent[-3:]]
        return Group(Text(f"deepresearch bench · {update.name}", style="dim"), table, *lines)

    def __call__(self, update: BenchUpdate) -> None:
        if self.last is None:
            self.live.start()
        self.last = update
        line = describe(update)
        if line and update.kind in ("finish", "limit"):
            self.recent.append(line)
        self.live.refresh()
        if update.kind == "end":
            self.live.stop()

    def stop(self) -> None:
        self.live.stop()


class LineBenchView:
    """One plain line per task started or finished, for logs and pipes (ticks are not printed)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr

    def __call__(self, update: BenchUpdate) -> None:
        line = describe(update)
        if line:
            print(f"[{format_counts(update)} · {format_spend(update)}] {line}", file=self.stream, flush=True)

    def stop(self) -> None:
        return None


def describe(update: BenchUpdate) -> str:
    """The line an update deserves, or ``""`` (ticks)."""
    row = update.row
    match update.kind:
        case "plan":
            return (
                f"benchmark {update.name}: {update.queued} task(s) to run, concurrency {update.concurrency}"
            )
        case "start" if row is not None:
            again = f" (attempt {row.attempts})" if row.attempts > 1 else ""
            return f"{row.task_id} started{again}"
        case "finish" if row is not None:
            what = f"failed: {row.error}" if row.status == "failed" else row.status
            return f"{row.task_id} {what} · {row.steps} steps · ${row.cost_usd:.4f} · {row.wall_s:.0f}s"
        case "limit":
            return f"{update.message}: no new task will start"
        case "end":
            return f"benchmark {update.name} ended"
    return ""


def bench_view(*, quiet: bool = False, tty: bool | None = None) -> Callable[[BenchUpdate], None] | None:
    """The view for ``on_update``: live on a terminal, lines otherwise, nothing when ``quiet``."""
    if quiet:
        return None
    return LiveBenchView() if (sys.stderr.isatty() if tty is None else tty) else LineBenchView()
