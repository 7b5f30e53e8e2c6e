"""Curated records as token ids with loss masks, packed to a target length: what `train format` writes.

A chat sample (``sft.jsonl``, or a stage II line of ``midtrain.jsonl``) is rendered through the model's
own chat template, with the tool schemas and the tool calls, and the loss falls on the assistant's
tokens only: its reasoning, its content, its tool calls and the token that ends its turn. System, user
and tool-result tokens are masked, and so is the header that opens an assistant turn (the prompt gives
it; the model does not write it). A stage I line is plain text, trained on every token.

The mask comes from the template itself rather than from knowing its markup: the conversation is
rendered prefix by prefix, and the tokens an assistant message adds are the ones it is trained on. That
works for any template that renders a conversation left to right; one that rewrites earlier turns
(some drop old reasoning once a new user turn arrives) cannot be masked this way, and `render` says
at which message it stopped being a prefix instead of training on a wrong mask.

transformers is imported inside the functions that need it: the module imports without the ``train``
extra, so the CLI can list its commands on a core install.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepresearch.curate.export import validate_chat

IGNORE = -100
"""The label of a masked token (what PyTorch's cross-entropy and HF models skip)."""


class FormatError(Exception):
    """A sample the chat template cannot render into a trustworthy mask; the message says where."""


@dataclass(frozen=True, slots=True)
class Rendered:
    """One sample as token ids and labels (``IGNORE`` where no loss is taken)."""

    input_ids: list[int]
    labels: list[int]

    @property
    def trained(self) -> int:
        return sum(label != IGNORE for label in self.labels)


@dataclass(frozen=True, slots=True)
class Packed:
    """Samples laid end to end in one training sequence, kept apart as documents.

    ``position_ids`` restart at 0 for every document and ``seq_lens`` gives the documents' lengths in
    order, so a trainer can keep attention inside each one (flash-attention's varlen path reads either).
    ``truncated`` counts the documents cut to fit.
    """

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    seq_lens: list[int]
    truncated: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_ids": self.input_ids,
            "labels": self.labels,
            "position_ids": self.position_ids,
            "seq_lens": self.seq_lens,
        }


@dataclass(frozen=True, slots=True)
class Skipped:
    """A line of the input left out, with why."""

    line: int
    reasons: list[str]

    def __str__(self) -> str:
        return f"line {self.line}: " + "; ".join(self.reasons)


@dataclass(slots=True)
class FormatReport:
    """What `format_file` read, rendered, packed and left out."""

    path: Path
    max_length: int
    samples: int = 0
    packs: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    truncated: int = 0
    stages: dict[str, int] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)

    def describe(self) -> str:
        fill = self.tokens / (self.packs * self.max_length) if self.packs else 0.0
        kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(self.stages.items()))
        lines = [
            f"{self.path}: {self.samples} samples ({kinds or 'none'}) -> {self.packs} sequences of at most "
            f"{self.max_length} tokens ({fill:.0%} full)",
            f"{self.tokens} tokens, {self.trained_tokens} trained; {self.truncated} samples truncated, "
            f"{len(self.skipped)} lines skipped",
        ]
        lines += [f"  skipped {item}" for item in self.skipped]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "max_length": self.max_length,
            "samples": self.samples,
            "packs": self.packs,
            "tokens": self.tokens,
            "trained_tokens": self.trained_tokens,
            "truncated": self.truncated,
            "stages": dict(self.stages),
            "skipped": [{"line": item.line, "reasons": item.reasons} for item in self.skipped],
        }


def load_tokenizer(path: str | Path) -> Any:
    """The tokenizer saved at a local ``path`` (never the hub); it must carry a chat template."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if not getattr(tokenizer, "chat_template", None):
        raise FormatError(f"{path}: the tokenizer has no chat template")
    return tokenizer


def template_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Our messages in the shape HF chat templates read: tool-call arguments as objects (templates
    serialise them themselves), ``reasoning_content`` passed through for the templates that show it."""
    converted: list[dict[str, Any]] = []
    for message in messages:
        out = dict(message)
        if message.get("tool_calls"):
            out["tool_calls"] = [_template_call(call) for call in message["tool_calls"]]
        converted.append(out)
    return converted


def _template_call(call: Mapping[str, Any]) -> dict[str, Any]:
    function = dict(call.get("function") or {})
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            function["arguments"] = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            raise FormatError(f"tool call {call.get('id')!r}: arguments are not JSON ({exc.msg})") from exc
    return {**call, "function": function}


