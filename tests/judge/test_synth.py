"""Two-step reverse rubric synthesis against the fake OpenAI server.

The fake answers by which step's prompt a request carries (each prompt names its step in its title),
so a test scripts step 1, step 2 and the consistency judge separately and can check what each saw.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deepresearch.errors import ConfigError
from deepresearch.judge.rubrics import Task
from deepresearch.judge.synth import (
    SynthOutcome,
    SynthReport,
    SynthSeed,
    discarded_path,
    load_seeds,
    sample_seeds_path,
    synthesize,
    synthesize_file,
)
from deepresearch.llm.client import ChatClient, LLMConfig
from deepresearch.llm.pricing import Price
from tests.fakes.openai_server import FakeOpenAI, Reply

MARKERS = {"step1": "step 1 of 2", "step2": "step 2 of 2", "consistency": "consistency review"}
ROLES = ["explicit", "explicit", "explicit", "implicit", "implicit", "implicit", "negative", "negative"]
SUMMARY = "HIDDEN-SUMMARY: a grid operator wants to know how battery revenues are changing."
QUERY = "I run a small utility and need a report on how grid batteries make money today."

Answer = str | Reply | Callable[[str], str | Reply]


def rubric_items(tag: str = "storage", roles: list[str] = ROLES) -> list[dict[str, Any]]:
    return [
        {
            "criterion": f"{tag} criterion {number}",
            "dimension": "Coverage" if role != "negative" else "Factual Accuracy",
            "weight": -2 if role == "negative" else 3,
            "role": role,
        }
        for number, role in enumerate(roles, start=1)
    ]


def step1_reply(items: list[dict[str, Any]] | None = None, summary: str = SUMMARY) -> str:
    return json.dumps({"summary": summary, "rubrics": rubric_items() if items is None else items})


def step2_reply(flips: dict[int, str] | None = None, roles: list[str] = ROLES, query: str = QUERY) -> str:
    labels = [
        {"id": f"R{n}", "role": (flips or {}).get(n, role), "evidence": "", "reason": "as read"}
        for n, role in enumerate(roles, start=1)
    ]
    return json.dumps({"query": query, "roles": labels})


def verdict(
    score: float = 0.9, keep: bool | None = True, reason: str = "summary, query and rubrics agree"
) -> str:
    data: dict[str, Any] = {"problems": [], "score": score, "reason": reason}
    if keep is not None:
        data["keep"] = keep
    return json.dumps(data)


def route(
    fake: FakeOpenAI,
    *,
    step1: Answer | list[Answer] | None = None,
    step2: Answer | list[Answer] | None = None,
    consistency: Answer | list[Answer] | None = None,
) -> None:
    """Answer each step from its own list, in order; the last answer of a list repeats. A step left
    out answers with a valid reply that keeps the sample."""
    given = {"step1": step1, "step2": step2, "consistency": consistency}
    defaults: dict[str, Answer] = {"step1": step1_reply(), "step2": step2_reply(), "consistency": verdict()}
    queues: dict[str, list[Answer]] = {
        name: [defaults[name]]
        if answers is None
        else list(answers)
        if isinstance(answers, list)
        else [answers]
        for name, answers in given.items()
    }

    def script(request: dict[str, Any]) -> Reply:
        prompt = prompt_of(request)
        name = next(name for name, marker in MARKERS.items() if marker in prompt)
        queue = queues[name]
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if callable(answer) and not isinstance(answer, Reply):
            answer = answer(prompt)
        return answer if isinstance(answer, Reply) else Reply(content=answer)

    fake.script = script


def prompt_of(request: dict[str, Any]) -> str:
    content = request["messages"][-1]["content"]
    assert isinstance(content, str)
    return content


def steps_asked(fake: FakeOpenAI) -> list[str]:
    return [
        next(name for name, marker in MARKERS.items() if marker in prompt_of(request))
        for request in fake.requests
    ]


def run_one(
    config: LLMConfig,
    seed: SynthSeed | None = None,
    *,
    judge_config: LLMConfig | None = None,
    threshold: float = 0.7,
) -> SynthOutcome:
    async def go() -> SynthOutcome:
        async with ChatClient(config) as client:
            if judge_config is None:
                return await synthesize(seed or SEED, client, threshold=threshold)
            async with ChatClient(judge_config) as judge:
                return await synthesize(seed or SEED, client, judge_client=judge, threshold=threshold)

    return asyncio.run(go())


def run_file(config: LLMConfig, seeds: Path, out: Path, **kwargs: Any) -> SynthReport:
    async def go() -> SynthReport:
        async with ChatClient(config) as client:
            return await synthesize_file(seeds, out, client, **kwargs)

    return asyncio.run(go())


SEED = SynthSeed(
    id="bess-1",
    topic="How grid batteries earn money",
    domain="energy",
    document="Batteries first sold frequency response; arbitrage now matters more.",
    source="https://example.org/report",
)


# --- one seed


def test_a_consistent_sample_is_kept_as_a_task(fake_llm: FakeOpenAI, fake_llm_config: LLMConfig) -> None:
    route(fake_llm)
    priced = fake_llm_config.model_copy(update={"prices": {"fake-model": Price(1.0, 2.0)}})
    judge_config = fake_llm_config.model_copy(update={"model": "judge-model"})

    outcome = run_one(priced, judge_config=judge_config)

    assert outcome.kept and outcome.reason == "kept" and outcome.consistency == 0.9
    assert outcome.detail == "summary, query and rubrics agree"
    task = outcome.task
    assert task is not None
    assert task.task_id == "synth-bess-1" and task.prompt == QUERY and task.domain == "energy"
    assert [r.role for r in task.rubrics] == ROLES
    assert [r.weight for r in task.rubrics] == [3, 3, 3, 3, 3, 3, -2, -2]
    assert task.rubrics[0].criterion == "storage criterion 1" and task.rubrics[0].axis == "Coverage"
    assert task.meta["hidden_summary"] == SUMMARY and task.meta["consistency"] == 0.9
    assert task.meta["synth_model"] == "fake-model" and task.meta["judge_model"] == "judge-model"
    assert task.meta["seed_id"] == "bess-1" and task.meta["source"] == "https://example.org/report"
    assert Task.model_validate_json(task.model_dump_json()) == task

    # one call per step; the judge is the other model; step 2 never sees the hidden summary
    assert steps_asked(fake_llm) == ["step1", "step2", "consistency"]
    assert [request["model"] for request in fake_llm.requests] == ["fake-model", "fake-model", "judge-model"]
    step1_prompt, step2_prompt, judge_prompt = map(prompt_of, fake_llm.requests)
    assert "How grid batteries earn money" in step1_prompt and "arbitrage now matters" in step1_prompt
    assert "HIDDEN-SUMMARY" not in step2_prompt
    assert "R4 [implicit, weight +3, Coverage] storage criterion 4" in step2_prompt
    assert "HIDDEN-SUMMARY" in judge_prompt and QUERY in judge_prompt
    assert "R7 [negative, -2, Factual Accuracy] storage criterion 7" in judge_prompt
    # the synth model is priced, the judge model is not
    assert outcome.cost_usd > 0
    assert [len(outcome.steps[name]) for name in ("step1", "step2", "consistency")] == [1, 1, 1]


def test_a_role_that_changes_in_step_2_discards_the_sample_and_names_the_rubric(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig
) -> None:
    route(fake_llm, step2=step2_reply(flips={4: "explicit"}))  # the query spelled out an implicit rubric

    outcome = run_one(fake_llm_config)

    assert not outcome.kept and outcome.task is None and outcome.reason == "role_mismatch"
    assert outcome.detail == "R4 ('storage criterion 4'): implicit in step 1, explicit in step 2"
    assert steps_asked(fake_llm) == ["step1", "step2"]  # no judge call for a discarded sample


def test_an_explicit_rubric_the_query_left_out_is_a_mismatch_too(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig
) -> None:
    route(fake_llm, step2=step2_reply(flips={1: "implicit", 3: "implicit"}))

    outcome = run_one(fake_llm_config)

    assert outcome.reason == "role_mismatch"
    assert "R1 ('storage criterion 1'): explicit in step 1, implicit in step 2" in outcome.detail
    assert "R3 (" in outcome.detail and "R2 (" not in outcome.detail


def test_low_consistency_discards_and_the_threshold_decides(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig
) -> None:
    route(fake_llm, consistency=verdict(score=0.4, reason="R5 asks for a region the query excludes"))

    outcome = run_one(fake_llm_config)

    assert not outcome.kept and outcome.task is None
    assert outcome.reason == "low_consistency" and outcome.consistency == 0.4
    assert outcome.detail == "score 0.40 below 0.70: R5 asks for a region the query excludes"

    fake_llm.requests.clear()
    assert run_one(fake_llm_config, threshold=0.3).kept


def test_the_judge_can_veto_a_high_score(fake_llm: FakeOpenAI, fake_llm_config: LLMConfig) -> None:
    route(fake_llm, consistency=verdict(score=0.8, keep=False, reason="rubrics are vague"))

    outcome = run_one(fake_llm_config)

    assert outcome.reason == "judge_rejected" and outcome.consistency == 0.8 and outcome.task is None
    assert "rubrics are vague" in outcome.detail


def test_invalid_json_is_asked_for_again_with_the_problem(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig
) -> None:
    route(fake_llm, step1=["Sure! Here are some ideas about batteries.", step1_reply()])

    outcome = run_one(fake_llm_config)

    assert outcome.kept
    assert [attempt.problems for attempt in outcome.steps["step1"]] == [
        ["the reply holds no JSON object"],
        [],
    ]
    assert outcome.steps["step1"][0].reply == "Sure! Here are some ideas about batteries."
    assert steps_asked(fake_llm) == ["step1", "step1", "step2", "consistency"]
    first, retry = prompt_of(fake_llm.requests[0]), prompt_of(fake_llm.requests[1])
    assert "previous answer was rejected" not in first
    assert "previous answer was rejected" in retry and "- the reply holds no JSON object" in retry


def test_json_in_a_fence_after_prose_with_small_breakage_is_read(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig
) -> None:
    broken = step1_reply()[:-2] + ",]}"  # a trailing comma inside the rubric list
    route(
        fake_llm,
        step1=f"Here is the task.\n```json\n{broken}\n```\nHope this helps.",
        step2="Query and labels:\n" + step2_reply(),
        consistency="```\n" + verdict(score=0.75) + "\n```",
    )

    outcome = run_one(fake_llm_config)

    assert outcome.kept and outcome.consistency == 0.75
    assert steps_asked(fake_llm) == ["step1", "step2", "consistency"]
    assert outcome.task is not None and len(outcome.task.rubrics) == 8


@pytest.mark.parametrize("garbage", ["I cannot help with that.", "{" * 5000, '{"score": "high"'])
def test_no_reply_makes_synthesis_raise(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig, garbage: str
) -> None:
    route(fake_llm, step1=garbage, step2=garbage, consistency=garbage)

    assert run_one(fake_llm_config).reason == "step1_invalid"


@pytest.mark.parametrize(
    ("step", "reason", "asked"),
    [
        ("step1", "step1_invalid", ["step1", "step1"]),
        ("step2", "step2_invalid", ["step1", "step2", "step2"]),
        ("consistency", "consistency_invalid", ["step1", "step2", "consistency", "consistency"]),
    ],
)
def test_a_step_that_never_answers_in_json_discards_the_seed(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig, step: str, reason: str, asked: list[str]
) -> None:
    route(fake_llm, **{step: "I cannot help with that."})

    outcome = run_one(fake_llm_config)

    assert not outcome.kept and outcome.task is None and outcome.reason == reason
    assert outcome.detail == "the reply holds no JSON object"
    assert steps_asked(fake_llm) == asked
    assert len(outcome.steps[step]) == 2


def _with(number: int, **changes: Any) -> list[dict[str, Any]]:
    items = rubric_items()
    items[number - 1].update(changes)
    return items


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (_with(7, weight=2), "rubric 7: role 'negative' with weight 2; negative rubrics describe a flaw"),
        (_with(4, weight=-3), "rubric 4: role 'implicit' with weight -3"),
        (_with(1, weight=7), "rubric 1: `weight` must be a number from 1 to 5 or from -1 to -5, not 7"),
        (_with(2, weight=0), "rubric 2: `weight` must be a number"),
        (_with(2, weight="heavy"), "rubric 2: `weight` must be a number"),
        (_with(3, role="bonus"), "rubric 3: `role` must be explicit, implicit or negative, not 'bonus'"),
        (_with(5, criterion=" "), "rubric 5: `criterion` must be a non-empty string"),
        (_with(6, dimension=""), "rubric 6: `dimension` must be a non-empty string"),
        (_with(6, fatal="yes"), "rubric 6: `fatal` must be true or false"),
        (_with(2, criterion="Storage Criterion 1"), "rubric 2 repeats an earlier criterion"),
        (rubric_items()[:5], "write between 8 and 20 rubrics, not 5"),
        (rubric_items(roles=ROLES * 3), "write between 8 and 20 rubrics, not 24"),
        (rubric_items(roles=["explicit"] * 6 + ["negative"] * 2), "no rubric has the role 'implicit'"),
        ({"R1": "not a list"}, "`rubrics` must be a list of objects"),
    ],
)
def test_rubrics_that_break_the_rules_are_retried_then_discarded_with_the_reason(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig, items: Any, expected: str
) -> None:
    route(fake_llm, step1=json.dumps({"summary": SUMMARY, "rubrics": items}))

    outcome = run_one(fake_llm_config)

    assert outcome.reason == "step1_invalid" and outcome.task is None
    assert expected in outcome.detail
    assert steps_asked(fake_llm) == ["step1", "step1"]
    assert expected in prompt_of(fake_llm.requests[1])  # the retry was told what to fix


def test_step_2_must_label_every_rubric_once(fake_llm: FakeOpenAI, fake_llm_config: LLMConfig) -> None:
    incomplete = json.loads(step2_reply())
    incomplete["roles"] = [*incomplete["roles"][:7], {"id": "R99", "role": "implicit"}]
    route(fake_llm, step2=[json.dumps(incomplete), step2_reply()])

    outcome = run_one(fake_llm_config)

    assert outcome.kept
    assert outcome.steps["step2"][0].problems == [
        "`roles` names an unknown rubric 'R99'",
        "no valid role for R8",
    ]


def test_step_2_labels_may_come_as_a_mapping_with_loose_ids(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig
) -> None:
    labels = {str(n) if n % 2 else f"r{n}": {"role": role.upper()} for n, role in enumerate(ROLES, start=1)}
    route(fake_llm, step2=json.dumps({"query": QUERY, "roles": labels}))

    assert run_one(fake_llm_config).kept


def test_a_reply_cut_by_the_token_limit_is_not_trusted(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig
) -> None:
    route(fake_llm, step1=[Reply(content=step1_reply()[:300], finish_reason="length"), step1_reply()])

    outcome = run_one(fake_llm_config)

    assert outcome.kept
    assert "cut off by the output token limit" in outcome.steps["step1"][0].problems[0]


def test_a_failing_endpoint_leaves_the_seed_undecided(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig
) -> None:
    route(fake_llm, step2=Reply(status=500))

    outcome = run_one(fake_llm_config)

    assert outcome.reason == "llm_error" and not outcome.kept and outcome.task is None
    assert len(outcome.steps["step1"]) == 1  # what was done so far is kept for the record


# --- seeds and files


def write_seeds(path: Path, *ids: str) -> Path:
    lines = [json.dumps({"id": seed_id, "topic": f"topic-{seed_id}", "domain": "energy"}) for seed_id in ids]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def tagged_step1(prompt: str) -> str:
    """Step 1 whose criteria carry the seed's topic, so step 2 can tell the seeds apart."""
    match = re.search(r"Topic: (topic-\S+)", prompt)
    assert match is not None
    return step1_reply(rubric_items(tag=match.group(1)))


