"""What the user got from a run, in one word and one line: the ``outcome`` in ``run.json``.

A run that ends ``done`` may still have delivered nothing worth reading. The outcome says which:
``report`` (model-written, citing at least one source it read), ``extractive`` (every section is
quoted passages), ``uncited`` (a report that cites nothing the run read) or ``empty`` (the fallback
evidence list). The CLI exits 3 on the last two (``runs.FAILED_OUTCOMES``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from deepresearch.report import CitedText

Outcome = Literal["report", "extractive", "uncited", "empty"]


def judge_outcome(
    origin: str, reason: str, cited: CitedText, *, seen: int, sections: Sequence[dict[str, Any]] = ()
) -> tuple[Outcome, str]:
    """The outcome and why. ``origin``/``reason`` say who wrote the answer and why it ended (the loop's
    ``Finished``), ``seen`` counts the sources the run saw, ``sections`` are the guided strategy's
    section records."""
    resolved, unresolved = len(cited.order), len(cited.unresolved)
    if origin == "fallback":
        why = reason.replace("_", " ") or "no usable reply"
        return "empty", f"the model wrote no report ({why}); report.md lists the {seen} sources the run saw"
    if resolved == 0:
        if not seen:
            return "uncited", "the run found no source, so the report cites nothing"
        removed = f" ({unresolved} invented citation(s) removed)" if unresolved else ""
        return "uncited", f"the report cites none of the {seen} sources the run saw{removed}"
    if origin == "guided":
        written = sum(1 for s in sections if s.get("kept") == "model")
        quotes = sum(
            1
            for s in sections
            for p in s.get("paragraphs", ())
            if p.get("quoted") or s.get("kept") == "quoted"
        )
        if not written:
            return "extractive", "every section quotes the sources: the model's drafts failed the checks"
        return "report", (
            f"{written} of {len(sections)} section(s) written by the model, {quotes} passage(s) quoted; "
            f"{resolved} sources cited"
        )
    return "report", f"{resolved} sources cited"
