import asyncio

import pytest

from deepresearch.errors import ToolError
from deepresearch.llm.messages import ToolCall
from deepresearch.sources import SourceRegistry
from deepresearch.tools.base import ToolContext
from deepresearch.tools.execute import execute
from deepresearch.tools.todo import TodoArgs, apply_updates, render_plan, run_todo, todo_tool


def plan_of(*tasks):
    plan, _ = apply_updates({}, {str(i): {"task": t} for i, t in enumerate(tasks, start=1)})
    return plan


def test_read_create_merge_delete():
    plan, op = apply_updates({}, {})
    assert plan == {} and op == "read"
    plan = plan_of("find data", "compare", "write")
    assert list(plan) == ["1", "2", "3"] and all(s["status"] == "pending" for s in plan.values())
    plan, op = apply_updates(plan, {"1": {"status": "done"}, "4": {"task": "verify numbers"}, "3": None})
    assert plan["1"]["status"] == "completed" and plan["1"]["task"] == "find data"
    assert "4" in plan and "3" not in plan
    assert op == "merged: updated 1; added 4; deleted 3"


def test_replan_with_reused_ids_removes_old_steps():
    plan = plan_of("a", "b", "c", "d")
    plan, op = apply_updates(plan, {"1": {"task": "new a"}, "2": {"task": "new b"}})
    assert list(plan) == ["1", "2"] and plan["1"]["task"] == "new a"
    assert op.startswith("rewrote the plan")


def test_adding_several_new_steps_does_not_wipe_the_plan():
    plan = plan_of("a", "b")
    plan, op = apply_updates(plan, {"3": {"task": "c"}, "4": {"task": "d"}})
    assert list(plan) == ["1", "2", "3", "4"] and op.startswith("merged")


def test_validation_is_atomic_and_explains():
    plan = plan_of("a", "b")
    with pytest.raises(ToolError, match="status 'maybe' is not one of"):
        apply_updates(plan, {"1": {"status": "completed"}, "2": {"status": "maybe"}})
    assert plan["1"]["status"] == "pending"
    with pytest.raises(ToolError, match="priority"):
        apply_updates(plan, {"1": {"priority": "urgent!"}})
    with pytest.raises(ToolError, match="does not exist"):
        apply_updates(plan, {"9": {"status": "completed"}})
    with pytest.raises(ToolError, match="expected an object"):
        apply_updates(plan, {"1": "done"})


def test_render_counts_and_natural_order():
    plan = plan_of(*[f"t{i}" for i in range(1, 12)])
    plan, _ = apply_updates(plan, {"2": {"status": "in_progress", "details": "reading", "tags": ["x"]}})
    text = render_plan(plan, "read")
    assert text.startswith("<todo_result>") and text.endswith("</todo_result>")
    assert "📊 Total: 11 tasks" in text and "🔄 1 in progress" in text
    assert text.index("Step 2:") < text.index("Step 10:")
    assert "📝 reading" in text and "🏷️ #x" in text


def test_the_tool_returns_the_plan_it_changed_and_leaves_the_context_alone(tmp_path):
    state: dict = {}
    ctx = ToolContext(workspace=tmp_path, sources=SourceRegistry(), state=state)
    written = asyncio.run(run_todo(TodoArgs(updates={"1": {"task": "a"}, "2": {"task": "b"}}), ctx))
    assert written.state is not None and list(written.state["todo"]) == ["1", "2"]
    assert state == {}  # the executor merges the state, not the tool
    read = asyncio.run(run_todo(TodoArgs(updates={}), ToolContext(tmp_path, SourceRegistry(), written.state)))
    assert read.state is None and "Step 1: a" in read.text  # nothing changed: nothing to record


def test_the_executor_merges_the_state_before_the_next_call_of_the_step_reads_it(tmp_path):
    """Two todo calls of one reply run concurrently; the second must see the first one's plan."""
    tools = {"todo": todo_tool()}
    state: dict = {"other": 1}

    async def both():
        ctx = ToolContext(workspace=tmp_path, sources=SourceRegistry(), state=state)
        plan = '{"updates": {"1": {"task": "a"}, "2": {"task": "b"}}}'
        first = asyncio.ensure_future(execute(ToolCall("c1", "todo", plan), tools, ctx))
        second = asyncio.ensure_future(
            execute(ToolCall("c2", "todo", '{"updates": {"3": {"task": "c"}}}'), tools, ctx)
        )
        return await first, await second

    first, second = asyncio.run(both())
    assert list(first.state["todo"]) == ["1", "2"] and list(second.state["todo"]) == ["1", "2", "3"]
    assert list(state["todo"]) == ["1", "2", "3"] and state["other"] == 1  # merged, other keys kept


def test_executor_reports_bad_calls_as_errors(tmp_path):
    tools = {"todo": todo_tool()}
    ctx = ToolContext(workspace=tmp_path, sources=SourceRegistry(), state={})
    bad_json = asyncio.run(execute(ToolCall("c1", "todo", '{"updates": {"1": {"task": "a"}'), tools, ctx))
    assert not bad_json.is_error  # repaired: the missing braces are unambiguous
    wrong = asyncio.run(execute(ToolCall("c2", "todo", '{"updates": 5}'), tools, ctx))
    assert wrong.is_error and wrong.text.startswith("Error: invalid arguments for todo: updates")
    unknown = asyncio.run(execute(ToolCall("c3", "browse", "{}"), tools, ctx))
    assert unknown.is_error and "no tool named 'browse'" in unknown.text and "todo" in unknown.text
    garbage = asyncio.run(execute(ToolCall("c4", "todo", "not json at all"), tools, ctx))
    assert garbage.is_error and "not valid JSON" in garbage.text
    status = asyncio.run(execute(ToolCall("c5", "todo", '{"updates": {"1": {"status": "zzz"}}}'), tools, ctx))
    assert status.is_error and status.data["error_type"] == "ToolError"
