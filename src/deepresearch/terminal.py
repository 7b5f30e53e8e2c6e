"""What may reach a person's terminal. Much of what the CLI prints comes from the model, web pages,
task files or a judge's replies (queries, commands, titles, error messages); an escape sequence in any
of them must not retitle the window, write the clipboard (OSC 52), clear the screen or hide a line.
"""

from __future__ import annotations

import re

_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""C0 and C1 controls (ESC starts terminal sequences; CSI is also 0x9b) and the bidirectional
overrides that make a line read differently from what it holds; tab and newline stay."""


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: each control character shown as ``\\xNN``/``\\uNNNN``."""
    return _UNPRINTABLE.sub(lambda m: ascii(m.group())[1:-1], text)