def render(tokenizer: Any, messages: Sequence[Mapping[str, Any]], tools: Sequence[Any] | None) -> Rendered:
    """The conversation through ``tokenizer``'s chat template, trained on the assistant's tokens only.

    Every prefix of the conversation is rendered; each must be the start of the whole rendering and
    end between two of the whole's tokens (the whole's tokens split cleanly there), or `FormatError` names
    the message where that fails. The whole is tokenised once and the prefixes are placed in it by
    character offsets, which keeps a long conversation linear in tokenising. An assistant message is
    trained from the end of the generation prompt before it (where that prompt is itself a prefix) to
    the end of its turn; tokens after the tokenizer's end-of-sequence token inside that stretch (the
    newline many templates put after it) stay masked.
    """
    converted = template_messages(messages)
    schemas = list(tools) if tools else None
    text = chat_text(tokenizer, converted, schemas, generation=False)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    full = list(encoded["input_ids"])
    boundaries = _token_boundaries(encoded["offset_mapping"], len(text))
    labels = [IGNORE] * len(full)
    end_of_turn = getattr(tokenizer, "eos_token_id", None)
    previous = 0
    for index, message in enumerate(converted):
        prefix = (
            text if index + 1 == len(converted) else chat_text(tokenizer, converted[: index + 1], schemas)
        )
        upto = _boundary(text, prefix, boundaries)
        if upto is None:
            raise FormatError(
                f"messages[{index}]: the conversation up to here does not render to a prefix of the whole "
                "(text or token boundary); the chat template rewrites earlier turns, so the mask cannot "
                "be taken from it"
            )
        if message.get("role") == "assistant":
            start = previous
            if index:
                prompt = chat_text(tokenizer, converted[:index], schemas, generation=True)
                header = _boundary(text, prompt, boundaries)
                if header is not None and previous <= header <= upto:
                    start = header
            stop = _end_of_turn(full, start, upto, end_of_turn)
            labels[start:stop] = full[start:stop]
        previous = upto
    return Rendered(input_ids=full, labels=labels)


def render_text(tokenizer: Any, text: str) -> Rendered:
    """Plain text trained on every token, closed with the end-of-sequence token so packed documents
    end the way the model should learn to end them."""
    ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is not None and (not ids or ids[-1] != eos):
        ids.append(eos)
    return Rendered(input_ids=ids, labels=list(ids))


def chat_text(
    tokenizer: Any, messages: list[dict[str, Any]], tools: list[Any] | None, *, generation: bool = False
) -> str:
    try:
        text = tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=generation
        )
    except Exception as exc:  # the template's own error (jinja's, or one it raises), as ours
        raise FormatError(f"the chat template failed on {len(messages)} messages: {exc}") from exc
    if not isinstance(text, str):
        raise FormatError(f"the chat template gave {type(text).__name__}, not text")
    return text


def _token_boundaries(offsets: Sequence[Sequence[int]], length: int) -> dict[int, int]:
    """Character position -> number of tokens before it, for every position no token straddles.

    Byte-level tokenizers split one character into several tokens with the same offsets; the last of
    them closes the character."""
    boundaries = {0: 0}
    for index, (_, end) in enumerate(offsets):
        boundaries[end] = index + 1
    for start, end in offsets:
        for position in range(start + 1, end):
            boundaries.pop(position, None)
    boundaries[length] = len(offsets)  # text a normaliser dropped at the end belongs to no token
    return boundaries


def _boundary(text: str, prefix: str, boundaries: Mapping[int, int]) -> int | None:
    """How many tokens of ``text`` make up ``prefix``; None when it is not a prefix ending between tokens."""
    if not text.startswith(prefix):
        return None
    return boundaries.get(len(prefix))


def _end_of_turn(ids: list[int], start: int, stop: int, eos: int | None) -> int:
    if eos is None:
        return stop
    for position in range(stop - 1, start - 1, -1):
        if ids[position] == eos:
            return position + 1
    return stop


def pack(samples: Iterable[Rendered], max_length: int, *, window: int = 16) -> list[Packed]:
    """Lay ``samples`` into sequences of at most ``max_length`` tokens, first fit over the ``window``
    most recent open sequences (a bounded search keeps it linear; the result depends only on the
    order of the input). A sample longer than ``max_length`` is cut to it and counted in its
    sequence's ``truncated``. The first token of every document gets no label: the models shift labels
    over the whole packed sequence, so it would be learnt from the document before."""
    if max_length < 1:
        raise ValueError("max_length must be at least 1")
    done: list[_Open] = []
    open_: list[_Open] = []
    for sample in samples:
        if not sample.input_ids:
            continue
        cut = len(sample.input_ids) > max_length
        ids, labels = sample.input_ids[:max_length], sample.labels[:max_length]
        target = next((seq for seq in open_ if seq.length + len(ids) <= max_length), None)
        if target is None:
            target = _Open(order=len(done) + len(open_))
            open_.append(target)
            if len(open_) > window:
                done.append(open_.pop(0))
        target.add(ids, labels, cut)
    done += open_
    done.sort(key=lambda seq: seq.order)
    return [seq.packed() for seq in done]


