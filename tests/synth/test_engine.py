"""The engine every pipeline runs on: resumable after a kill, never paying twice, bounded, tallied; and
the model wrapper's JSON handling against the fake OpenAI server (a real socket)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from deepresearch.errors import ConfigError, LLMError
from deepresearch.llm.client import ChatClient, LLMConfig
from deepresearch.synth.engine import Outcome, Tally, decided_ids, ledger_path, load_items, run_items
from deepresearch.synth.model import BadReply, Model, language_of, parse_object, require
from tests.fakes.openai_server import FakeOpenAI, Reply


def items(n: int) -> list[dict[str, Any]]:
    return [{"id": f"i{k}", "value": k} for k in range(n)]


def test_kept_dropped_and_failed_items_are_recorded_and_a_rerun_does_only_the_undecided(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.jsonl"
    calls: list[str] = []
    broken = {"i3"}

    async def step(item: dict[str, Any], tally: Tally) -> Outcome:
        calls.append(item["id"])
        tally.calls += 1
        tally.cost_usd += 0.5
        if item["id"] in broken:
            raise LLMError("endpoint down")
        if item["value"] % 2:
            return Outcome.drop("odd", value=item["value"])
        return Outcome.keep({"value": item["value"]}, {"value": item["value"], "copy": True})

    first = asyncio.run(run_items(items(5), step, out, concurrency=2, progress=False))
    assert (first.kept, first.records, dict(first.dropped), first.failed) == (3, 6, {"odd": 1}, 1)
    assert first.tally.calls == 5 and first.tally.cost_usd == pytest.approx(2.5)
    assert "i3: LLMError: endpoint down" in first.errors[0]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["source_id"] for r in records].count("i0") == 2 and {r["source_id"] for r in records} == {
        "i0",
        "i2",
        "i4",
    }
    ledger = {json.loads(line)["id"]: json.loads(line) for line in ledger_path(out).read_text().splitlines()}
    assert set(ledger) == {"i0", "i1", "i2", "i4"}  # i3 is undecided: a rerun tries it again
    assert ledger["i1"]["reason"] == "odd" and ledger["i1"]["detail"] == {"value": 1}
    assert ledger["i0"]["cost_usd"] == 0.5

    broken.clear()
    calls.clear()
    again = asyncio.run(run_items(items(5), step, out, concurrency=2, progress=False))
    assert calls == ["i3"] and again.skipped == 4 and again.dropped == {"odd": 1}
    assert again.total_kept == 3 and "kept 0" in again.describe() and "3 kept" in again.describe()


def test_records_written_before_a_kill_count_as_decided_and_a_torn_line_is_cut(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    # a kill between the record write and the ledger write, then a kill in the middle of a write
    out.write_text(json.dumps({"source_id": "i0", "value": 0}) + "\n" + '{"source_id": "i1", "val')
    decided, kept = decided_ids(out)
    assert decided == {"i0"} and kept == 1
    assert out.read_text().endswith("}\n")  # the torn line is gone, the whole one stays

    seen: list[str] = []

    async def step(item: dict[str, Any], tally: Tally) -> Outcome:
        seen.append(item["id"])
        return Outcome.keep({"value": item["value"]})

    asyncio.run(run_items(items(2), step, out, progress=False))
    assert seen == ["i1"]
    assert [json.loads(line)["source_id"] for line in out.read_text().splitlines()] == ["i0", "i1"]


def test_concurrency_is_bounded(tmp_path: Path) -> None:
    running = {"now": 0, "most": 0}

    async def step(item: dict[str, Any], tally: Tally) -> Outcome:
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        await asyncio.sleep(0.01)
        running["now"] -= 1
        return Outcome.keep({"v": 1})

    asyncio.run(run_items(items(12), step, tmp_path / "o.jsonl", concurrency=3, progress=False))
    assert running["most"] == 3
    with pytest.raises(ConfigError, match="at least 1"):
        asyncio.run(run_items(items(1), step, tmp_path / "p.jsonl", concurrency=0, progress=False))


def test_load_items_reports_bad_lines_and_gives_each_item_an_id(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"task_id": "a", "q": 1}\nnot json\n[1]\n{"q": 2}\n{"id": "a"}\n')
    loaded, problems = load_items(path, id_field="task_id")
    assert [i["id"] for i in loaded] == ["a", "line-4"]
    assert [p.split(": ", 1)[1] for p in problems] == [
        "not JSON (Expecting value)",
        "not a JSON object",
        "duplicate id 'a'",
    ]
    with pytest.raises(ConfigError, match="does not exist"):
        load_items(tmp_path / "missing.jsonl")


KILLABLE = """
import asyncio, sys, time
from pathlib import Path
from deepresearch.synth.engine import Outcome, run_items

async def step(item, tally):
    if item["id"] == "i2" and sys.argv[2] == "hang":
        print("ready", flush=True)
        await asyncio.sleep(60)
    return Outcome.keep({"v": item["value"]})

items = [{"id": f"i{k}", "value": k} for k in range(4)]
asyncio.run(run_items(items, step, Path(sys.argv[1]), concurrency=1, progress=False))
"""


def test_a_killed_process_resumes_without_redoing_finished_items(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text(KILLABLE)
    out = tmp_path / "out.jsonl"
    command = [sys.executable, str(script), str(out), "hang"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, env=dict(os.environ)) as process:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while process.stdout.readline().strip() != b"ready":
            assert time.monotonic() < deadline and process.poll() is None
        os.kill(process.pid, signal.SIGKILL)
    assert [json.loads(line)["source_id"] for line in out.read_text().splitlines()] == ["i0", "i1"]
    subprocess.run([sys.executable, str(script), str(out), "finish"], check=True)
    assert [json.loads(line)["source_id"] for line in out.read_text().splitlines()] == [
        "i0",
        "i1",
        "i2",
        "i3",
    ]


# --- the model wrapper


def test_json_replies_are_read_tolerantly_retried_once_and_tallied(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig
) -> None:
    replies = iter(
        [
            Reply(content='Sure!\n```json\n{"task": "t", "plan": []}\n```'),  # parses; fails the check
            Reply(content='{"task": "t", "plan": ["a", "b"]}'),
            Reply(content="no json here"),
            Reply(content="still none"),
        ]
    )
    fake_llm.script = lambda request: next(replies)
    schema = {"type": "object", "properties": {"task": {"type": "string"}, "plan": {"type": "array"}}}

    async def go() -> tuple[dict[str, Any], str, Tally]:
        tally = Tally()
        async with ChatClient(fake_llm_config) as client:
            model = Model(client, tally)
            good = await model.json("Write it.", schema, check=lambda d: require(d, task=str, plan=list))
            with pytest.raises(BadReply) as bad:
                await model.json("Again.", schema)
        return good, str(bad.value), tally

    good, bad, tally = asyncio.run(go())
    assert good == {"task": "t", "plan": ["a", "b"]}
    assert bad == "the reply is not one JSON object"
    assert tally.calls == 4 and tally.prompt_tokens > 0
    retry = fake_llm.requests[1]["messages"]
    assert retry[-1]["role"] == "user" and '"plan" is missing or empty' in retry[-1]["content"]
    assert fake_llm.requests[0].get("response_format")  # the schema was sent


def test_small_helpers() -> None:
    assert parse_object('prose {"a": 1,} more') == {"a": 1}
    assert parse_object("[1, 2]") is None
    assert language_of("布隆过滤器从不遗忘 items") == "zh" and language_of("Bloom filters") == "en"
    assert require({"a": "", "b": 3}, a=str, b=str) == ['"a" is missing or empty', '"b" must be a str']
