"""Scripted models for end-to-end runs: each maps a request body to the next ``Reply``.

They answer from the request alone (which turn it is, what the tools returned), like a model that
reads its context, so a run that is killed and resumed gets the same answers as one that was not —
and they cite only keys that actually came back in tool results.
"""

from __future__ import annotations

import re
from typing import Any

from tests.fakes.openai_server import Reply

_KEYED_URL = re.compile(r"<cite_index>(web_[0-9a-f]+)</cite_index>.*?<url>(.*?)</url>", re.S)
_HTTP_URL = re.compile(r"https?://[^\s\"'<>]+")

INVENTED_KEY = "web_deadbeef"


def turn(request: dict[str, Any]) -> int:
    """How many assistant replies the conversation already holds."""
    return sum(1 for m in request["messages"] if m.get("role") == "assistant")


def question(request: dict[str, Any]) -> str:
    return next(m["content"] for m in request["messages"] if m.get("role") == "user")


def last_message(request: dict[str, Any]) -> dict[str, Any]:
    return request["messages"][-1]


def cited_keys(request: dict[str, Any]) -> dict[str, str]:
    """url → key for every source the tool results showed, in order."""
    found: dict[str, str] = {}
    for message in request["messages"]:
        if message.get("role") == "tool":
            for key, url in _KEYED_URL.findall(message.get("content") or ""):
                found.setdefault(url, key)
    return found


def research_script(request: dict[str, Any]) -> Reply:
    """plan → search → open → draft (+ todo update) → patch + shell → cited answer."""
    n = turn(request)
    if n == 0:
        plan = {
            "1": {"task": "Find how BM25 ranks documents", "priority": "high"},
            "2": {"task": "Read a primary source"},
            "3": {"task": "Write the report"},
        }
        return Reply(
            reasoning="I should plan before searching.",
            content="Let me plan the research.",
            tool_calls=[("todo", {"updates": plan})],
        )
    if n == 1:
        return Reply(
            content="Searching.",
            tool_calls=[
                (
                    "batch_web_surfer",
                    {
                        "action": "batch_search",
                        "queries": ["BM25 term frequency saturation", "SQLite FTS5 full-text"],
                        "topk": 6,
                    },
                )
            ],
        )
    if n == 2:
        urls = [u for u in cited_keys(request) if "bm25" in u][:1] + _HTTP_URL.findall(question(request))
        return Reply(
            content="Opening the best sources.",
            tool_calls=[("batch_web_surfer", {"action": "batch_open", "urls": urls})],
        )
    if n == 3:
        return Reply(
            content="Drafting and updating the plan.",
            tool_calls=[
                (
                    "file",
                    {
                        "action": "write",
                        "path": "notes/draft.md",
                        "content": "# Draft\n\nBM25 saturates, to be confirmed.\n",
                    },
                ),
                ("todo", {"updates": {"1": {"status": "completed"}, "2": {"status": "in_progress"}}}),
            ],
        )
    if n == 4:
        return Reply(
            content="Polishing the draft and checking a number.",
            tool_calls=[
                (
                    "file",
                    {
                        "action": "patch",
                        "path": "notes/draft.md",
                        "old": "saturates, to be confirmed.",
                        "new": "saturates.",
                    },
                ),
                ("shell", {"cmd": "python3 -c 'print(6*7)'", "timeout": 30}),
            ],
        )
    keys = cited_keys(request)
    bm25 = next(k for u, k in keys.items() if "bm25" in u)
    opened = _HTTP_URL.findall(question(request))  # the page named in the question, not a search hit
    web = [k for u, k in keys.items() if u in opened]
    fts = next((k for u, k in keys.items() if "fts5" in u), bm25)
    cite_web = f" \\cite{{{web[0]}}}" if web else ""
    body = (
        "# BM25 in practice\n\n"
        f"BM25 limits the weight of repeated terms through a saturation parameter \\cite{{{bm25}}}. "
        f"SQLite exposes it through the FTS5 extension \\cite{{{fts},{bm25}}}. "
        f"Bloom filters trade memory for a small false-positive rate{cite_web}. "
        f"An unsupported claim \\cite{{{INVENTED_KEY}}}.\n\nThe computed check gave 42."
    )
    return Reply(reasoning="All parts are covered.", content=f"<answer>\n{body}\n</answer>")


def endless_search_script(request: dict[str, Any]) -> Reply:
    """Searches forever; answers only once told to stop (the forced final turn)."""
    last = last_message(request)
    if last.get("role") == "user" and "Do not call any more tools" in str(last.get("content")):
        keys = list(cited_keys(request).values())
        return Reply(content=f"<answer>Forced summary \\cite{{{keys[0]}}}.</answer>")
    return Reply(
        tool_calls=[
            (
                "batch_web_surfer",
                {"action": "batch_search", "queries": [f"BM25 query {turn(request)}"], "topk": 3},
            )
        ]
    )
