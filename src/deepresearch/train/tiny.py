"""``--model tiny``: a random 2-layer Qwen2 with a byte-level BPE tokenizer and a Qwen-style chat template,
built offline in under a second, for trying a recipe end to end (and for the tests) before spending a
GPU on a real model.

The tokenizer is byte-level, so every text round-trips whatever it was trained on; the template is
ours: it renders tools, tool calls and tool results the way Qwen's do, and never rewrites an earlier
turn (which ``train format``'s masks and the RL policy server's token continuation both rely on).
Nothing here is downloaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

TINY = "tiny"
"""The value of ``--model`` (or ``model =`` in a recipe) that asks for this model."""

SPECIAL = ["<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>", "<think>", "</think>", "<|pad|>"]

TEMPLATE = """
{%- if tools %}<|im_start|>system
{% if messages[0].role == 'system' %}{{ messages[0].content }}

{% endif %}Tools:
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}Call a tool as <tool_call>{"name": ..., "arguments": ...}</tool_call><|im_end|>
{% elif messages[0].role == 'system' %}<|im_start|>system
{{ messages[0].content }}<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'user' %}<|im_start|>user
{{ message.content }}<|im_end|>
{% elif message.role == 'assistant' %}<|im_start|>assistant
{% if message.reasoning_content %}<think>
{{ message.reasoning_content }}
</think>

{% endif %}{{ message.content }}
{%- for call in message.tool_calls or [] %}
{%- set body = {"name": call.function.name, "arguments": call.function.arguments} %}
{{ "\n<tool_call>\n" }}{{ body | tojson }}{{ "\n</tool_call>" }}
{%- endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>tool
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}
"""

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Search the web.",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        },
    }
]
"""A one-tool schema for samples that need a tool list."""


def tiny_tokenizer(corpus: Iterable[str], *, vocab_size: int) -> Any:
    """A ``PreTrainedTokenizerFast`` trained on ``corpus``, with ``TEMPLATE`` as its chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(list(corpus), trainer=trainer)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|pad|>", chat_template=TEMPLATE
    )


def tiny_model(tokenizer: Any, *, seed: int = 0, max_positions: int = 8192) -> Any:
    """A random 2-layer Qwen2 (hidden 64) sized to ``tokenizer``."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return Qwen2ForCausalLM(config)


def builtin_corpus() -> list[str]:
    """The agent's own prompts, so the BPE merges cover the words a research run sends."""
    folder = resources.files("deepresearch.agent") / "prompts"
    return [item.read_text(encoding="utf-8") for item in folder.iterdir() if item.name.endswith(".j2")]


def materialize(folder: Path, *, seed: int = 0, vocab_size: int = 1024) -> Path:
    """The tiny model and its tokenizer saved in ``folder`` (built once; an existing one is reused)."""
    folder = Path(folder)
    if (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file():
        return folder
    tokenizer = tiny_tokenizer(builtin_corpus(), vocab_size=vocab_size)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(folder))
    tiny_model(tokenizer, seed=seed).save_pretrained(str(folder))  # config.json last: it marks completion
    return folder


def resolve_model(model: Path | str, output_dir: Path) -> Path:
    """``model`` itself, or for ``tiny`` the tiny model built in ``<output_dir>/tiny-model``."""
    if str(model) == TINY:
        return materialize(Path(output_dir) / "tiny-model")
    return Path(model)
