"""Kept runs as training records: SFT chat samples, mid-training text, and the check that they are valid.

An SFT sample is ``{"messages", "tools", "meta"}`` in the OpenAI chat format a trainer's chat template
expects: tool calls as ``{id, type: "function", function: {name, arguments}}`` with the arguments a
JSON string, every tool message answering a call of the assistant message before it, and the model's
reasoning in its own ``reasoning_content`` field (never merged into ``content``, so a template decides
how to show it). ``tools`` holds the schemas of the tools the run offered, from the tool registry.

Mid-training data comes in two stages: stage I is plain text (a question with its report, and the
user's own documents), stage II the same tool-calling conversations as SFT.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from deepresearch.llm.messages import chat_problems
from deepresearch.tools.base import Tool

_MESSAGE_KEYS = ("role", "content", "reasoning_content", "tool_calls", "tool_call_id", "name")


def tool_schemas(
    names: Sequence[str], registry: Mapping[str, Tool]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The OpenAI ``tools`` entries for ``names``, and the names the registry does not know."""
    schemas = [registry[name].schema() for name in names if name in registry]
    return schemas, [name for name in names if name not in registry]


def chat_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The run's messages in plain OpenAI form: known keys only, tool calls with string arguments."""
    cleaned: list[dict[str, Any]] = []
    for message in messages:
        out = {key: message[key] for key in _MESSAGE_KEYS if key in message and message[key] is not None}
        if message.get("role") == "assistant":
            out.setdefault("content", "")
            if not out.get("reasoning_content"):
                out.pop("reasoning_content", None)
            if out.get("tool_calls"):
                out["tool_calls"] = [_tool_call(call) for call in out["tool_calls"]]
            else:
                out.pop("tool_calls", None)
        cleaned.append(out)
    return cleaned


def _tool_call(call: Mapping[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments", "")
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return {
        "id": call.get("id", ""),
        "type": call.get("type", "function"),
        "function": {"name": function.get("name", ""), "arguments": arguments},
    }


def validate_chat(record: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``record`` as an OpenAI chat sample with tools; empty when it is valid."""
    problems = _tool_problems(record.get("tools"))
    offered = {
        t["function"]["name"] for t in record.get("tools") or () if isinstance(t, dict) and "function" in t
    }
    messages = record.get("messages")
    problems += chat_problems(messages, offered)
    if not isinstance(messages, list) or not messages:
        return problems
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "assistant" or last.get("tool_calls"):
        problems.append("the last message is not the assistant's answer")
    return problems


def _tool_problems(tools: Any) -> list[str]:
    if not isinstance(tools, list):
        return ["tools: not a list"]
    problems: list[str] = []
    names: set[str] = set()
    for index, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
            problems.append(f"tools[{index}]: not a function tool")
            continue
        name = function.get("name")
        if not isinstance(name, str) or not name or name in names:
            problems.append(f"tools[{index}]: a missing or repeated name")
        if not isinstance(function.get("parameters"), dict):
            problems.append(f"tools[{index}]: parameters are not a JSON schema object")
        names.add(str(name))
    return problems


def sft_record(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]], meta: dict[str, Any]
) -> dict[str, Any]:
    return {"messages": messages, "tools": tools, "meta": meta}


def report_text(question: str, report: str) -> str:
    """Stage I text for a ⟨query, report⟩ pair: the question, a blank line, the report."""
    return f"{question.strip()}\n\n{report.strip()}\n"


def midtrain_records(record: Mapping[str, Any], question: str, report: str) -> list[dict[str, Any]]:
    """A kept run's stage I (question and report, no tool calls) and stage II (the conversation) records."""
    source = record["meta"]["run_id"]
    return [
        {"stage": 1, "kind": "report", "text": report_text(question, report), "source": source},
        {"stage": 2, "messages": record["messages"], "tools": record["tools"], "source": source},
    ]


def document_records(folder: Path, errors: list[str]) -> Iterator[dict[str, Any]]:
    """Stage I records of the documents under ``folder``, read by the search index's loaders (so a
    PDF or an HTML page reads the same here as in the index); problems go to ``errors``."""
    from deepresearch.search.loaders import iter_files, load_file

    for path in iter_files([folder], errors):
        try:
            data = path.read_bytes()
        except OSError as exc:
            errors.append(f"{path}: {exc}")
            continue
        for document in load_file(path, data, errors):
            if document.text.strip():
                yield {
                    "stage": 1,
                    "kind": "document",
                    "text": document.text.strip() + "\n",
                    "source": document.url,
                    "title": document.title,
                }


def write_jsonl(path: Path, records: Iterable[Mapping[str, Any]]) -> int:
    """Write ``records`` one per line, whole: a temporary file moved into place. Returns the count."""
    tmp = path.with_name(f".{path.name}.tmp")
    count = 0
    with tmp.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    os.replace(tmp, path)
    return count
