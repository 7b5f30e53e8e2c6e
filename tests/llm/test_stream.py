"""SSE decoding and reply assembly, without a socket."""

from __future__ import annotations

from typing import Any

import pytest

from deepresearch.errors import LLMBadResponse, LLMError
from deepresearch.llm.stream import DONE, SSEDecoder, StreamAccumulator, prompt_progress, read_body


def decode(lines: list[str]) -> list[Any]:
    decoder = SSEDecoder()
    events = [event for line in lines if (event := decoder.feed(line)) is not None]
    tail = decoder.flush()
    return events if tail is None else [*events, tail]


def chunk(finish_reason: str | None = None, **delta: Any) -> dict[str, Any]:
    return {"model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


def test_decoder_handles_every_line_kind() -> None:
    lines = [
        ": keep-alive comment",
        "event: message",
        "id: 7",
        "retry: 1000",
        'data: {"a": 1}',
        "",
        'data:{"b": 2}',  # no space after the colon
        "",
        'data: {"c":',  # one event split over two data lines
        "data: 3}",
        "",
        "data: [DONE]",
        "",
    ]
    assert decode(lines) == [{"a": 1}, {"b": 2}, {"c": 3}, DONE]


def test_decoder_without_blank_lines_and_without_final_newline() -> None:
    assert decode(['data: {"a": 1}', 'data: {"b": 2}']) == [{"a": 1}, {"b": 2}]
    assert decode(['data: {"a": ', "data: 1}"]) == [{"a": 1}]  # flushed at the end of the stream


def test_decoder_rejects_garbage() -> None:
    decoder = SSEDecoder()
    assert decoder.feed("data: {not json") is None
    with pytest.raises(LLMBadResponse, match="unparsable"):
        decoder.feed("")


def test_accumulator_merges_tool_calls_by_index() -> None:
    accumulator = StreamAccumulator()
    # Some servers repeat id, type and name in every delta: they must not be concatenated.
    head = {"id": "call_a", "type": "function", "function": {"name": "search", "arguments": '{"q": '}}
    accumulator.feed(chunk(role="assistant", tool_calls=[{"index": 0, **head}]))
    accumulator.feed(
        chunk(tool_calls=[{"index": 1, "id": "call_b", "function": {"name": "todo", "arguments": ""}}])
    )
    accumulator.feed(
        chunk(tool_calls=[{"index": 0, **head, "function": {"name": "search", "arguments": '"x"}'}}])
    )
    accumulator.feed(chunk(tool_calls=[{"index": 1, "function": {"arguments": '{"updates"'}}]))
    accumulator.feed(chunk(tool_calls=[{"index": 1, "function": {"arguments": ": {}}"}}]))
    accumulator.feed(chunk(finish_reason="tool_calls"))
    accumulator.feed({"model": "m", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 6}})

    reply = accumulator.result()

    assert [(c.id, c.name, c.arguments) for c in reply.tool_calls] == [
        ("call_a", "search", '{"q": "x"}'),
        ("call_b", "todo", '{"updates": {}}'),
    ]
    assert reply.finish_reason == "tool_calls"
    assert reply.usage == {"prompt_tokens": 5, "completion_tokens": 6}
    assert reply.model == "m"


def test_accumulator_tool_calls_without_index() -> None:
    accumulator = StreamAccumulator()
    accumulator.feed(chunk(tool_calls=[{"id": "c1", "function": {"name": "a", "arguments": "{"}}]))
    accumulator.feed(chunk(tool_calls=[{"function": {"arguments": "}"}}]))
    accumulator.feed(chunk(tool_calls=[{"id": "c2", "function": {"name": "b", "arguments": {"k": 1}}}]))

    calls = accumulator.result().tool_calls

    assert [(c.id, c.name, c.arguments) for c in calls] == [("c1", "a", "{}"), ("c2", "b", '{"k":1}')]


