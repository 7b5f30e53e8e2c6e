"""How long a server asks us to wait: one ``Retry-After`` parser for every boundary that retries.

The chat client (``llm/client.py``) and the web search providers (``search/providers/_http.py``) both
honour a server's ``Retry-After``; they read it here so that both understand the same forms — seconds,
an HTTP date, and OpenAI's ``retry-after-ms`` — and neither package depends on the other for it. What a
boundary does with the value (wait, cap it, give up at once) stays its own policy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def parse_retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date, counted from
    ``now``, the current time by default); ``None`` when both are absent or unreadable. Never negative."""
    milliseconds = headers.get("retry-after-ms", "").strip()
    if milliseconds:
        try:
            value = float(milliseconds) / 1000
        except ValueError:
            value = math.nan
        if not math.isnan(value):
            return max(0.0, value)
    header = headers.get("retry-after", "").strip()
    if not header:
        return None
    try:
        seconds = float(header)
    except ValueError:
        try:
            when = parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
    return None if math.isnan(seconds) else max(0.0, seconds)
