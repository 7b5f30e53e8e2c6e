"""The judge's prompt families (issue 14 item 5): each benchmark's ``official`` prompts follow its
released evaluator's inputs, the paper's stay the default, and the cache never mixes the two.

Everything goes through the scripted judge over real HTTP (the fake OpenAI server on loopback); the
assertions read the request bodies the server received.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from deepresearch.cli import app
from deepresearch.errors import ConfigError
from deepresearch.judge.cache import JudgeCache
from deepresearch.judge.grader import Judge, TaskGrades
from deepresearch.judge.rubrics import Rubric, Task
from deepresearch.llm.client import ChatClient, LLMConfig
from tests.fakes.openai_server import FakeOpenAI
from tests.judge.scripted_judge import ScriptedJudge, first_user
from tests.judge.test_protocols import RB_ANSWERS, write_rb, write_rr

runner = CliRunner()

QUESTION = "Why did European solar manufacturers close lines in 2024?"
REPORT = "Module prices fell by half and Chinese exports grew [1]."
TASK = Task(
    task_id="t1",
    prompt=QUESTION,
    rubrics=[
        Rubric(criterion="States the price fall", weight=3, axis="Explicit Criteria"),
        Rubric(criterion="Names the exporters", weight=2, axis="Implicit Criteria"),
        Rubric(criterion="Invents statistics", weight=-1, axis="Communication Quality"),
    ],
)


def grade(config: LLMConfig, **options: Any) -> TaskGrades:
    async def go() -> TaskGrades:
        async with ChatClient(config) as client:
            return await Judge(client, **options).grade(TASK, REPORT)

    return asyncio.run(go())


def prompts_sent(fake_llm: FakeOpenAI) -> list[str]:
    return [first_user(request) for request in fake_llm.requests]


def test_official_researchrubrics_shows_axis_and_weight_not_the_task(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig
) -> None:
    fake_llm.script = ScriptedJudge(
        {"States the price fall": "Satisfied", "Names the exporters": "Not Satisfied"},
        default="Not Satisfied",
    )
    graded = grade(fake_llm_config, prompts="official-researchrubrics")
    sent = prompts_sent(fake_llm)
    assert len(sent) == 3
    for text in sent:
        assert QUESTION not in text  # the released evaluator does not show the task prompt
        assert REPORT in text and "<axis>" in text and "<weight>" in text
    price = next(text for text in sent if "States the price fall" in text)
    assert "<axis>Explicit Criteria</axis>" in price and "<weight>3</weight>" in price
    flaw = next(text for text in sent if "Invents statistics" in text)
    assert "<weight>-1</weight>" in flaw and "<axis>Communication Quality</axis>" in flaw
    # binary answers land on the ternary scale as satisfied / not satisfied
    verdicts = {r.criterion: (r.verdict, r.score) for r in graded.records}
    assert verdicts == {
        "States the price fall": ("satisfied", 1.0),
        "Names the exporters": ("not_satisfied", 0.0),
        "Invents statistics": ("not_satisfied", 0.0),
    }


def test_official_researchrubrics_batches_with_axis_and_weight(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig
) -> None:
    fake_llm.script = ScriptedJudge({}, default="Satisfied")
    graded = grade(fake_llm_config, prompts="official-researchrubrics", batch=4)
    sent = prompts_sent(fake_llm)
    assert len(sent) == 2  # one call per polarity
    positive = next(text for text in sent if "States the price fall" in text)
    assert 'axis="Explicit Criteria" weight="3"' in positive
    assert 'axis="Implicit Criteria" weight="2"' in positive
    assert all(QUESTION not in text for text in sent)
    assert [r.verdict for r in graded.records] == ["satisfied"] * 3


def test_official_researcherbench_shows_the_weight(fake_llm: FakeOpenAI, fake_llm_config: LLMConfig) -> None:
    fake_llm.script = ScriptedJudge({"States the price fall": "yes"}, default="no")
    graded = grade(fake_llm_config, prompts="official-researcherbench")
    price = next(text for text in prompts_sent(fake_llm) if "States the price fall" in text)
    assert "<weight>3 (how important this point is)</weight>" in price and "yes" in price
    assert [r.verdict for r in graded.records] == ["satisfied", "not_satisfied", "not_satisfied"]


def test_paper_family_is_the_default_and_unchanged(fake_llm: FakeOpenAI, fake_llm_config: LLMConfig) -> None:
    fake_llm.script = ScriptedJudge({}, default="partially")
    graded = grade(fake_llm_config)
    sent = prompts_sent(fake_llm)
    assert all(QUESTION in text and "<weight>" not in text and "<axis>" not in text for text in sent)
    assert sum("describes a flaw" in text for text in sent) == 1  # the negative-rubric prompt
    assert [r.score for r in graded.records] == [0.5, 0.5, 0.5]  # ternary partial credit


def test_unknown_family_is_refused(fake_llm_config: LLMConfig) -> None:
    with pytest.raises(ConfigError, match="unknown prompt family"):
        grade(fake_llm_config, prompts="leaderboard")


def test_the_cache_does_not_mix_families(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig, tmp_path: Path
) -> None:
    fake_llm.script = ScriptedJudge({}, default="satisfied")
    cache = tmp_path / "judge.sqlite"
    paper = grade(fake_llm_config, cache=JudgeCache(cache))
    assert paper.calls == 3
    again = grade(fake_llm_config, cache=JudgeCache(cache))
    assert again.calls == 0  # the same family is answered from the cache

    fake_llm.script = ScriptedJudge({}, default="Not Satisfied")
    official = grade(fake_llm_config, cache=JudgeCache(cache), prompts="official-researchrubrics")
    assert official.calls == 3  # asked again: a paper verdict does not answer the official question
    assert [r.verdict for r in official.records] == ["not_satisfied"] * 3
    assert grade(fake_llm_config, cache=JudgeCache(cache), prompts="official-researchrubrics").calls == 0
    other = grade(fake_llm_config, cache=JudgeCache(cache), prompts="official-researcherbench")
    assert other.calls == 3
    assert [r.verdict for r in grade(fake_llm_config, cache=JudgeCache(cache)).records] == ["satisfied"] * 3


def cli_grade(fake_llm: FakeOpenAI, tmp_path: Path, tasks: Path, reports: Path, *extra: str) -> Any:
    out = tmp_path / "run" / "results.jsonl"
    result = runner.invoke(
        app,
        [
            *("judge", "grade", "--tasks", str(tasks), "--reports", str(reports), "--out", str(out)),
            *("--judge-model", "judge-x", "--judge-base-url", fake_llm.base_url),
            *("--cache", str(tmp_path / "cache.sqlite"), *extra),
        ],
    )
    assert result.exit_code == 0, result.output
    return result, json.loads((out.parent / "summary.json").read_text())


def test_protocols_pick_their_official_prompts_and_prompts_paper_overrides(
    fake_llm: FakeOpenAI, tmp_path: Path
) -> None:
    fake_llm.script = ScriptedJudge({}, default="Satisfied")
    tasks, reports = write_rr(tmp_path)
    result, summary = cli_grade(fake_llm, tmp_path, tasks, reports)
    assert summary["protocol"]["prompts"] == "official-researchrubrics"
    assert summary["protocol"]["prompts_overridden"] is False
    assert (
        "protocol: researchrubrics (ternary, failures counted as zero), official-researchrubrics prompts"
        in (result.stdout)
    )
    sent = prompts_sent(fake_llm)
    assert sent and all("<axis>" in text and "Question rr" not in text for text in sent)

    fake_llm.requests.clear()
    result, summary = cli_grade(fake_llm, tmp_path / "paper", tasks, reports, "--prompts", "paper")
    assert summary["protocol"]["prompts"] == "paper" and summary["protocol"]["prompts_overridden"] is True
    assert "paper prompts by --prompts instead of official-researchrubrics" in result.stdout
    sent = prompts_sent(fake_llm)
    assert sent and all("<axis>" not in text and "Question rr" in text for text in sent)


def test_researcherbench_auto_uses_its_official_prompts(fake_llm: FakeOpenAI, tmp_path: Path) -> None:
    fake_llm.script = ScriptedJudge(RB_ANSWERS)
    root, responses = write_rb(tmp_path)
    result, summary = cli_grade(fake_llm, tmp_path, root, responses)
    assert summary["protocol"]["prompts"] == "official-researcherbench"
    assert "official-researcherbench prompts" in result.stdout
    top_k = next(text for text in prompts_sent(fake_llm) if "P1: explains top-k gating" in text)
    assert "<weight>2 (how important this point is)</weight>" in top_k
    assert "How do mixture-of-experts models route tokens?" in top_k  # ResearcherBench shows the question

    bad = runner.invoke(
        app,
        ["judge", "grade", "--tasks", str(root), "--reports", str(responses), "--prompts", "nonsense"],
    )
    assert bad.exit_code != 0 and "--prompts" in bad.output
