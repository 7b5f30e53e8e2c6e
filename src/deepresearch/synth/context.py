"""What a synthesis pipeline works with: the model, the search backend, and our own agent.

``open_context(settings, out)`` opens the services once for the whole pipeline (for ``--model local``
that starts the embedded model server) and closes them at the end. Agent runs go to
``<out>.runs/<item id>/``: a real run directory each, read back with ``runs.RunDir``. ``run_agent``
is resumable like the engine: a finished run is reused (not paid again), an interrupted one resumed,
and only a missing one started, so a killed pipeline never repeats an agent run it completed.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepresearch.config import Settings
from deepresearch.runs import RunDir
from deepresearch.services import Services
from deepresearch.synth.engine import Tally
from deepresearch.synth.model import Model

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class SynthContext:
    settings: Settings
    services: Services
    runs_dir: Path
    """Where this pipeline's agent runs live (``<out>.runs``)."""

    def model(self, tally: Tally, *, temperature: float | None = None) -> Model:
        """The pipeline's model, charging ``tally``."""
        return Model(self.services.client, tally, temperature=temperature)

    @property
    def search(self) -> Any:
        """The configured search backend (``search.SearchBackend``: ``await search(query, limit=…)``)."""
        return self.services.search

    def run_dir(self, name: str) -> Path:
        """The run directory for ``name`` (an item id, maybe with an attempt suffix), made path-safe."""
        safe = _UNSAFE.sub("_", name).strip("._") or "item"
        return self.runs_dir / safe[:120]

    async def run_agent(
        self, name: str, question: str, tally: Tally, *, settings: Settings | None = None
    ) -> RunDir:
        """Our agent on ``question`` in ``run_dir(name)``: reused when finished, resumed when
        interrupted, started when missing. The spend of what ran now is added to ``tally``."""
        from deepresearch.research import research, resume

        path = self.run_dir(name)
        chosen = (settings or self.settings).model_copy(update={"out": path})
        if path.exists() and RunDir.open(path).started:
            run = RunDir.open(path)
            if run.finished:
                return run
            result = await resume(path, chosen)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            result = await research(question, chosen)
        _charge(tally, result.usage)
        tally.calls += result.steps
        return RunDir.open(result.run_dir)

    async def follow_up(
        self, run: RunDir, message: str, tally: Tally, *, settings: Settings | None = None
    ) -> RunDir:
        """Add ``message`` as a user turn to the finished ``run``; it goes on (``research.follow_up``)."""
        from deepresearch.research import follow_up

        before, steps_before = _usage_of(run), run.meta.steps
        result = await follow_up(run.path, message, settings)
        after = result.usage
        tally.calls += result.steps - steps_before
        _charge(
            tally,
            {key: float(after.get(key, 0) or 0) - float(before.get(key, 0) or 0) for key in after},
        )
        return RunDir.open(result.run_dir)


@asynccontextmanager
async def open_context(settings: Settings, out: Path, *, search: bool = True) -> AsyncIterator[SynthContext]:
    """The services for one pipeline writing ``out``, closed when it ends. ``search=False`` for a
    pipeline that never searches (and runs no agent), so it needs no index or search provider."""
    settings = settings.for_local_model()
    services = await Services.open(settings, search=search)
    try:
        yield SynthContext(settings, services, out.with_name(out.name + ".runs"))
    finally:
        await services.aclose()


def _usage_of(run: RunDir) -> dict[str, Any]:
    try:
        usage = run.meta.usage
    except Exception:  # a run without a readable run.json has no recorded spend to subtract
        return {}
    return dict(usage) if isinstance(usage, dict) else {}


def _charge(tally: Tally, usage: dict[str, Any]) -> None:
    tally.prompt_tokens += int(usage.get("prompt_tokens", 0) or 0)
    tally.completion_tokens += int(usage.get("completion_tokens", 0) or 0)
    tally.cost_usd += float(usage.get("cost_usd", 0.0) or 0.0)
