"""The ``todo`` tool: the agent's plan, kept outside the model so it survives a long run.

One argument, ``updates`` (frozen by the architecture): ``{}`` reads the plan; a whole plan rewrites
it; a partial update merges field by field; ``null`` deletes a step. The reference told "whole plan"
from "partial update" by a ratio of key counts and so never deleted the old steps of a re-plan that
reused ids; the rule here is stated in the tool description and reported back after every call:

* **rewrite** — every value is a complete step (has a ``task``), there are at least two, and the
  update includes the plan's first step id (a new plan starts over at the top) or the plan is empty;
* **merge** — anything else: existing steps get the given fields, unknown ids with a ``task`` are
  added, ``null`` deletes.

Updates are validated as a whole before anything changes (statuses and priorities from fixed sets,
with common spellings accepted), so a bad call leaves the plan intact and says what to fix. The
plan lives in the run's tool state under ``todo``; a call that changes it returns the new plan in
``ToolResult.state``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

from deepresearch.errors import ToolError
from deepresearch.llm.jsonmode import KEYS_MAX
from deepresearch.tools.base import Tool, ToolContext, ToolResult, tool_description

STATUSES = ("pending", "in_progress", "completed", "blocked")
PRIORITIES = ("low", "medium", "high", "critical")
_STATUS_ALIASES = {
    "todo": "pending",
    "not_started": "pending",
    "open": "pending",
    "waiting": "pending",
    "in-progress": "in_progress",
    "inprogress": "in_progress",
    "doing": "in_progress",
    "active": "in_progress",
    "running": "in_progress",
    "started": "in_progress",
    "ongoing": "in_progress",
    "done": "completed",
    "complete": "completed",
    "finished": "completed",
    "resolved": "completed",
    "stuck": "blocked",
    "on_hold": "blocked",
}
_STATUS_ICONS = {"completed": "✅", "in_progress": "🔄", "pending": "⏳", "blocked": "🚫"}
_PRIORITY_TAGS = {"low": "[low]", "medium": "", "high": "[high]", "critical": "[critical]"}
_SPECIAL = (
    "step",
    "task",
    "status",
    "priority",
    "details",
    "dependencies",
    "tags",
    "created_at",
    "updated_at",
)


class TodoArgs(BaseModel):
    updates: dict[str, Any] = Field(
        default_factory=dict,
        description="Steps keyed by step id. {} reads the plan; a whole plan (every step with a `task`, "
        "starting from the first id) replaces it; a partial update merges; null deletes a step.",
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _natural(key: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def _normalise_status(value: Any, step: str) -> str:
    text = str(value).strip().lower().replace(" ", "_")
    text = _STATUS_ALIASES.get(text, text)
    if text not in STATUSES:
        raise ToolError(f"step {step}: status {value!r} is not one of {', '.join(STATUSES)}")
    return text


def _normalise_fields(fields: dict[str, Any], step: str) -> dict[str, Any]:
    clean = dict(fields)
    clean.pop("step", None)
    clean.pop("created_at", None)
    clean.pop("updated_at", None)
    if "status" in clean:
        clean["status"] = _normalise_status(clean["status"], step)
    if "priority" in clean:
        priority = str(clean["priority"]).strip().lower()
        if priority not in PRIORITIES:
            raise ToolError(
                f"step {step}: priority {clean['priority']!r} is not one of {', '.join(PRIORITIES)}"
            )
        clean["priority"] = priority
    for name in ("dependencies", "tags"):
        if name in clean and not isinstance(clean[name], list):
            clean[name] = [clean[name]]
    if "task" in clean and not str(clean["task"]).strip():
        raise ToolError(f"step {step}: `task` must not be empty")
    return clean


def _is_whole_step(value: Any) -> bool:
    return isinstance(value, dict) and bool(str(value.get("task", "")).strip())


def apply_updates(plan: dict[str, dict[str, Any]], updates: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The new plan and a one-line account of what changed. ``plan`` is not modified."""
    if not updates:
        return plan, "read"
    updates = {str(k).strip(): v for k, v in updates.items()}
    for key, value in updates.items():
        if value is not None and not isinstance(value, dict):
            raise ToolError(
                f"step {key}: expected an object with fields such as task/status, or null to delete"
            )
    first = min(plan, key=_natural) if plan else None
    rewrite = (
        len(updates) >= 2
        and all(_is_whole_step(v) for v in updates.values())
        and (first is None or first in updates)
    )
    stamp = _now()
    if rewrite:
        new_plan: dict[str, dict[str, Any]] = {}
        for key, value in updates.items():
            fields = _normalise_fields(value, key)
            old = plan.get(key, {})
            new_plan[key] = {
                "step": key,
                "status": "pending",
                "priority": "medium",
                **fields,
                "created_at": old.get("created_at", stamp),
                "updated_at": stamp,
            }
        return new_plan, f"rewrote the plan: {len(new_plan)} steps (previous steps not listed were removed)"

    new_plan = {k: dict(v) for k, v in plan.items()}
    added, changed, deleted, missing = [], [], [], []
    for key, value in updates.items():
        if value is None:
            if new_plan.pop(key, None) is None:
                missing.append(key)
            else:
                deleted.append(key)
            continue
        fields = _normalise_fields(value, key)
        if key in new_plan:
            new_plan[key].update(fields, updated_at=stamp)
            changed.append(key)
        elif _is_whole_step(fields):
            new_plan[key] = {
                "step": key,
                "status": "pending",
                "priority": "medium",
                **fields,
                "created_at": stamp,
                "updated_at": stamp,
            }
            added.append(key)
        else:
            raise ToolError(
                f"step {key} does not exist; give it a `task` to add it (existing steps: "
                f"{', '.join(sorted(new_plan, key=_natural)) or 'none'})"
            )
    parts = [
        f"{label} {', '.join(keys)}"
        for label, keys in (("updated", changed), ("added", added), ("deleted", deleted))
        if keys
    ]
    if missing:
        parts.append(f"nothing to delete for {', '.join(missing)}")
    return new_plan, "merged: " + ("; ".join(parts) or "no change")


