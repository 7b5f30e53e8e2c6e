"""The context policy: keep what the model is sent under a token limit without losing the run.

The reference policy, with hysteresis: when the view grows past ``upper`` tokens, (1) swap the oldest
tool results that have a compact form (search results without page contents, opened pages reduced
to their head — the full text stays in the workspace) for that form, then (2) hide the oldest cycles
made only of such results, until the view is under ``lower``. If that is not enough, the final
answer is forced and, as a last resort, older cycles of any kind are hidden until the view fits
under ``upper``. The system prompt, the question and the latest cycle are never touched.

Unlike the reference, decisions are sticky (a result compressed once stays compressed), so the view
changes only at compaction points — which keeps server-side prefix caches warm — and each decision
is recorded as a ``context_compacted`` event that resume replays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from deepresearch.agent.history import History


@dataclass
class Compaction:
    compressed: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    tokens_before: int = 0
    tokens_after: int = 0
    force_final: bool = False


@dataclass(frozen=True)
class ContextPolicy:
    upper: int = 80_000
    lower: int = 60_000
    fixed_tokens: int = 0
    """Tokens sent with every call outside the messages, when already known."""
    fixed_text: str = ""
    """Text sent with every call outside the messages (the tool schemas), counted with ``count``
    only when the view's bound says the limit may be near (``History``)."""
    count: Callable[[str], int] | None = None

    @cached_property
    def fixed(self) -> int:
        """All the tokens sent outside the messages."""
        counted = self.count(self.fixed_text) if self.count is not None and self.fixed_text else 0
        return self.fixed_tokens + counted

    def fit(self, history: History, *, protected_from: int) -> Compaction | None:
        """Compact ``history``'s view if it is over ``upper``; entries at or after ``protected_from``
        (the newest cycle) and the first two (system prompt, question) are left alone."""
        if history.view_bound() + self.fixed_tokens + len(self.fixed_text.encode()) <= self.upper:
            return None  # under the limit for certain, with nothing counted
        fixed = self.fixed
        if history.view_tokens + fixed <= self.upper:
            return None
        result = Compaction(tokens_before=history.view_tokens + fixed)
        entries = history.entries
        candidates = range(2, protected_from)

        def over(limit: int) -> bool:
            return history.view_tokens + fixed > limit

        for i in candidates:  # 1. compact forms, oldest first
            if not over(self.lower):
                break
            entry = entries[i]
            if entry.compact is not None and not entry.compressed and not entry.dropped:
                history.compress(i)
                result.compressed.append(i)
        for i in candidates:  # 2. whole evidence cycles, oldest first
            if not over(self.lower):
                break
            if entries[i].message["role"] == "assistant" and not entries[i].dropped:
                members = history.cycle_members(i)
                if len(members) > 1 and all(entries[m].compact is not None for m in members[1:]):
                    self._drop(history, members, result)
        if over(self.lower):
            result.force_final = True
            for i in candidates:  # 3. last resort: any older cycle
                if not over(self.upper):
                    break
                if entries[i].message["role"] == "assistant" and not entries[i].dropped:
                    self._drop(history, history.cycle_members(i), result)
        result.tokens_after = history.view_tokens + fixed
        return result

    @staticmethod
    def _drop(history: History, members: list[int], result: Compaction) -> None:
        for m in members:
            history.drop(m)
            result.dropped.append(m)


def replay(history: History, compressed: list[int], dropped: list[int]) -> None:
    """Re-apply a recorded compaction (resume)."""
    for i in compressed:
        history.compress(i)
    for i in dropped:
        history.drop(i)
