"""Reasoning split out of ``<think>`` tags."""

from __future__ import annotations

import pytest

from deepresearch.llm.reasoning import join_reasoning, split_reasoning


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>plan</think>answer", ("plan", "answer")),
        ("\n  <think>\nplan\n</think>\n\nanswer\n", ("plan", "answer\n")),
        ("<think>\n\n</think>\n\nanswer", (None, "answer")),  # an empty think block (thinking off)
        ("<think>cut off by the limit", ("cut off by the limit", "")),
        ("<think>", (None, "")),
        ("plan only</think>answer", ("plan only", "answer")),  # the template opened the block
        ("plain answer", (None, "plain answer")),
        ("", (None, "")),
        ("See <think>inline</think> tags.", (None, "See <think>inline</think> tags.")),
        ("  keep leading space", (None, "  keep leading space")),
    ],
)
def test_split_reasoning(text: str, expected: tuple[str | None, str]) -> None:
    assert split_reasoning(text) == expected


def test_join_reasoning() -> None:
    assert join_reasoning("a", "b") == "a\n\nb"
    assert join_reasoning("a", None) == "a"
    assert join_reasoning(None, "b") == "b"
    assert join_reasoning("", None) is None
