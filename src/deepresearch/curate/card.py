"""The data card: what a curation kept and why it dropped the rest, in one Markdown page.

Someone deciding whether to train on ``sft.jsonl`` needs the counts per filter and per reason (a
filter that drops everything is a bug, one that drops nothing may be), the size of the samples in
tokens (``o200k_base``, the counter the rest of the project uses), and the languages.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from deepresearch.curate.filters import FILTERS, Decision
from deepresearch.llm.tokens import count_tokens


def sample_tokens(record: Mapping[str, Any]) -> int:
    """Tokens of what a sample trains on: every message's content, reasoning and tool-call arguments
    (``messages``), or its text (stage I)."""
    if "text" in record:
        return count_tokens(str(record["text"]))
    total = 0
    for message in record.get("messages") or ():
        total += count_tokens(str(message.get("content") or ""))
        total += count_tokens(str(message.get("reasoning_content") or ""))
        for call in message.get("tool_calls") or ():
            total += count_tokens(call["function"]["name"]) + count_tokens(call["function"]["arguments"])
    return total


def percentile(values: Sequence[int], share: float) -> int:
    """The nearest-rank percentile (an actual sample's size, no interpolation)."""
    if not values:
        return 0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@dataclass
class TokenStats:
    """Token counts of one output's samples."""

    counts: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, float | int]:
        total = sum(self.counts)
        return {
            "samples": len(self.counts),
            "total": total,
            "mean": round(total / len(self.counts), 1) if self.counts else 0,
            "p50": percentile(self.counts, 0.5),
            "p90": percentile(self.counts, 0.9),
        }


def filter_counts(decisions: Sequence[Decision]) -> dict[str, Counter[str]]:
    """Per filter: how many runs passed, failed and were skipped."""
    counts: dict[str, Counter[str]] = {name: Counter() for name in FILTERS}
    for decision in decisions:
        for name, verdict in decision.verdicts.items():
            counts[name][verdict.status] += 1
    return counts


def reason_counts(decisions: Sequence[Decision]) -> Counter[tuple[str, str]]:
    """(filter, reason) → runs, over every verdict (passes and skips too: they say why a run passed)."""
    return Counter((name, v.reason) for d in decisions for name, v in d.verdicts.items())


def render_card(
    decisions: Sequence[Decision],
    tokens: Mapping[str, TokenStats],
    languages: Mapping[str, int],
    *,
    documents: int = 0,
) -> str:
    kept = sum(1 for d in decisions if d.kept)
    lines = [
        "# Curated training data",
        "",
        f"Runs read: {len(decisions)}. Kept: {kept}. Dropped: {len(decisions) - kept}.",
    ]
    if documents:
        lines.append(f"Documents added to mid-training stage I: {documents}.")
    lines += ["", "## Filters", "", "| filter | pass | fail | skip |", "|---|---:|---:|---:|"]
    for name, counts in filter_counts(decisions).items():
        lines.append(f"| {name} | {counts['pass']} | {counts['fail']} | {counts['skip']} |")
    lines += ["", "## Reasons", "", "| filter | verdict | reason | runs |", "|---|---|---|---:|"]
    statuses = {(n, v.reason): v.status for d in decisions for n, v in d.verdicts.items()}
    reasons = reason_counts(decisions)
    for name in FILTERS:
        for (filter_name, reason), count in sorted(reasons.items()):
            if filter_name == name:
                lines.append(f"| {name} | {statuses[(name, reason)]} | {reason} | {count} |")
    lines += ["", "## Tokens (o200k_base, per sample)", "", "| output | samples | total | mean | p50 | p90 |"]
    lines.append("|---|---:|---:|---:|---:|---:|")
    for output, stats in tokens.items():
        row = stats.to_dict()
        lines.append(
            f"| {output} | {row['samples']} | {row['total']} | {row['mean']} | {row['p50']} | {row['p90']} |"
        )
    lines += ["", "## Languages of the kept runs", "", "| language | runs |", "|---|---:|"]
    for language, count in sorted(languages.items()):
        lines.append(f"| {language} | {count} |")
    return "\n".join(lines) + "\n"
