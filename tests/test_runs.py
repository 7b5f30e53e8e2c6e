import json
import os

import pytest

from deepresearch.errors import RunCorrupted, RunStoreError
from deepresearch.events import LLMCall, RunStarted, ToolResultEvent
from deepresearch.runs import RunInfo, RunStore, iter_runs, load_events, read_info


def started():
    return RunStarted(
        run_id="r1",
        question="q",
        model="m",
        search="local",
        language="en",
        tool_mode="native",
        tools=["todo"],
        messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "q"}],
    )


def test_create_append_and_reload(tmp_path):
    store = RunStore.create(tmp_path / "run")
    assert (tmp_path / "run" / "workspace").is_dir()
    store.append(started())
    store.append(LLMCall(step=1, message={"role": "assistant", "content": "hi"}, usage={"prompt_tokens": 3}))
    store.sync()
    store.write_json("sources.json", [{"key": "web_1"}])
    store.write_info(RunInfo(id="r1", question="q"))
    store.close()
    loaded = load_events(tmp_path / "run" / "events.jsonl")
    assert [e.type for e in loaded.events] == ["run_started", "llm_call"]
    assert loaded.torn_tail is None
    assert json.loads((tmp_path / "run" / "sources.json").read_text()) == [{"key": "web_1"}]
    assert not list((tmp_path / "run").glob(".*.tmp"))


def test_torn_last_line_is_skipped_but_middle_corruption_raises(tmp_path):
    store = RunStore.create(tmp_path / "run")
    store.append(started())
    store.append(ToolResultEvent(step=1, call_id="c", name="todo", content="x"))
    store.close()
    path = tmp_path / "run" / "events.jsonl"
    with path.open("a") as handle:
        handle.write('{"type": "llm_call", "step": 2, "mess')  # kill -9 during a write
    loaded = load_events(path)
    assert len(loaded.events) == 2 and loaded.torn_tail and loaded.warnings
    lines = path.read_text().splitlines()
    lines.insert(1, "{not json")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RunCorrupted) as info:
        load_events(path)
    assert "events.jsonl:2" in str(info.value)


def test_one_writer_at_a_time(tmp_path):
    store = RunStore.create(tmp_path / "run")
    store.append(started())
    with pytest.raises(RunStoreError, match="in use"):
        RunStore.open(tmp_path / "run")
    store.close()
    RunStore.open(tmp_path / "run").close()
    with pytest.raises(RunStoreError, match="already holds a run"):
        RunStore.create(tmp_path / "run")
    with pytest.raises(RunStoreError, match="not a run directory"):
        RunStore.open(tmp_path / "nothing")


def test_listing_marks_dead_runs_interrupted(tmp_path):
    live = RunStore.create(tmp_path / "runs" / "b-live")
    live.write_info(RunInfo(id="b", question="live", status="running", pid=os.getpid()))
    dead = RunStore.create(tmp_path / "runs" / "a-dead")
    dead.write_info(RunInfo(id="a", question="dead", status="running"))
    dead.close()
    (tmp_path / "runs" / "c-bad").mkdir()
    (tmp_path / "runs" / "c-bad" / "run.json").write_text("{")
    listed = {path.name: info for path, info in iter_runs(tmp_path / "runs")}
    assert listed["b-live"].status == "running"
    assert listed["a-dead"].status == "interrupted"
    assert isinstance(listed["c-bad"], RunCorrupted)
    assert read_info(tmp_path / "runs" / "a-dead").question == "dead"
    live.close()


def test_a_torn_tail_is_mended_before_the_next_append(tmp_path):
    store = RunStore.create(tmp_path / "run")
    store.append(started())
    store.close()
    path = tmp_path / "run" / "events.jsonl"
    with path.open("a") as handle:
        handle.write('{"type": "llm_call", "step": 1, "mess')  # what a kill or a full disk left
    resumed = RunStore.open(tmp_path / "run")
    resumed.append(ToolResultEvent(step=1, call_id="c", name="todo", content="x"))
    resumed.close()
    loaded = load_events(path)
    assert [e.type for e in loaded.events] == ["run_started", "tool_result"] and loaded.torn_tail is None

    whole = LLMCall(step=2, message={"role": "assistant", "content": "hi"}, usage={}).model_dump_json()
    with path.open("a") as handle:
        handle.write(whole)  # complete, but its newline never came: it counts, and is kept
    assert len(load_events(path).events) == 3
    again = RunStore.open(tmp_path / "run")
    again.append(ToolResultEvent(step=2, call_id="d", name="todo", content="y"))
    again.close()
    assert [e.type for e in load_events(path).events] == [
        "run_started",
        "tool_result",
        "llm_call",
        "tool_result",
    ]


def test_a_run_without_out_lives_in_a_folder_named_by_its_id(fake_llm, corpus_index, tmp_path):
    import asyncio

    from deepresearch.config import load_settings
    from deepresearch.research import research
    from tests.fakes.openai_server import Reply

    fake_llm.enqueue(Reply(content="<answer>Done.</answer>"))
    settings = load_settings(
        {"base_url": fake_llm.base_url, "model": "m", "index": corpus_index, "runs_dir": tmp_path / "runs"},
        env={},
    )
    result = asyncio.run(research("q", settings))
    (folder,) = (tmp_path / "runs").iterdir()
    assert result.run_dir == folder
    assert read_info(folder).id == folder.name  # one id: the folder's name and run.json's agree


