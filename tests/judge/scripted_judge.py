"""A scripted judge for ``FakeOpenAI``: it answers grading requests by the criterion text they carry.

Keying on the criterion (not on the order of requests) keeps tests deterministic while the grader
sends calls concurrently. Each criterion has a list of answers consumed one per request that
asks about it (the last one repeats): a verdict label, ``raw(text)`` for literal reply text,
``OMIT``/``GARBLE`` to leave an item out of (or spoil it in) a batch answer, or a ``Reply`` (delays).

The kind of a request is read from the prompt's structure (``<report_part>`` for chunk evidence,
``<collected_evidence`` for synthesis, ``<criterion index=`` for a batch, ``<criterion>`` for one
rubric), so these tests follow the templates in ``judge/prompts/``.
"""

from __future__ import annotations

import json
import re
import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tests.fakes.openai_server import Reply

OMIT = "<omit>"
GARBLE = "<garble>"
_SINGLE = re.compile(r"<criterion>\n(.*?)\n</criterion>", re.DOTALL)
_INDEXED = re.compile(r'<criterion index="(\d+)"[^>]*>\n(.*?)\n</criterion>', re.DOTALL)
_PART = re.compile(r"<report_part>\n(.*?)\n</report_part>", re.DOTALL)
_SCORES = {
    "satisfied": 1,
    "partially": 0.5,
    "not_satisfied": 0,
    "present": 1,
    "partially_present": 0.5,
    "absent": 0,
}


@dataclass(frozen=True)
class Raw:
    text: str


def raw(text: str) -> Raw:
    return Raw(text)


Answer = str | Raw | Reply


def first_user(request: dict[str, Any]) -> str:
    return str(request["messages"][0]["content"])


def kind_of(request: dict[str, Any]) -> str:
    """``chunk``, ``synthesis``, ``batch`` or ``single``."""
    text = first_user(request)
    if "<report_part>" in text:
        return "chunk"
    if "<collected_evidence" in text:
        return "synthesis"
    if '<criterion index="' in text:
        return "batch"
    return "single"


def criteria_of(request: dict[str, Any]) -> list[str]:
    text = first_user(request)
    if kind_of(request) == "single":
        return _SINGLE.findall(text)
    return [criterion for _, criterion in _INDEXED.findall(text)]


def verdict_object(label: str, **extra: Any) -> dict[str, Any]:
    return {
        "verdict": label,
        "score": _SCORES.get(label.lower().replace(" ", "_"), 0),
        "confidence": 0.9,
        "reasoning": f"scripted: {label}",
        "evidence": ["a scripted quote"],
        **extra,
    }


class ScriptedJudge:
    """Set it as ``fake_llm.script``."""

    def __init__(self, answers: Mapping[str, list[Answer] | Answer], default: Answer = "satisfied") -> None:
        self.answers = {key: value if isinstance(value, list) else [value] for key, value in answers.items()}
        self.default = default
        self.asked: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def next_answer(self, criterion: str) -> Answer:
        with self._lock:
            sequence = self.answers.get(criterion, [self.default])
            number = self.asked[criterion]
            self.asked[criterion] += 1
        return sequence[min(number, len(sequence) - 1)]

    def __call__(self, request: dict[str, Any]) -> Reply:
        kind = kind_of(request)
        if kind == "chunk":
            return self._evidence(request)
        if kind == "single":
            (criterion,) = criteria_of(request)
            answer = self.next_answer(criterion)
            if isinstance(answer, Reply):
                return answer
            if isinstance(answer, Raw):
                return Reply(content=answer.text)
            return Reply(content=json.dumps(verdict_object(answer)))
        results: list[dict[str, Any]] = []
        for index, criterion in _INDEXED.findall(first_user(request)):
            answer = self.next_answer(criterion)
            if answer == OMIT:
                continue
            if answer == GARBLE or not isinstance(answer, str):
                results.append({"index": int(index), "verdict": "???"})
                continue
            results.append({"index": int(index), **verdict_object(answer)})
        return Reply(content="```json\n" + json.dumps({"results": results}) + "\n```")

    def _evidence(self, request: dict[str, Any]) -> Reply:
        text = first_user(request)
        part = _PART.search(text)
        first_line = part.group(1).splitlines()[0] if part else ""
        evidence = [
            {"index": int(index), "quotes": [first_line], "note": f"seen: {criterion[:20]}"}
            for index, criterion in _INDEXED.findall(text)
        ]
        return Reply(content=json.dumps({"evidence": evidence}))
