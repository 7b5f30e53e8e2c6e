"""Model-facing text: the system prompts (English and Chinese), the forced-final and continuation
prompts, and the text-mode tool-call instructions, all kept as Jinja files under ``prompts/``.

Templates render with ``StrictUndefined`` so a missing variable is an error at render time, not a
silently empty date in a prompt.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any, Literal

import jinja2

Language = Literal["en", "zh"]
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("deepresearch.agent", "prompts"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        autoescape=False,
    )


def render(name: str, **variables: Any) -> str:
    """Render ``prompts/<name>`` with ``variables``; unknown variables raise."""
    return _environment().get_template(name).render(**variables).strip()


def detect_language(text: str) -> Language:
    """``zh`` when Chinese characters make up a fair share of the letters in ``text``, else ``en``."""
    cjk = len(_CJK.findall(text))
    letters = sum(1 for ch in text if ch.isalpha())
    return "zh" if cjk and cjk >= 0.2 * max(letters, 1) else "en"
