"""`train format`: chat samples rendered through a chat template with the loss on the assistant's
tokens only, stage I text trained whole, packing that keeps documents apart, and bad lines reported.

The tokenizer is a byte-level BPE trained here on a few strings (so every text round-trips), with a
Qwen-style chat template written for this test; nothing comes from the hub.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

from deepresearch.train.format import (
    IGNORE,
    FormatError,
    Rendered,
    format_file,
    load_tokenizer,
    pack,
    render,
    render_text,
    show,
)
from tests.train.tiny import TEMPLATE, TOOLS, tiny_tokenizer

CALL: dict[str, Any] = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "search", "arguments": json.dumps({"query": "tidal power Wales"})},
}

MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a careful researcher."},
    {"role": "user", "content": "How much power do tidal lagoons make?"},
    {
        "role": "assistant",
        "content": "Let me look that up.",
        "reasoning_content": "I should search for lagoon output figures.",
        "tool_calls": [CALL],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "Swansea lagoon: 320 MW planned capacity."},
    {"role": "assistant", "content": "About 320 MW for the Swansea design [1]."},
]


@pytest.fixture
def tokenizer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    corpus = [json.dumps(MESSAGES), json.dumps(TOOLS), "The quick brown fox jumps over the lazy dog."]
    wrapped = tiny_tokenizer(corpus, vocab_size=400)
    # through a saved folder, as `train format --tokenizer PATH` loads it
    wrapped.save_pretrained(tmp_path / "tok")
    return load_tokenizer(tmp_path / "tok")


def trained_spans(rendered: Rendered, tokenizer: Any) -> list[str]:
    """The trained stretches of a sample, decoded, in order."""
    spans: list[list[int]] = []
    previous = False
    for token, label in zip(rendered.input_ids, rendered.labels, strict=True):
        trained = label != IGNORE
        if trained and not previous:
            spans.append([])
        if trained:
            assert label == token
            spans[-1].append(token)
        previous = trained
    return [tokenizer.decode(span, skip_special_tokens=False) for span in spans]


def masked_text(rendered: Rendered, tokenizer: Any) -> str:
    ids = [t for t, label in zip(rendered.input_ids, rendered.labels, strict=True) if label == IGNORE]
    return str(tokenizer.decode(ids, skip_special_tokens=False))


def test_only_the_assistant_turns_are_trained(tokenizer: Any) -> None:
    rendered = render(tokenizer, MESSAGES, TOOLS)

    call_json = json.dumps({"name": "search", "arguments": {"query": "tidal power Wales"}})
    assert trained_spans(rendered, tokenizer) == [
        "<think>\nI should search for lagoon output figures.\n</think>\n\n"
        f"Let me look that up.\n<tool_call>\n{call_json}\n</tool_call><|im_end|>",
        "About 320 MW for the Swansea design [1].<|im_end|>",
    ]
    masked = masked_text(rendered, tokenizer)
    for text in (
        "You are a careful researcher.",
        "How much power",
        "Swansea lagoon: 320 MW",
        '"description"',
    ):
        assert text in masked
    # the turn header comes from the prompt, not the model
    assert masked.count("<|im_start|>assistant\n") == 2
    # the whole sequence is exactly the template's rendering
    as_objects = {**CALL, "function": {"name": "search", "arguments": {"query": "tidal power Wales"}}}
    hf_messages = [{**m, "tool_calls": [as_objects]} if m.get("tool_calls") else m for m in MESSAGES]
    text = tokenizer.apply_chat_template(hf_messages, tools=TOOLS, tokenize=False)
    assert tokenizer.decode(rendered.input_ids, skip_special_tokens=False) == text


def test_tool_calls_round_trip_through_the_trained_text(tokenizer: Any) -> None:
    rendered = render(tokenizer, MESSAGES, TOOLS)
    trained = "".join(trained_spans(rendered, tokenizer))

    found = [json.loads(body) for body in re.findall(r"<tool_call>\n(.*?)\n</tool_call>", trained, re.S)]

    assert found == [{"name": "search", "arguments": json.loads(CALL["function"]["arguments"])}]


def test_a_template_that_rewrites_earlier_turns_is_refused(tokenizer: Any) -> None:
    # drops the reasoning of every assistant turn but the last, as some templates do
    tokenizer.chat_template = TEMPLATE.replace(
        "{% if message.reasoning_content %}", "{% if message.reasoning_content and loop.last %}"
    )
    messages = [*MESSAGES[:3], MESSAGES[3], {**MESSAGES[4], "reasoning_content": "Enough."}]

    with pytest.raises(FormatError, match=r"messages\[2\]"):
        render(tokenizer, messages, TOOLS)


def test_stage_one_text_is_trained_whole(tokenizer: Any) -> None:
    rendered = render_text(tokenizer, "The quick brown fox.\n")

    assert rendered.labels == rendered.input_ids
    assert rendered.input_ids[-1] == tokenizer.eos_token_id
    assert (
        tokenizer.decode(rendered.input_ids, skip_special_tokens=False) == "The quick brown fox.\n<|im_end|>"
    )


def sample(length: int, start: int) -> Rendered:
    ids = list(range(start, start + length))
    return Rendered(input_ids=ids, labels=[IGNORE, *ids[1:]])


def test_packing_keeps_documents_apart_within_the_length() -> None:
    samples = [sample(6, 100), sample(3, 200), sample(5, 300), sample(12, 400), sample(1, 500)]

    packs = pack(samples, 8)

    assert all(len(p.input_ids) <= 8 for p in packs)
    assert [p.seq_lens for p in packs] == [[6, 1], [3, 5], [8]]
    first = packs[0]
    assert first.position_ids == [0, 1, 2, 3, 4, 5, 0]
    assert first.input_ids == [*range(100, 106), 500]
    assert first.labels == [IGNORE, *range(101, 106), IGNORE]
    # every document's tokens stay together and in order
    for p in packs:
        starts = [i for i, position in enumerate(p.position_ids) if position == 0]
        assert [b - a for a, b in zip(starts, [*starts[1:], len(p.input_ids)], strict=True)] == p.seq_lens
    assert [p.truncated for p in packs] == [0, 0, 1]
    assert pack(samples, 8) == packs


def test_format_file_packs_valid_lines_and_reports_the_rest(tokenizer: Any, tmp_path: Path) -> None:
    unanswered = [*MESSAGES[:3], {"role": "assistant", "content": "Done."}]
    lines = [
        json.dumps({"messages": MESSAGES, "tools": TOOLS, "meta": {"run_id": "r1"}}),
        "{not json",
        json.dumps({"messages": unanswered, "tools": TOOLS, "meta": {}}),
        json.dumps({"messages": MESSAGES, "tools": [], "meta": {}}),
        json.dumps({"stage": 1, "kind": "report", "text": "The quick brown fox.\n"}),
        json.dumps({"stage": 2, "messages": MESSAGES, "tools": TOOLS}),
        "",
    ]
    data = tmp_path / "midtrain.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "packed.jsonl"

    report = format_file(data, tokenizer, max_length=4096, out=out)

    assert report.samples == 3
    assert report.stages == {"sft": 1, "stage1": 1, "stage2": 1}
    assert [item.line for item in report.skipped] == [2, 3, 4]
    assert "not JSON" in str(report.skipped[0])
    assert "never answered" in str(report.skipped[1])
    assert "which the tools do not offer" in str(report.skipped[2])
    packed = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(packed) == report.packs == 1
    assert len(packed[0]["seq_lens"]) == 3
    assert sum(label != IGNORE for label in packed[0]["labels"]) == report.trained_tokens
    starts = [i for i, position in enumerate(packed[0]["position_ids"]) if position == 0]
    assert len(starts) == 3
    assert all(packed[0]["labels"][i] == IGNORE for i in starts)
    # file order: the SFT sample, the stage 1 text (trained after its first token), the stage 2 sample
    text = slice(starts[1] + 1, starts[2])
    assert packed[0]["labels"][text] == packed[0]["input_ids"][text]
    assert "3 lines skipped" in report.describe()

    only_text = format_file(data, tokenizer, max_length=4096, stage=1)
    assert only_text.stages == {"stage1": 1}
    short = format_file(data, tokenizer, max_length=16)
    assert short.truncated == 2


def test_show_marks_the_trained_stretches(tokenizer: Any) -> None:
    view = show(render(tokenizer, MESSAGES, TOOLS), tokenizer)

    assert "[[About 320 MW for the Swansea design [1].<|im_end|>]]" in view
    assert "<|im_start|>tool\nSwansea lagoon: 320 MW planned capacity.<|im_end|>" in view
    assert "[[<|im_start|>tool" not in view


def test_characters_split_across_byte_tokens_keep_the_mask_exact(tokenizer: Any) -> None:
    # a byte-level tokenizer writes each of these characters as several tokens with the same offsets
    messages = [
        {"role": "user", "content": "潮汐能有多少？🌊"},
        {"role": "assistant", "content": "约 320 兆瓦。🌊", "reasoning_content": "查一下。"},
    ]

    rendered = render(tokenizer, messages, None)

    assert trained_spans(rendered, tokenizer) == ["<think>\n查一下。\n</think>\n\n约 320 兆瓦。🌊<|im_end|>"]
    assert "潮汐能有多少？🌊" in masked_text(rendered, tokenizer)


def test_the_cli_formats_a_file_shows_samples_and_fails_on_nothing(tokenizer: Any, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from deepresearch.cli import app

    folder = tmp_path / "tok"  # where the fixture saved the tokenizer
    data = tmp_path / "sft.jsonl"
    data.write_text(json.dumps({"messages": MESSAGES, "tools": TOOLS, "meta": {}}) + "\n", encoding="utf-8")
    out = tmp_path / "packed.jsonl"
    args = ["train", "format", "--data", str(data), "--tokenizer", str(folder), "--max-length", "4096"]
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--show", "1"])
    assert result.exit_code == 0, result.output
    assert "[[" in result.stdout and "trained" in result.stdout
    assert len(out.read_text(encoding="utf-8").splitlines()) == 1
    empty = tmp_path / "empty.jsonl"
    empty.write_text("{not json\n", encoding="utf-8")
    nothing = CliRunner().invoke(
        app, ["train", "format", "--data", str(empty), "--tokenizer", str(folder), "--max-length", "64"]
    )
    assert nothing.exit_code == 1 and "no sample" in nothing.output
    missing = CliRunner().invoke(
        app, [*args[:4], "--tokenizer", str(tmp_path / "nope"), "--max-length", "64"]
    )
    assert missing.exit_code == 1 and "error:" in missing.output
