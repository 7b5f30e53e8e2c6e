"""What a one-shot process — ``deepresearch research`` or ``resume`` typed in a shell — does to cost less.

A run allocates steadily, and CPython's full collection walks every tracked object, the tens of
thousands that the imports made included: measured at 51–100 ms of CPU once or twice per run, for
nothing, since modules and the run's own history never become garbage. ``freeze_long_lived`` moves
what exists now into the permanent generation (``gc.freeze``), so later collections walk only what
the run made since. After the report is written, the interpreter's teardown (finalising every module
and object) took 0.3–0.6 s that the user waited for with nothing left to do; ``exit_now`` flushes the
streams and the logs and leaves with ``os._exit``.

Both are for one-shot processes only, which ``cli.main`` marks: in a server, a benchmark runner or a
test process that runs many researches, freezing would keep each run's garbage for ever, and
``os._exit`` would skip cleanup that the next task needs. Anywhere else they do nothing.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys

_one_shot = False


def mark_one_shot() -> None:
    """This process runs one command and exits (``cli.main``)."""
    global _one_shot
    _one_shot = True


def is_one_shot() -> bool:
    return _one_shot


def freeze_long_lived() -> None:
    """In a one-shot process, take every object alive now out of the collector's reach."""
    if _one_shot:
        gc.freeze()


def exit_now(code: int) -> None:
    """Flush and leave at once, skipping the interpreter's teardown (one-shot processes only;
    elsewhere this raises ``SystemExit`` as ``sys.exit`` would)."""
    if not _one_shot:
        raise SystemExit(code)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more can be said there
            stream.flush()
    logging.shutdown()
    os._exit(code)
