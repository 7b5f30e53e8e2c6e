"""Cut long text where a reader would, and keep the whole of it in the workspace.

Every tool result the model sees has a size budget. Rather than lose what does not fit, the full text
is written into the run's ``workspace/`` and the truncated text ends with a marker telling the model
the path and the offset from which ``file(action="read")`` pages it back — the report's
"summary-aware local storage" in its extractive form.
"""

from __future__ import annotations

import re
from pathlib import Path

from deepresearch.tools.workspace import write_text

_SENTENCE_END = re.compile(r"[.!?。！？;；](?=\s|$)|\n")


def cut_point(text: str, limit: int, min_ratio: float = 0.8) -> int:
    """Where to cut ``text`` to at most ``limit`` characters: the last paragraph break, else the last
    sentence end, after ``min_ratio * limit``; else exactly ``limit``."""
    if len(text) <= limit:
        return len(text)
    floor = int(limit * min_ratio)
    window = text[:limit]
    para = window.rfind("\n\n")
    if para >= floor:
        return para
    best = -1
    for match in _SENTENCE_END.finditer(window, floor):
        best = match.end()
    return best if best >= floor else limit


def truncate(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut at a natural boundary within ``limit`` characters, and whether anything was cut."""
    end = cut_point(text, limit)
    return (text, False) if end >= len(text) else (text[:end].rstrip(), True)


def offload(text: str, workspace: Path, relpath: str) -> str:
    """Write ``text`` to ``workspace/relpath`` (creating folders, beneath the workspace's descriptor:
    a folder the shell swapped for a link cannot redirect it) and return ``relpath``."""
    write_text(workspace, relpath, text)
    return relpath


def clip(text: str, limit: int, workspace: Path, relpath: str) -> tuple[str, bool]:
    """``text`` within ``limit`` characters; when cut, the full text goes to ``relpath`` and the result
    ends with a marker naming it. Returns the text and whether it was cut."""
    shown, cut = truncate(text, limit)
    if not cut:
        return text, False
    offload(text, workspace, relpath)
    return shown + truncation_marker(len(shown), len(text), relpath), True


def truncation_marker(shown: int, total: int, relpath: str) -> str:
    return (
        f"\n… [truncated: showing {shown} of {total} characters; the full text is in the workspace at "
        f'{relpath} — read more with file(action="read", path="{relpath}", offset={shown})]'
    )