def render_plan(plan: dict[str, dict[str, Any]], operation: str) -> str:
    counts = {status: 0 for status in STATUSES}
    for item in plan.values():
        counts[item.get("status", "pending")] = counts.get(item.get("status", "pending"), 0) + 1
    lines = [
        "<todo_result>",
        f"operation: {operation}",
        f"📊 Total: {len(plan)} tasks | ✅ {counts['completed']} completed"
        f" | 🔄 {counts['in_progress']} in progress | ⏳ {counts['pending']} pending"
        f" | 🚫 {counts['blocked']} blocked",
        "=" * 40,
    ]
    if not plan:
        lines.append('(the plan is empty — write one: {"1": {"task": "…"}, "2": {"task": "…"}})')
    for key in sorted(plan, key=_natural):
        item = plan[key]
        icon = _STATUS_ICONS.get(item.get("status", "pending"), "⏳")
        tag = _PRIORITY_TAGS.get(item.get("priority", "medium"), "")
        lines.append(f"{icon} Step {key}: {item.get('task', '')} {tag}".rstrip())
        if item.get("details"):
            lines.append(f"   📝 {item['details']}")
        if item.get("dependencies"):
            lines.append(f"   🔗 Depends on: {', '.join(map(str, item['dependencies']))}")
        if item.get("tags"):
            lines.append("   🏷️ " + " ".join(f"#{t}" for t in item["tags"]))
        extra = {k: v for k, v in item.items() if k not in _SPECIAL}
        for name, value in extra.items():
            lines.append(f"   {name}: {value}")
    lines.append("</todo_result>")
    return "\n".join(lines)


async def run_todo(args: TodoArgs, ctx: ToolContext) -> ToolResult:
    plan: dict[str, dict[str, Any]] = ctx.state.get("todo", {})
    new_plan, operation = apply_updates(plan, args.updates)
    return ToolResult(
        text=render_plan(new_plan, operation),
        data={"operation": operation, "steps": len(new_plan)},
        state={"todo": new_plan} if new_plan is not plan else None,
    )


def describe_todo(arguments: dict[str, Any]) -> str:
    """``todo read`` or ``todo update 3 step(s)``."""
    updates = arguments.get("updates")
    if not updates:
        return "todo read"
    return f"todo update {len(updates)} step(s)" if isinstance(updates, dict) else "todo update"


def plan_updates_schema() -> dict[str, Any]:
    """``updates``, free-form in ``TodoArgs``, as the map of steps the description documents: step id →
    a step (known fields only, statuses and priorities from the sets above) or null. Bounded as JSON
    action mode requires (``llm/jsonmode.py``), so a small model can fill in a plan under a grammar."""
    labels = {"type": "array", "items": {"type": "string", "maxLength": 40}, "maxItems": 5}
    step = {
        "type": "object",
        "properties": {
            "task": {"type": "string", "maxLength": 200},
            "status": {"enum": list(STATUSES)},
            "priority": {"enum": list(PRIORITIES)},
            "details": {"type": "string", "maxLength": 500},
            "dependencies": labels,
            "tags": labels,
        },
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "additionalProperties": {"anyOf": [step, {"type": "null"}]},
        "maxProperties": KEYS_MAX,
    }


def todo_tool() -> Tool:
    return Tool(
        name="todo",
        args=TodoArgs,
        run=run_todo,
        description=tool_description("todo"),
        describer=describe_todo,
        constrained={"updates": plan_updates_schema()},
    )