def test_a_run_dir_reads_what_a_run_wrote(fake_llm, corpus_index, tmp_path):
    import asyncio

    from deepresearch.config import load_settings
    from deepresearch.research import research
    from deepresearch.runs import RunDir
    from tests.agent.scripts import research_script

    fake_llm.script = research_script
    out = tmp_path / "named-by-me"
    settings = load_settings(
        {
            "base_url": fake_llm.base_url,
            "model": "m",
            "index": corpus_index,
            "out": out,
            "allow_private_urls": True,
        },
        env={},
    )
    result = asyncio.run(research("How does BM25 rank documents?", settings))
    run = RunDir.open(out)
    assert run.started and run.finished and run.status == "done" and run.meta.id != "named-by-me"
    assert run.report() == result.report and run.report_path == result.report_path
    assert run.report_html().startswith("<!DOCTYPE html>")
    assert [m["role"] for m in run.messages()[:2]] == ["system", "user"]
    cited = [s for s in run.sources() if s["n"] is not None]
    assert len(cited) == result.citations["resolved"]
    assert [e.type for e in run.events()][-1] == "run_finished"
    assert run.task() is None
    with pytest.raises(RunStoreError, match="is not a run directory"):
        RunDir.open(tmp_path)


def test_the_conversation_files_are_rewritten_every_few_steps_not_every_step(tmp_path):
    """Rewriting messages.json at every step made a run's writes grow with the square of its length;
    the event log is fsync'ed every step, the derived files every SNAPSHOT_EVERY steps and at the end."""
    import asyncio

    from deepresearch.agent.history import History
    from deepresearch.agent.state import RunState
    from deepresearch.runs import MESSAGES, RUN_INFO, SNAPSHOT_EVERY, Recorder

    store = RunStore.create(tmp_path / "run")
    recorder = Recorder(store, RunInfo(id="r", question="q"))
    state = RunState(history=History(len))
    rewritten: list[int] = []

    async def steps() -> None:
        for step in range(1, 3 * SNAPSHOT_EVERY + 3):
            state.step = step
            state.history.append({"role": "user", "content": f"message {step} " * 50})
            await recorder.save(state)
            recorder.flush()  # the files are written behind the run: wait for them to read them
            if len(json.loads((store.path / MESSAGES).read_text())) == step:  # written at this step
                rewritten.append(step)
            assert json.loads((store.path / RUN_INFO).read_text())["steps"] == step  # run.json: every step

    asyncio.run(steps())
    assert rewritten == list(range(1, 3 * SNAPSHOT_EVERY + 3, SNAPSHOT_EVERY))
    recorder.checkpoint(state)  # the end of the run (or a cancel) writes everything now
    assert len(json.loads((store.path / MESSAGES).read_text())) == 3 * SNAPSHOT_EVERY + 2
    store.close()


def test_an_event_line_is_pydantics_json_and_leaves_its_strings_as_they_were():
    """pydantic-core reads a string through CPython's UTF-8 view, which a non-ASCII string then keeps
    (its ``sys.getsizeof`` grows by the UTF-8 copy) for as long as it lives; the log line must not."""
    import sys

    from deepresearch.events import event_json

    content = "Kathodenmaterial – Energiedichte ≈ 270 Wh/kg, 研究 " * 200
    event = ToolResultEvent(
        step=3,
        call_id="c1",
        name="batch_open",
        content=content,
        data={"nan": float("nan"), "inf": float("-inf"), "n": 2, "nested": {"é": [1.5, None, True]}},
        sources=[{"id": "web_1", "text": content}],
    )
    size = sys.getsizeof(content)
    line = event_json(event)
    assert sys.getsizeof(content) == size
    assert line == event.model_dump_json(exclude_none=True)
    assert sys.getsizeof(content) > size  # what pydantic's own dump does to it
    for event in (
        started(),
        LLMCall(step=1, message={"role": "assistant", "content": None}, usage={"cost": 0.5}),
    ):
        assert event_json(event) == event.model_dump_json(exclude_none=True)


def test_a_step_whose_files_fail_to_write_behind_the_run_fails_the_next_step(tmp_path):
    import asyncio

    from deepresearch.agent.history import History
    from deepresearch.agent.state import RunState
    from deepresearch.runs import RUN_INFO, Recorder

    store = RunStore.create(tmp_path / "run")
    recorder = Recorder(store, RunInfo(id="r", question="q"))
    state = RunState(history=History(len))
    (store.path / RUN_INFO).unlink(missing_ok=True)
    (store.path / RUN_INFO / "blocker").mkdir(parents=True)  # run.json cannot be replaced now

    async def steps() -> None:
        state.step = 1
        await recorder.save(state)  # returns: its write goes on behind the run, and fails
        state.step = 2
        with pytest.raises(RunStoreError, match=r"cannot write .*run\.json"):
            await recorder.save(state)

    asyncio.run(steps())
    recorder.flush()  # what the last save started fails the same way: logged, not raised, here
    store.close()