def flip_for(*topics: str) -> Callable[[str], str]:
    return lambda prompt: (
        step2_reply(flips={4: "explicit"}) if any(t in prompt for t in topics) else step2_reply()
    )


def read_tasks(path: Path) -> list[Task]:
    return [Task.model_validate_json(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_synthesize_file_writes_kept_tasks_and_discards_then_resumes(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig, tmp_path: Path
) -> None:
    seeds = write_seeds(tmp_path / "seeds.jsonl", "a", "b", "c")
    out = tmp_path / "out" / "tasks.jsonl"
    route(fake_llm, step1=tagged_step1, step2=flip_for("topic-b"))

    report = run_file(fake_llm_config, seeds, out, concurrency=2)

    assert report == SynthReport(kept=2, discarded={"role_mismatch": 1}, failed=0, skipped=0, cost_usd=0.0)
    tasks = read_tasks(out)
    assert sorted(task.task_id for task in tasks) == ["synth-a", "synth-c"]
    task_c = next(task for task in tasks if task.task_id == "synth-c")
    assert task_c.rubrics[0].criterion == "topic-c criterion 1" and task_c.prompt == QUERY
    assert discarded_path(out) == tmp_path / "out" / "tasks.discarded.jsonl"
    [line] = discarded_path(out).read_text(encoding="utf-8").splitlines()
    record = json.loads(line)
    assert record["seed_id"] == "b" and record["reason"] == "role_mismatch" and "task" not in record
    assert "R4 ('topic-b criterion 4')" in record["detail"]
    assert SynthOutcome.model_validate_json(line).steps["step2"][0].reply == step2_reply(
        flips={4: "explicit"}
    )

    asked = len(fake_llm.requests)
    again = run_file(fake_llm_config, seeds, out)

    assert again == SynthReport(skipped=3)
    assert len(fake_llm.requests) == asked  # nothing was asked again
    assert len(read_tasks(out)) == 2


def test_only_new_seeds_are_synthesized_on_a_rerun(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig, tmp_path: Path
) -> None:
    out = tmp_path / "tasks.jsonl"
    route(fake_llm, step1=tagged_step1)
    run_file(fake_llm_config, write_seeds(tmp_path / "seeds.jsonl", "a"), out)
    fake_llm.requests.clear()

    report = run_file(fake_llm_config, write_seeds(tmp_path / "seeds.jsonl", "a", "b"), out)

    assert report.kept == 1 and report.skipped == 1
    assert all("topic-a" not in prompt_of(request) for request in fake_llm.requests)
    assert [task.task_id for task in read_tasks(out)] == ["synth-a", "synth-b"]


def test_failed_seeds_are_written_nowhere_and_retried_next_time(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig, tmp_path: Path
) -> None:
    seeds = write_seeds(tmp_path / "seeds.jsonl", "a", "b")
    out = tmp_path / "tasks.jsonl"

    def broken_for_b(prompt: str) -> str | Reply:
        return Reply(status=500) if "topic-b" in prompt else tagged_step1(prompt)

    route(fake_llm, step1=broken_for_b)
    report = run_file(fake_llm_config, seeds, out)

    assert report.kept == 1 and report.failed == 1 and report.discarded == {}
    assert not discarded_path(out).exists()

    route(fake_llm, step1=tagged_step1)
    assert run_file(fake_llm_config, seeds, out) == SynthReport(kept=1, skipped=1)
    assert [task.task_id for task in read_tasks(out)] == ["synth-a", "synth-b"]


def test_a_torn_last_line_is_dropped_and_its_seed_redone(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig, tmp_path: Path
) -> None:
    seeds = write_seeds(tmp_path / "seeds.jsonl", "a", "b")
    out = tmp_path / "tasks.jsonl"
    route(fake_llm, step1=tagged_step1)
    run_file(fake_llm_config, seeds, out)
    first, second = out.read_text(encoding="utf-8").splitlines()
    out.write_text(first + "\n" + second[: len(second) // 2], encoding="utf-8")  # crashed mid-write

    report = run_file(fake_llm_config, seeds, out)

    assert report.kept == 1 and report.skipped == 1
    assert sorted(task.task_id for task in read_tasks(out)) == ["synth-a", "synth-b"]


def test_a_whole_last_line_without_a_newline_is_kept(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig, tmp_path: Path
) -> None:
    out = tmp_path / "tasks.jsonl"
    route(fake_llm, step1=tagged_step1)
    run_file(fake_llm_config, write_seeds(tmp_path / "seeds.jsonl", "a"), out)
    out.write_text(out.read_text(encoding="utf-8").rstrip("\n"), encoding="utf-8")  # hand-edited

    report = run_file(fake_llm_config, write_seeds(tmp_path / "seeds.jsonl", "a", "b"), out)

    assert report.kept == 1 and report.skipped == 1
    assert [task.task_id for task in read_tasks(out)] == ["synth-a", "synth-b"]


def test_a_broken_line_inside_an_output_file_stops_the_run(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig, tmp_path: Path
) -> None:
    out = tmp_path / "tasks.jsonl"
    out.write_text('{"task_id": "synth-a"}\nnot json\n', encoding="utf-8")

    with pytest.raises(ConfigError, match=r"tasks\.jsonl:2: not JSON"):
        run_file(fake_llm_config, write_seeds(tmp_path / "seeds.jsonl", "a", "b"), out)
    assert fake_llm.requests == []


def test_load_seeds_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "seeds.jsonl"
    path.write_text('{"id": "a", "topic": "t"}\n\n{"id": "b"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"seeds\.jsonl:3: not a valid seed: topic: Field required"):
        load_seeds(path)

    path.write_text('{"id": "a", "topic": "t"}\n{"id": "a", "topic": "u"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"seeds\.jsonl:2: seed id 'a' appears twice"):
        load_seeds(path)

    path.write_text('{"id": "a", "topic": "t", "notes": "x"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="notes: Extra inputs are not permitted"):
        load_seeds(path)

    with pytest.raises(ConfigError, match="cannot read seeds file"):
        load_seeds(tmp_path / "missing.jsonl")


def test_the_shipped_sample_seeds_are_valid_and_varied() -> None:
    seeds = load_seeds(sample_seeds_path())

    assert len(seeds) == 5 and len({seed.id for seed in seeds}) == 5
    assert {seed.language for seed in seeds} == {"en", "zh"}
    assert any(seed.document for seed in seeds) and any(seed.outline for seed in seeds)
    assert any(not seed.document and not seed.outline for seed in seeds)
    assert all(seed.domain for seed in seeds)


def test_a_chinese_seed_asks_for_chinese(fake_llm: FakeOpenAI, fake_llm_config: LLMConfig) -> None:
    route(fake_llm)
    seed = next(seed for seed in load_seeds(sample_seeds_path()) if seed.language == "zh")

    outcome = run_one(fake_llm_config, seed)

    assert outcome.kept and outcome.task is not None and outcome.task.meta["language"] == "zh"
    step1_prompt, step2_prompt = prompt_of(fake_llm.requests[0]), prompt_of(fake_llm.requests[1])
    assert "in Simplified Chinese" in step1_prompt and seed.outline[0] in step1_prompt
    assert "Write it in Simplified Chinese" in step2_prompt


def test_concurrency_must_be_positive(fake_llm_config: LLMConfig, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="concurrency"):
        run_file(fake_llm_config, write_seeds(tmp_path / "s.jsonl", "a"), tmp_path / "o.jsonl", concurrency=0)
