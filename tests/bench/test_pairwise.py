"""The pairwise judge over the fake OpenAI server: a scripted reviewer answers by which report it reads
first, so the tests see both orders, position bias turning into ties, retries and failures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from deepresearch.bench.pairwise import (
    PairVerdict,
    Reading,
    compare,
    compare_systems,
    games_from_verdicts,
    oriented,
    parse_comparison,
    summarize_pairs,
    summary_table,
    verdict_from_readings,
)
from deepresearch.bench.stats import DIMENSIONS, WTL, elo
from deepresearch.errors import ConfigError
from deepresearch.judge.verdicts import InvalidJudgeOutput
from deepresearch.llm.client import ChatClient, LLMConfig
from tests.fakes.openai_server import FakeOpenAI, Reply

ALPHA = "ALPHA-REPORT: the Rhine is 1,230 km long and flows through six countries."
BETA = "BETA-REPORT: the Rhine is long."
PROMPT = "How long is the Rhine?"

Preferences = dict[str, str]
"""Per key ('overall' and the dimensions): 'alpha', 'beta', 'first', 'second' or a literal label."""


def first_user(request: dict[str, Any]) -> str:
    return str(request["messages"][0]["content"])


def alpha_first(request: dict[str, Any]) -> bool:
    text = first_user(request)
    return text.index("ALPHA-REPORT") < text.index("BETA-REPORT")


def reviewer(preferences: Preferences) -> Callable[[dict[str, Any]], Reply]:
    """A script that prefers ALPHA or BETA whatever the order, or a position (``first``/``second``)."""

    def position(choice: str, request: dict[str, Any]) -> str:
        if choice in ("first", "second"):
            return "1" if choice == "first" else "2"
        if choice in ("alpha", "beta"):
            return "1" if (choice == "alpha") == alpha_first(request) else "2"
        return choice

    def answer(request: dict[str, Any]) -> Reply:
        overall = position(preferences.get("overall", "alpha"), request)
        overall = f"report_{overall}_better" if overall in ("1", "2") else overall
        dimensions = {d: position(preferences.get(d, "tie"), request) for d in DIMENSIONS}
        order = "alpha first" if alpha_first(request) else "beta first"
        body = {"reason": f"scripted, {order}", "dimensions": dimensions, "overall": overall}
        return Reply(content=json.dumps(body))

    return answer


@pytest.fixture
def client(fake_llm_config: LLMConfig) -> ChatClient:
    return ChatClient(fake_llm_config)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _compare(client: ChatClient, **kwargs: Any) -> PairVerdict:
    async with client:
        return await compare(
            PROMPT, ALPHA, BETA, client, task_id="t1", system_a="alpha", system_b="beta", **kwargs
        )


# --- both orders


def test_a_consistent_preference_survives_both_orders(fake_llm: FakeOpenAI, client: ChatClient) -> None:
    fake_llm.script = reviewer(
        {
            "overall": "alpha",
            "information_completeness": "alpha",
            "content_depth": "beta",
            "requirement_fitness": "tie",
            "readability": "first",  # position bias on one dimension
        }
    )
    verdict = run(_compare(client))
    assert not verdict.failed
    assert verdict.overall == "win"
    assert verdict.dimensions == {
        "information_completeness": "win",
        "content_depth": "loss",
        "requirement_fitness": "tie",
        "readability": "tie",  # the two orders disagreed
    }
    assert verdict.judge == "llm:fake-model"
    assert verdict.orders_agree is True
    assert len(fake_llm.requests) == 2
    assert sorted(alpha_first(r) for r in fake_llm.requests) == [False, True]
    assert [r.a_position for r in verdict.readings] == [1, 2]
    assert verdict.readings[0].outcome == "left_better"  # ALPHA shown first and preferred
    assert verdict.readings[1].outcome == "right_better"  # ALPHA shown second and preferred
    assert verdict.readings[0].reason == "scripted, alpha first"


def test_a_judge_that_prefers_a_position_produces_ties(fake_llm: FakeOpenAI, client: ChatClient) -> None:
    fake_llm.script = reviewer({"overall": "first", **dict.fromkeys(DIMENSIONS, "second")})
    verdict = run(_compare(client))
    assert verdict.overall == "tie"
    assert set(verdict.dimensions.values()) == {"tie"}
    assert verdict.orders_agree is False
    assert not verdict.failed


def test_both_outcomes_are_ties(fake_llm: FakeOpenAI, client: ChatClient) -> None:
    fake_llm.script = reviewer({"overall": "both_poor", "content_depth": "alpha"})
    verdict = run(_compare(client))
    assert verdict.overall == "tie"
    assert verdict.dimensions["content_depth"] == "win"
    assert {r.outcome for r in verdict.readings} == {"both_poor"}


def test_the_prompt_is_blind_and_carries_the_request(fake_llm: FakeOpenAI, client: ChatClient) -> None:
    fake_llm.script = reviewer({})
    run(_compare(client))
    for request in fake_llm.requests:
        text = first_user(request)
        assert PROMPT in text
        assert "Report 1" in text and "Report 2" in text
        assert "alpha" not in text.replace("ALPHA-REPORT", "")  # the system names never reach the judge
        for outcome in ("report_1_better", "report_2_better", "both_good", "both_fair", "both_poor"):
            assert outcome in text
        for dimension in DIMENSIONS:
            assert dimension in text


# --- unreadable replies and errors


def test_an_unreadable_reply_is_sent_back_with_the_reason(fake_llm: FakeOpenAI, client: ChatClient) -> None:
    good = reviewer({"overall": "alpha"})
    seen: dict[bool, int] = {}

    def answer(request: dict[str, Any]) -> Reply:
        first = alpha_first(request)
        seen[first] = seen.get(first, 0) + 1
        if first and seen[first] == 1:
            return Reply(content='{"overall": "report_1_better", "dimensions": {"readability": "1"}}')
        return good(request)

    fake_llm.script = answer
    verdict = run(_compare(client))
    assert verdict.overall == "win"
    assert len(fake_llm.requests) == 3
    retry = next(r for r in fake_llm.requests if len(r["messages"]) == 3)
    assert retry["messages"][1]["role"] == "assistant"
    assert "information_completeness" in retry["messages"][2]["content"]
    assert "could not be used" in retry["messages"][2]["content"]


def test_a_reply_that_stays_unreadable_fails_the_comparison(fake_llm: FakeOpenAI, client: ChatClient) -> None:
    fake_llm.script = lambda request: Reply(content="Both reports are fine, I think.")
    verdict = run(_compare(client, max_invalid_retries=1))
    assert verdict.failed
    assert verdict.overall is None
    assert set(verdict.dimensions.values()) == {None}
    assert "no usable judge reply after 2 attempt(s)" in (verdict.error or "")
    assert len(fake_llm.requests) == 4
    summary = summarize_pairs([verdict], resamples=10)
    assert summary.wtl["overall"] == WTL(0, 0, 0, 1)  # failed, never a tie
    assert summary.intervals["overall"] is None


def test_an_endpoint_error_fails_the_comparison(fake_llm: FakeOpenAI, client: ChatClient) -> None:
    good = reviewer({})
    fake_llm.script = lambda request: good(request) if alpha_first(request) else Reply(status=500)
    verdict = run(_compare(client))
    assert verdict.failed
    assert verdict.overall is None
    assert "order B first: LLM" in (verdict.error or "")


# --- parsing


@pytest.mark.parametrize(
    "text",
    [
        '```json\n{"reason": "r", "dimensions": {"information_completeness": "1", "content_depth": 2, '
        '"requirement_fitness": "tie", "readability": "Report 1"}, "overall": "Report 1 better"}\n```',
        'Thinking first. {"overall": "report_1_better", "Information Completeness": "1", '
        '"content depth": "2", "requirement_fitness": "equal", "readability": {"preference": "1"}, '
        '"reason": "r"}',
        '{"overall": "1", "dimensions": [{"dimension": "information_completeness", "preference": "1"}, '
        '{"dimension": "content_depth", "preference": "2"}, {"dimension": "requirement_fitness", '
        '"preference": "tie"}, {"dimension": "readability", "preference": "left"}], "reasoning": "r"}',
    ],
)
def test_parse_comparison_reads_common_shapes(text: str) -> None:
    judgment = parse_comparison(text)
    assert judgment.outcome == "left_better"
    assert judgment.dimensions == {
        "information_completeness": "left",
        "content_depth": "right",
        "requirement_fitness": "tie",
        "readability": "left",
    }
    assert judgment.reason == "r"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("I cannot evaluate these reports.", "declined"),
        ("no json here", "no JSON"),
        ('{"overall": "tie", "dimensions": {}}', '"overall" is'),
        (
            '{"overall": "both_fair", "dimensions": {"information_completeness": "1"}}',
            '"content_depth" is None',
        ),
        (
            '{"overall": "both_fair", "dimensions": {"information_completeness": "1", "content_depth": "3", '
            '"requirement_fitness": "1", "readability": "1"}}',
            'not "1", "2" or "tie"',
        ),
    ],
)
def test_parse_comparison_says_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(InvalidJudgeOutput, match=problem):
        parse_comparison(text)


# --- many tasks


def test_compare_systems_covers_every_task(fake_llm: FakeOpenAI, client: ChatClient) -> None:
    fake_llm.script = reviewer({"overall": "alpha", "readability": "beta"})
    system_a = {"t1": ALPHA, "t2": ALPHA, "t3": ALPHA}
    system_b = {"t2": BETA, "t1": BETA, "t4": BETA}
    prompts = {"t1": PROMPT, "t2": PROMPT, "t3": PROMPT}
    seen: list[str] = []

    async def go() -> list[PairVerdict]:
        async with client:
            return await compare_systems(
                system_a,
                system_b,
                prompts,
                client,
                2,
                name_a="alpha",
                name_b="beta",
                on_verdict=lambda v: seen.append(v.task_id),
            )

    verdicts = run(go())
    assert [v.task_id for v in verdicts] == ["t1", "t2", "t3", "t4"]
    assert [v.overall for v in verdicts] == ["win", "win", None, None]
    assert verdicts[2].error == "no report from beta"
    assert verdicts[3].error == "no task prompt"
    assert sorted(seen) == ["t1", "t2", "t3", "t4"]
    assert len(fake_llm.requests) == 4
    summary = summarize_pairs(verdicts, resamples=100)
    assert summary.wtl["overall"] == WTL(2, 0, 0, 2)
    assert summary.wtl["readability"] == WTL(0, 0, 2, 2)
    assert summary.wtl["content_depth"] == WTL(0, 2, 0, 2)
    assert summary.order_agreement == 1.0
    assert summary.judges == ("llm:fake-model",)


def test_a_missing_report_can_count_as_a_loss(fake_llm: FakeOpenAI, client: ChatClient) -> None:
    fake_llm.script = reviewer({"overall": "beta"})

    async def go() -> list[PairVerdict]:
        async with client:
            return await compare_systems(
                {"t1": ALPHA}, {"t1": BETA, "t2": BETA}, {"t1": PROMPT, "t2": PROMPT}, client, missing="loss"
            )

    verdicts = run(go())
    assert [v.overall for v in verdicts] == ["loss", "loss"]
    assert "counted as its loss" in (verdicts[1].error or "")
    assert verdicts[1].dimensions == dict.fromkeys(DIMENSIONS, "loss")
    with pytest.raises(ConfigError):
        run(compare_systems({}, {}, {}, client, 0))


# --- summaries and files


def reading(position: int, outcome: str, preference: str = "tie") -> Reading:
    return Reading.model_validate(
        {"a_position": position, "outcome": outcome, "dimensions": dict.fromkeys(DIMENSIONS, preference)}
    )


def test_summaries_orient_every_verdict_from_one_side() -> None:
    a_wins = verdict_from_readings(
        [reading(1, "left_better", "left"), reading(2, "right_better", "right")],
        task_id="t1",
        system_a="x",
        system_b="y",
        judge="llm:m",
    )
    assert a_wins.overall == "win"
    assert a_wins.dimensions == dict.fromkeys(DIMENSIONS, "win")
    seen_from_y = verdict_from_readings(
        [reading(1, "left_better")], task_id="t2", system_a="y", system_b="x", judge="human:ann"
    )
    assert seen_from_y.overall == "win"  # y won t2
    flipped = oriented(seen_from_y, "x")
    assert (flipped.system_a, flipped.overall, flipped.readings[0].a_position) == ("x", "loss", 2)
    summary = summarize_pairs([a_wins, seen_from_y], system_a="x", resamples=50)
    assert summary.wtl["overall"] == WTL(1, 0, 1, 0)
    assert summary.wtl["readability"] == WTL(1, 1, 0, 0)
    assert summary.order_agreement == 1.0  # only a_wins has two readings
    assert summary.judges == ("human:ann", "llm:m")
    table = summary_table(summary)
    assert table.row_count == 5
    with pytest.raises(ValueError, match="does not involve"):
        oriented(a_wins, "z")


def test_games_feed_bradley_terry() -> None:
    def won(task_id: str, a: str, b: str) -> PairVerdict:
        return verdict_from_readings(
            [reading(1, "left_better")], task_id=task_id, system_a=a, system_b=b, judge="j"
        )

    verdicts = [won("t1", "x", "y"), won("t2", "x", "y"), won("t3", "y", "x")]
    games = games_from_verdicts(verdicts)
    assert [(g.a, g.b, g.result) for g in games] == [("x", "y", "win"), ("x", "y", "win"), ("y", "x", "win")]
    ratings = elo(games, prior=0)  # 2 : 1, a gap of 400·log10(2) = 120.41
    assert ratings["x"] - ratings["y"] == pytest.approx(120.41, abs=0.01)
    with pytest.raises(ValueError):
        games_from_verdicts(verdicts, key="style")
