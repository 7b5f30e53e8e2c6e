"""Separating a model's reasoning from its answer when the server leaves ``<think>`` tags in the text.

Servers that know the model put its chain of thought in a ``reasoning_content`` (or ``reasoning``)
field; servers that do not (a plain vLLM or llama.cpp launch of a thinking model) leave it in the
content as ``<think>…</think>``. The agent must not treat that text as the answer or the report, so
both parse paths of the client run the content through ``split_reasoning``.
"""

from __future__ import annotations

_OPEN = "<think>"
_CLOSE = "</think>"


def split_reasoning(text: str) -> tuple[str | None, str]:
    """``(reasoning, content)`` from ``text``; reasoning is ``None`` when there is none.

    Recognised shapes:

    - ``<think>R</think>C`` at the start (leading whitespace allowed) gives ``(R, C)``;
    - an unclosed ``<think>R`` at the start means the whole reply is reasoning (the output limit cut
      it, or the model never finished thinking): ``(R, "")``;
    - ``R</think>C`` with no opening tag — chat templates such as DeepSeek-R1's and Qwen3's put
      ``<think>`` in the prompt, so only the closing tag reaches the reply: ``(R, C)``.

    Anything else is returned unchanged as content, including think tags in the middle of the text.
    """
    stripped = text.lstrip()
    if stripped.startswith(_OPEN):
        body = stripped[len(_OPEN) :]
        end = body.find(_CLOSE)
        if end == -1:
            return body.strip() or None, ""
        return body[:end].strip() or None, body[end + len(_CLOSE) :].lstrip()
    end = text.find(_CLOSE)
    if end != -1 and _OPEN not in text[:end]:
        return text[:end].strip() or None, text[end + len(_CLOSE) :].lstrip()
    return None, text


def join_reasoning(first: str | None, second: str | None) -> str | None:
    """Both pieces of reasoning, in order, separated by a blank line (``None`` when both are empty)."""
    if first and second:
        return f"{first}\n\n{second}"
    return first or second or None