def test_accumulator_text_reasoning_and_other_choices() -> None:
    accumulator = StreamAccumulator()
    accumulator.feed(chunk(role="assistant", reasoning_content="Think", content=None))
    accumulator.feed(chunk(reasoning="ing."))
    accumulator.feed(chunk(content="An"))
    accumulator.feed({"choices": [{"index": 1, "delta": {"content": "IGNORED"}}]})
    accumulator.feed(chunk(content="swer", finish_reason="length"))

    reply = accumulator.result()

    assert (reply.reasoning, reply.content, reply.finish_reason) == ("Thinking.", "Answer", "length")
    assert reply.tool_calls == [] and reply.usage is None


def test_missing_tool_call_ids_are_generated_and_unique() -> None:
    accumulator = StreamAccumulator()
    accumulator.feed(chunk(tool_calls=[{"index": 0, "function": {"name": "a", "arguments": "{}"}}]))
    accumulator.feed(chunk(tool_calls=[{"index": 1, "function": {"name": "b", "arguments": "{}"}}]))

    ids = [call.id for call in accumulator.result().tool_calls]

    assert all(i.startswith("call_") for i in ids) and len(set(ids)) == 2


def test_error_inside_a_stream() -> None:
    with pytest.raises(LLMBadResponse, match="overloaded"):
        StreamAccumulator().feed({"error": {"message": "overloaded", "code": 503}})
    with pytest.raises(LLMError, match="context length") as caught:
        StreamAccumulator().feed({"error": {"message": "context length exceeded", "code": 400}})
    assert type(caught.value) is LLMError and caught.value.status == 400
    with pytest.raises(LLMBadResponse):
        StreamAccumulator().feed(["not", "an", "object"])


def test_read_body() -> None:
    body = {
        "model": "m-2024",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "reasoning": "Because.",
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "a", "arguments": '{"x": 1}'}},
                        {"type": "function", "function": {"name": "b", "arguments": {"y": 2}}},
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2},
    }

    reply = read_body(body)

    assert (reply.content, reply.reasoning, reply.finish_reason, reply.model) == (
        "",
        "Because.",
        "tool_calls",
        "m-2024",
    )
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [("a", '{"x": 1}'), ("b", '{"y":2}')]
    assert reply.tool_calls[0].id == "c1" and reply.tool_calls[1].id.startswith("call_")
    assert reply.usage == {"prompt_tokens": 1, "completion_tokens": 2}


def test_read_body_content_parts_and_bad_shapes() -> None:
    parts = {
        "choices": [{"message": {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}}]
    }
    assert read_body(parts).content == "ab"
    bad: Any
    for bad in ({}, {"choices": []}, {"choices": "x"}, [], "text"):
        with pytest.raises(LLMBadResponse):
            read_body(bad)
    with pytest.raises(LLMBadResponse, match="quota"):
        read_body({"error": {"message": "quota exceeded"}})


def test_prompt_progress_is_read_from_llama_cpp_chunks() -> None:
    def progress(**fields: Any) -> dict[str, Any]:
        return {**chunk(role="assistant", content=None), "prompt_progress": fields}

    assert prompt_progress(progress(total=3600, cache=1000, processed=1200, time_ms=9)) == (1200, 3600)
    assert prompt_progress(progress(total=3600, cache=3599, processed=3600)) == (3600, 3600)
    assert prompt_progress(progress(total=10, processed=12)) == (10, 10)  # never past the total
    for wrong in (
        chunk(content="no progress here"),
        progress(total=0, processed=0),
        progress(total="3600", processed=1),
        progress(total=3600, processed=-1),
        progress(total=3600, processed=True),
        progress(total=3600),
        {"prompt_progress": [1, 2]},
        "not a chunk",
    ):
        assert prompt_progress(wrong) is None, wrong
    accumulator = StreamAccumulator()  # the chunks that carry progress assemble like any other
    accumulator.feed(progress(total=5, processed=5))
    accumulator.feed(chunk(content="ok", finish_reason="stop"))
    assert accumulator.result().content == "ok"
