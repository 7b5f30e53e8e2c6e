"""Control-flow exceptions that end the loop, each carrying what the run delivers.

The loop raises them from deep inside a step; ``Agent.run`` catches them, records and finishes. Any
other exception is a failure: recorded as an ``error`` event, then raised again.
"""

from __future__ import annotations

from typing import Literal

Origin = Literal["answer", "forced", "fallback", "guided"]
"""Who wrote the answer: the model on its own, the model when told to, the run's evidence list, or the
guided strategy (the model section by section, checked, with quoted passages where it failed)."""


class RunStopped(Exception):
    """Base of the loop's normal endings."""


class Finished(RunStopped):
    """The model delivered its final answer (``origin`` says whether it was asked to)."""

    def __init__(self, answer: str, origin: Origin = "answer", reason: str = "") -> None:
        super().__init__(origin)
        self.answer = answer
        self.origin: Origin = origin
        self.reason = reason


class StopRequested(BaseException):
    """The run was asked to stop at the next step boundary (a server shutting down gracefully).

    A ``BaseException``, like a cancellation: the run is recorded as ``cancelled``, with the step it
    finished complete, and ``resume`` continues it.
    """
