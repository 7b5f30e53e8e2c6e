"""The strict RL reward: arithmetic on hand-made records, and end to end with the scripted judge."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from deepresearch.judge import reward as reward_module
from deepresearch.judge.grader import Judge
from deepresearch.judge.records import JudgeRecord, Verdict
from deepresearch.judge.reward import RewardUnavailable, reward, reward_sync, strict_reward
from deepresearch.judge.rubrics import Rubric
from deepresearch.llm.client import ChatClient, LLMConfig
from tests.fakes.openai_server import FakeOpenAI
from tests.judge.scripted_judge import ScriptedJudge, raw

REPORT = "European module makers lost ground in 2024 as prices halved [1].\n\nSeveral plants closed [2]."


def record(verdict: Verdict | None, weight: float, **extra: Any) -> JudgeRecord:
    return JudgeRecord(
        task_id="t",
        criterion=f"criterion {verdict} {weight} {extra}",
        weight=weight,
        role="negative" if weight < 0 else "explicit",
        verdict=verdict,
        failed=verdict is None,
        error="boom" if verdict is None else None,
        **extra,
    )


def test_strict_mapping() -> None:
    records = [
        record("satisfied", 3),  # 3 · 1
        record("partially", 2),  # partial pays nothing: 2 · 0
        record("not_satisfied", 1),  # 1 · 0
        record("partially", -2),  # a flaw partly present is charged in full: -2 · 1
        record("not_satisfied", -1),  # flaw absent: -1 · 0
    ]
    # (3 - 2) / (3 + 2 + 1) = 1/6; the ternary score would have been (3 + 1 - 1) / 6 = 0.5
    assert strict_reward(records) == pytest.approx(1 / 6)
    assert strict_reward([record("satisfied", 2), record("satisfied", -1)]) == pytest.approx(0.5)  # (2-1)/2
    assert strict_reward([record("satisfied", 5)]) == 1.0


def test_fatal_rubrics_zero_the_reward() -> None:
    clean = [record("satisfied", 3), record("satisfied", 1)]
    assert strict_reward([*clean, record("partially", -1, fatal=True)]) == 0.0  # fatal flaw partly present
    assert strict_reward([*clean, record("not_satisfied", -1, fatal=True)]) == pytest.approx(1.0)  # absent
    assert strict_reward([*clean, record("partially", 2, fatal=True)]) == 0.0  # fatal requirement unmet


def test_failed_rubrics_raise_or_count_as_the_worst_verdict():
    records = [record("satisfied", 3), record(None, 2), record("satisfied", -1)]
    with pytest.raises(RewardUnavailable, match="1 of 3 rubrics failed to grade"):
        strict_reward(records)
    # worst: the failed requirement is not satisfied, its weight kept: (3 − 1) / (3 + 2) = 0.4
    # (the old "skip" gave (3 − 1) / 3 = 2/3: more reward because the judge failed)
    assert strict_reward(records, on_failure="worst") == pytest.approx(0.4, rel=0, abs=1e-9)
    # every positive rubric failed: the reward is 0 less the flaw, (0 − 1) / 2, never unavailable
    assert strict_reward([record(None, 2), record("satisfied", -1)], on_failure="worst") == pytest.approx(
        -0.5, rel=0, abs=1e-9
    )
    # a failed flaw is charged: (3 − 2) / 3
    flawed = [record("satisfied", 3), record(None, -2)]
    assert strict_reward(flawed, on_failure="worst") == pytest.approx(1 / 3, rel=0, abs=1e-9)
    with pytest.raises(ValueError, match="unknown on_failure 'skip'"):
        strict_reward(records, on_failure="skip")  # type: ignore[arg-type]


def test_a_failed_positive_rubric_never_earns_more_than_a_satisfied_one():
    others = [record("satisfied", 3), record("partially", 1), record("partially", -1)]
    # strict: satisfied → (3 + 2 − 1) / 6 = 2/3; failed → (3 + 0 − 1) / 6 = 1/3
    satisfied = strict_reward([*others, record("satisfied", 2)])
    failed = strict_reward([*others, record(None, 2)], on_failure="worst")
    assert satisfied == pytest.approx(2 / 3, rel=0, abs=1e-9)
    assert failed == pytest.approx(1 / 3, rel=0, abs=1e-9)
    assert failed < satisfied
    # and no real verdict, on a requirement or a flaw, fatal or not, pays less than a failure
    verdicts: list[Verdict] = ["satisfied", "partially", "not_satisfied"]
    for weight in (2, -2):
        for fatal in (False, True):
            lost = strict_reward([*others, record(None, weight, fatal=fatal)], on_failure="worst")
            for verdict in verdicts:
                assert lost <= strict_reward([*others, record(verdict, weight, fatal=fatal)]), (
                    weight,
                    verdict,
                )


def test_weight_0_rubrics_change_no_reward():
    # (3 − 1) / 3 with or without weight-0 rubrics, graded or failed
    records = [record("satisfied", 3), record("satisfied", -1)]
    zeros = [record("not_satisfied", 0), record(None, 0)]
    assert (
        strict_reward([*records, *zeros]) == strict_reward(records) == pytest.approx(2 / 3, rel=0, abs=1e-9)
    )


RUBRICS = [
    Rubric(criterion="Gives the size of the price drop", weight=4),
    Rubric(criterion="Names the plants that closed", weight=2),
    Rubric(criterion="Compares with US manufacturers", weight=2),
    Rubric(criterion="Cites only one source for key numbers", weight=-3),
    Rubric(criterion="Invents statistics", weight=-1),
]
ANSWERS = {
    "Gives the size of the price drop": "Satisfied",
    "Names the plants that closed": "Partially Satisfied",
    "Compares with US manufacturers": "Not Satisfied",
    "Cites only one source for key numbers": "partially_present",
    "Invents statistics": "absent",
}
# strict: 4·1 + 2·0 + 2·0 - 3·1 - 1·0 = 1, over 4 + 2 + 2 = 8  →  0.125
EXPECTED = 1 / 8


def test_reward_grades_and_scores(fake_llm: FakeOpenAI, fake_llm_config: LLMConfig) -> None:
    fake_llm.script = ScriptedJudge(ANSWERS)

    async def go() -> float:
        async with ChatClient(fake_llm_config) as client:
            return await reward(
                REPORT, RUBRICS, Judge(client), task_prompt="Why did EU solar makers struggle?"
            )

    assert asyncio.run(go()) == pytest.approx(EXPECTED)
    assert len(fake_llm.requests) == len(RUBRICS)
    assert all("Why did EU solar makers struggle?" in r["messages"][0]["content"] for r in fake_llm.requests)


def test_reward_sync_reuses_one_judge(fake_llm: FakeOpenAI, fake_llm_config: LLMConfig) -> None:
    fake_llm.script = ScriptedJudge(ANSWERS)
    client = ChatClient(fake_llm_config)
    judge = Judge(client, batch=5)
    try:
        assert reward_sync(REPORT, RUBRICS, judge) == pytest.approx(EXPECTED)
        assert reward_sync(REPORT, RUBRICS[:1], judge) == 1.0  # same client, same background loop
    finally:
        reward_module._run_in_background(client.aclose())
    assert judge.calls == 3  # [4 positives] + [2 negatives] batches, then one single


def test_reward_refuses_a_failed_grading(fake_llm: FakeOpenAI, fake_llm_config: LLMConfig) -> None:
    fake_llm.script = ScriptedJudge({**ANSWERS, "Invents statistics": raw("I cannot grade this.")})

    async def go(**options: Any) -> float:
        async with ChatClient(fake_llm_config) as client:
            return await reward(REPORT, RUBRICS, Judge(client, max_invalid_retries=0), **options)

    with pytest.raises(RewardUnavailable, match="Invents statistics"):
        asyncio.run(go())
    # worst case: the failed flaw counts as present: 4 − 3 − 1 = 0 over 8
    assert asyncio.run(go(on_failure="worst")) == pytest.approx(0.0, rel=0, abs=1e-9)


def test_reward_does_not_send_weight_0_rubrics(fake_llm: FakeOpenAI, fake_llm_config: LLMConfig) -> None:
    fake_llm.script = ScriptedJudge({**ANSWERS, "Mentions the weather": "Satisfied"})
    rubrics = [*RUBRICS, Rubric(criterion="Mentions the weather", weight=0)]

    async def go() -> float:
        async with ChatClient(fake_llm_config) as client:
            return await reward(REPORT, rubrics, Judge(client))

    assert asyncio.run(go()) == pytest.approx(EXPECTED)
    assert len(fake_llm.requests) == len(RUBRICS)
    assert not any("Mentions the weather" in str(r["messages"]) for r in fake_llm.requests)


def test_reward_needs_a_positive_rubric(fake_llm: FakeOpenAI, fake_llm_config: LLMConfig) -> None:
    async def go() -> float:
        async with ChatClient(fake_llm_config) as client:
            return await reward(REPORT, RUBRICS[3:], Judge(client))

    with pytest.raises(ValueError, match="positive weight"):
        asyncio.run(go())
    assert fake_llm.requests == []
