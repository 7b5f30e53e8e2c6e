"""deepresearch: a single ReAct research agent that writes long reports with verifiable citations.

    import asyncio
    from deepresearch import load_settings, research

    result = asyncio.run(research("Question?", load_settings({"base_url": ..., "model": ...})))
    print(result.report)

Names are imported on first use, so ``import deepresearch`` (and the CLI's start) stays fast.
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import TYPE_CHECKING, Any

# httpx imports its command-line client, and with it click, pygments and rich (~100 modules, ~6 MB
# resident), whenever those are installed, which ours are. Nothing in this process runs httpx's
# command line (its own ``httpx`` script is another process), so that one import is blocked: a
# ``None`` entry makes it raise ImportError, which httpx answers with a stub ``main``.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

if TYPE_CHECKING:
    from deepresearch.config import Settings, load_settings
    from deepresearch.delivery import RunResult
    from deepresearch.errors import DeepResearchError
    from deepresearch.research import research, resume

__all__ = ["DeepResearchError", "RunResult", "Settings", "load_settings", "research", "resume"]

_WHERE = {
    "DeepResearchError": "deepresearch.errors",
    "RunResult": "deepresearch.delivery",
    "Settings": "deepresearch.config",
    "load_settings": "deepresearch.config",
    "research": "deepresearch.research",
    "resume": "deepresearch.research",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'deepresearch' has no attribute {name!r}")
