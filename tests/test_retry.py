"""``parse_retry_after``: the one reading of a server's wait request, shared by the chat client and the
search providers; dates are counted from a fixed ``now``, so the expected values are exact."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx

from deepresearch.retry import parse_retry_after

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def test_seconds_and_milliseconds() -> None:
    assert parse_retry_after({"retry-after": "7"}) == 7
    assert parse_retry_after({"retry-after": " 1.5 "}) == 1.5
    assert parse_retry_after({"retry-after": "-3"}) == 0  # never negative
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25  # the finer one wins
    assert parse_retry_after({"retry-after-ms": "soon", "retry-after": "9"}) == 9  # unreadable: the other


def test_an_http_date_counts_from_now() -> None:
    later = format_datetime(NOW + timedelta(seconds=30), usegmt=True)
    earlier = format_datetime(NOW - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"retry-after": later}, now=NOW) == 30
    assert parse_retry_after({"retry-after": earlier}, now=NOW) == 0
    assert parse_retry_after({"retry-after": "Sun, 01 Mar 2026 12:02:00"}, now=NOW) == 120  # no zone: UTC


def test_absent_or_unreadable_is_none() -> None:
    assert parse_retry_after({}) is None
    assert parse_retry_after({"retry-after": ""}) is None
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "nan"}) is None
    assert parse_retry_after({"retry-after-ms": "nan"}) is None


def test_header_names_are_case_insensitive_on_real_responses() -> None:
    headers = httpx.Response(429, headers={"Retry-After": "12"}).headers
    assert parse_retry_after(headers) == 12
    assert parse_retry_after(httpx.Response(429, headers={"Retry-After-Ms": "40"}).headers) == 0.04