@dataclass(slots=True)
class _Open:
    order: int
    input_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    position_ids: list[int] = field(default_factory=list)
    seq_lens: list[int] = field(default_factory=list)
    truncated: int = 0

    @property
    def length(self) -> int:
        return len(self.input_ids)

    def add(self, ids: list[int], labels: list[int], cut: bool) -> None:
        self.input_ids += ids
        # nothing in the document comes before its first token, and a label there would be predicted
        # from the end of the previous document (HF models shift labels across the whole sequence)
        self.labels += [IGNORE, *labels[1:]]
        self.position_ids += range(len(ids))
        self.seq_lens.append(len(ids))
        self.truncated += cut

    def packed(self) -> Packed:
        return Packed(self.input_ids, self.labels, self.position_ids, self.seq_lens, self.truncated)


def render_record(record: Mapping[str, Any], tokenizer: Any) -> Rendered:
    """One line of ``sft.jsonl`` or ``midtrain.jsonl``: stage I text trained whole, a conversation
    (SFT, stage II) masked. Raises `FormatError` with the reasons when the record is not valid."""
    if record.get("stage") == 1:
        text = record.get("text")
        if not isinstance(text, str) or not text.strip():
            raise FormatError("a stage 1 record without text")
        return render_text(tokenizer, text)
    problems = validate_chat(record)
    if problems:
        raise FormatError("; ".join(problems))
    return render(tokenizer, record["messages"], record.get("tools"))


def stage_of(record: Mapping[str, Any]) -> str:
    """``stage1``, ``stage2`` or ``sft``: the kind a report counts a record under."""
    stage = record.get("stage")
    return f"stage{stage}" if stage in (1, 2) else "sft"


def render_file(
    path: Path, tokenizer: Any, skipped: list[Skipped], *, stage: int | None = None
) -> Iterator[tuple[str, Rendered]]:
    """The rendered samples of a JSONL file with their kind, in file order; lines that do not parse or
    render go to ``skipped``. ``stage`` keeps only the midtrain lines of that stage."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                skipped.append(Skipped(number, [f"not JSON: {exc.msg}"]))
                continue
            if not isinstance(record, dict):
                skipped.append(Skipped(number, ["not a JSON object"]))
                continue
            if stage is not None and record.get("stage") != stage:
                continue
            try:
                rendered = render_record(record, tokenizer)
            except FormatError as exc:
                skipped.append(Skipped(number, [str(exc)]))
                continue
            if not rendered.trained:
                skipped.append(Skipped(number, ["no token is trained"]))
                continue
            yield stage_of(record), rendered


def format_file(
    path: Path, tokenizer: Any, *, max_length: int, out: Path | None = None, stage: int | None = None
) -> FormatReport:
    """Render ``path`` (``sft.jsonl`` or ``midtrain.jsonl``), pack it to ``max_length`` and write the
    sequences to ``out`` (JSONL: ``input_ids``, ``labels``, ``position_ids``, ``seq_lens``), whole or
    not at all (a temporary file moved into place)."""
    report = FormatReport(path=Path(path), max_length=max_length)
    samples: list[Rendered] = []
    for kind, rendered in render_file(Path(path), tokenizer, report.skipped, stage=stage):
        report.stages[kind] = report.stages.get(kind, 0) + 1
        samples.append(rendered)
    packs = pack(samples, max_length)
    report.samples = len(samples)
    report.packs = len(packs)
    report.tokens = sum(len(packed.input_ids) for packed in packs)
    report.trained_tokens = sum(label != IGNORE for packed in packs for label in packed.labels)
    report.truncated = sum(packed.truncated for packed in packs)
    if out is not None:
        from deepresearch.curate.export import write_jsonl

        write_jsonl(Path(out), (packed.to_dict() for packed in packs))
    return report


def show(rendered: Rendered, tokenizer: Any) -> str:
    """The sample as text for a person to check the mask: trained stretches inside ``[[ ]]``, masked
    ones as they are. Special tokens are shown, since where a turn ends matters."""
    parts: list[str] = []
    start = 0
    ids = rendered.input_ids
    for end in range(1, len(ids) + 1):
        if end == len(ids) or _is_trained(rendered, end) != _is_trained(rendered, start):
            text = tokenizer.decode(ids[start:end], skip_special_tokens=False)
            parts.append(f"[[{text}]]" if _is_trained(rendered, start) else text)
            start = end
    return "".join(parts)


def _is_trained(rendered: Rendered, position: int) -> bool:
    return rendered.labels[position] != IGNORE
