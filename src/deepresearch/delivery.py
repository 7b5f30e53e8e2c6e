"""The end of a run that worked: render the answer into ``report.md``/``report.html``, judge what the
user got (``outcome.py``), record the run as done and number its sources as the report does.
``research.py`` calls these two; a failed or cancelled run ends in ``Recorder.wind_up`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepresearch.agent.state import RunState
from deepresearch.agent.stops import Finished
from deepresearch.events import ReportWritten, RunFinished, now_iso
from deepresearch.outcome import Outcome, judge_outcome
from deepresearch.report import CitedText, Language, render_html, render_markdown, resolve_citations
from deepresearch.runs import Recorder, RunDir, RunInfo, RunStore


@dataclass
class RunResult:
    run_dir: Path
    status: str
    report: str = ""
    origin: str = ""
    steps: int = 0
    usage: dict[str, Any] = field(default_factory=dict)
    citations: dict[str, int] = field(default_factory=dict)
    outcome: str = "report"
    """``report``, ``extractive``, ``uncited`` or ``empty`` (``runs.RunInfo.outcome``)."""
    outcome_reason: str = ""

    @property
    def report_path(self) -> Path:
        return RunDir(self.run_dir).report_path


async def write_report(stop: Finished, recorder: Recorder, state: RunState) -> tuple[CitedText, str]:
    """Render the answer, write ``report.md`` and ``report.html``, record the ``report`` event."""
    language: Language = "zh" if state.language == "zh" else "en"
    cited = resolve_citations(stop.answer, state.sources)
    markdown = render_markdown(cited, language)
    html = render_html(cited, title=state.question[:200], language=language)
    await recorder.write_report(markdown, html)
    outcome, _ = _outcome(stop, cited, state)
    recorder.record(
        ReportWritten(
            step=state.step,
            path=RunDir(recorder.store.path).report_path.name,
            chars=len(markdown),
            origin=stop.origin,
            citations=cited.stats,
            outcome=outcome,
        )
    )
    return cited, markdown


async def deliver(
    stop: Finished,
    cited: CitedText,
    markdown: str,
    store: RunStore,
    info: RunInfo,
    recorder: Recorder,
    state: RunState,
) -> RunResult:
    """Record the run as done and refresh the derived files (sources now numbered as in the report)."""
    info.status, info.ended, info.citations, info.report_origin = "done", now_iso(), cited.stats, stop.origin
    info.outcome, info.outcome_reason = _outcome(stop, cited, state)
    info.guards = dict(state.audit)
    recorder.record(
        RunFinished(step=state.step, status="done", usage=state.usage.to_dict(), steps=state.step)
    )
    numbers = cited.numbers
    numbered = [s.to_dict() | {"n": numbers.get(s.key)} for s in state.sources]
    await recorder.save(state, sources=numbered)
    return RunResult(
        run_dir=store.path,
        status="done",
        report=markdown,
        origin=stop.origin,
        steps=state.step,
        usage=state.usage.to_dict(),
        citations=cited.stats,
        outcome=info.outcome,
        outcome_reason=info.outcome_reason or "",
    )


def _outcome(stop: Finished, cited: CitedText, state: RunState) -> tuple[Outcome, str]:
    sections = list(state.guided.get("sections", {}).values())
    return judge_outcome(stop.origin, stop.reason, cited, seen=len(state.sources), sections=sections)
