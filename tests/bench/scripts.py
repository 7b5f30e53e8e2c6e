"""Scripted models for benchmark tests: an agent that searches once and answers, tasks that fail or stall
on cue (by a tag in the question), and a router that sends judge prompts to a judge script."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.agent.scripts import cited_keys, question, turn
from tests.fakes.openai_server import Reply

FAIL = "[fail]"
"""A task whose model answers 500 forever."""
HOLD = "[hold]"
"""A task whose second model reply stalls while ``HELD["on"]``."""
HELD = {"on": False}


def agent_script(request: dict[str, Any]) -> Reply:
    """Search the local index once, then answer citing the first source."""
    asked = question(request)
    if FAIL in asked:
        return Reply(status=500, body=json.dumps({"error": {"message": "scripted outage"}}))
    n = turn(request)
    if n == 0:
        return Reply(
            content="Searching.",
            tool_calls=[
                ("batch_web_surfer", {"action": "batch_search", "queries": ["BM25 ranking"], "topk": 3})
            ],
        )
    body = f"# Report by {request['model']}\n\n{asked}: BM25 ranks documents \\cite{{{_first_key(request)}}}."
    reply = Reply(content=f"<answer>\n{body}\n</answer>")
    if HOLD in asked and HELD["on"]:
        reply.delay = 120
    return reply


def _first_key(request: dict[str, Any]) -> str:
    keys = list(cited_keys(request).values())
    return keys[0] if keys else "web_00000000"


def routed(judge: Callable[[dict[str, Any]], Reply]) -> Callable[[dict[str, Any]], Reply]:
    """The agent script for agent requests (they start with a system prompt), ``judge`` for the rest."""

    def script(request: dict[str, Any]) -> Reply:
        if request["messages"][0].get("role") == "system":
            return agent_script(request)
        return judge(request)

    return script


def write_tasks(path: Path, prompts: dict[str, str], *, domain: str = "Tech") -> Path:
    """A native task file: each task has two positive rubrics and one negative one."""
    with path.open("w", encoding="utf-8") as handle:
        for task_id, prompt in prompts.items():
            task = {
                "task_id": task_id,
                "prompt": prompt,
                "domain": domain,
                "rubrics": [
                    {
                        "criterion": "Explains how BM25 ranks documents.",
                        "weight": 4,
                        "axis": "Explicit Criteria",
                    },
                    {"criterion": "Cites a source for each claim.", "weight": 2, "axis": "Communication"},
                    {
                        "criterion": "States something false about BM25.",
                        "weight": -3,
                        "axis": "Explicit Criteria",
                    },
                ],
            }
            handle.write(json.dumps(task) + "\n")
    return path
