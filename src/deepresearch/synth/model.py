"""The model a pipeline talks to: one prompt in, text or a checked JSON object out, every call tallied.

Prompts are ours, one template per step and language (``synth/prompts/<name>_<lang>.j2``, ``lang`` is
``en`` or ``zh``), rendered with ``StrictUndefined``. A JSON reply is asked for with a schema (a
server that supports ``response_format`` is held to it; the embedded model of ``--model local`` is
constrained by its grammar) and read tolerantly (fences, prose around it, small syntax slips through
``json_repair``); when it still does not parse, or ``check`` finds problems, the model is asked once
more with the problems listed. A reply that fails twice raises ``BadReply``: the pipeline turns that
into a dropped item with a reason, never a crash. ``LLMError`` (the endpoint failed after the client's
own retries) propagates, so the engine leaves the item undecided and a rerun tries it again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal

import json_repair

from deepresearch.llm.client import ChatClient
from deepresearch.synth.engine import Tally
from deepresearch.templates import render_prompt

Language = Literal["en", "zh"]
Check = Callable[[dict[str, Any]], list[str]]
"""Problems with a parsed reply (empty when it is usable)."""

_FENCE = re.compile(r"```(?:json)?\s*\n(.*?)```", re.DOTALL)
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


class BadReply(ValueError):
    """The model's reply could not be used after a retry; ``str()`` says why."""


def language_of(text: str) -> Language:
    """``zh`` when at least a fifth of the letters are CJK, else ``en``."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return "en"
    return "zh" if sum(1 for c in letters if _CJK.match(c)) * 5 >= len(letters) else "en"


def prompt(name: str, language: Language, /, **variables: Any) -> str:
    """``synth/prompts/<name>_<language>.j2`` rendered with ``variables``."""
    return render_prompt("deepresearch.synth", f"{name}_{language}.j2", variables, trim_blocks=True)


class Model:
    """A chat client with a tally: ``text`` and ``json`` calls for the pipelines."""

    def __init__(self, client: ChatClient, tally: Tally, *, temperature: float | None = None) -> None:
        self.client = client
        self.tally = tally
        self.sampling = {"temperature": temperature} if temperature is not None else None

    async def text(self, content: str, *, system: str | None = None) -> str:
        messages: list[dict[str, Any]] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": content})
        completion = await self.client.complete(messages, sampling=self.sampling)
        self._charge(completion.usage)
        return completion.content.strip()

    async def json(
        self,
        content: str,
        schema: Mapping[str, Any],
        *,
        check: Check | None = None,
        system: str | None = None,
    ) -> dict[str, Any]:
        """A JSON object answering ``content``; one retry with the problems listed, then ``BadReply``."""
        messages: list[dict[str, Any]] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": content})
        problems: list[str] = []
        for attempt in range(2):
            completion = await self.client.complete(
                messages,
                schema=dict(schema),
                sampling=self.sampling,
            )
            self._charge(completion.usage)
            data = parse_object(completion.content)
            problems = (
                ["the reply is not one JSON object"] if data is None else (check(data) if check else [])
            )
            if data is not None and not problems:
                return data
            if attempt == 0:
                messages += [
                    {"role": "assistant", "content": completion.content},
                    {
                        "role": "user",
                        "content": "That reply cannot be used: "
                        + "; ".join(problems)
                        + ". Answer again with one JSON object that fixes this, and nothing else.",
                    },
                ]
        raise BadReply("; ".join(problems))

    def _charge(self, usage: Any) -> None:
        self.tally.calls += 1
        self.tally.prompt_tokens += usage.prompt_tokens
        self.tally.completion_tokens += usage.completion_tokens
        self.tally.cost_usd += usage.cost_usd


def parse_object(text: str) -> dict[str, Any] | None:
    """The JSON object in ``text`` (bare, fenced, or inside prose), repaired when slightly broken."""
    candidates = [match.group(1) for match in _FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        candidates.append(text[start : end + 1])
    candidates.append(text)
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError:
            try:
                value = json_repair.loads(candidate)
            except Exception:  # json_repair raises assorted errors on hopeless input
                continue
        if isinstance(value, dict) and value:
            return value
    return None


def require(data: Mapping[str, Any], **fields: type | tuple[type, ...]) -> list[str]:
    """Problems with ``data``'s fields: each named field present, non-empty and of the given type."""
    problems = []
    for name, kind in fields.items():
        value = data.get(name)
        if value is None or (isinstance(value, str | list | dict) and not value):
            problems.append(f'"{name}" is missing or empty')
        elif not isinstance(value, kind):
            expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            problems.append(f'"{name}" must be a {expected}')
    return problems
