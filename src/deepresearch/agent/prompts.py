"""The agent's model-facing text: the system prompts (English and Chinese), the forced-final,
continuation and nudge prompts, the loop guards' replies and the guided strategy's prompts, all Jinja
files under ``prompts/`` (the tool-call formats live in ``llm/prompts/``, the tools' descriptions in
``tools/prompts/``).

Templates render with ``StrictUndefined`` so a missing variable is an error at render time, not a
silently empty date in a prompt.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from deepresearch.templates import render_prompt

Language = Literal["en", "zh"]
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def render(name: str, /, **variables: Any) -> str:
    """Render ``prompts/<name>`` with ``variables``; unknown variables raise."""
    return render_prompt("deepresearch.agent", name, variables)


def detect_language(text: str) -> Language:
    """``zh`` when Chinese characters make up a fair share of the letters in ``text``, else ``en``."""
    cjk = len(_CJK.findall(text))
    letters = sum(1 for ch in text if ch.isalpha())
    return "zh" if cjk and cjk >= 0.2 * max(letters, 1) else "en"


_LANGUAGE_NAMES = {"en": "English", "zh": "中文"}


def language_of(setting: str, question: str) -> str:
    """The run's language: the ``language`` setting, or the question's when it is ``auto``."""
    return setting if setting != "auto" else detect_language(question)


def system_prompt(language: str, today: str, *, small: bool = False) -> str:
    """The system prompt; ``small`` is the short one for models on this machine (the full one took
    ~3.6k of an 8k window and a 135M model follows a short list better than a long essay)."""
    name = f"system_small_{language}.j2" if small else f"system_{language}.j2"
    return render(name, date=today, language_name=_LANGUAGE_NAMES[language])
