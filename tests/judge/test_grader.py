"""The grader against the fake OpenAI server with a scripted judge (real HTTP, real retries), plus the
pure parts: verdict parsing and report splitting."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from deepresearch.errors import ConfigError
from deepresearch.judge import grader as grader_module
from deepresearch.judge.cache import JudgeCache
from deepresearch.judge.grader import (
    TEMPLATES,
    Judge,
    TaskGrades,
    judge_llm_config,
    prompt_version,
    split_report,
)
from deepresearch.judge.records import JudgeRecord
from deepresearch.judge.rubrics import Rubric, Task
from deepresearch.judge.verdicts import (
    InvalidJudgeOutput,
    majority,
    normalize_verdict,
    parse_batch,
    parse_evidence,
    parse_verdict,
)
from deepresearch.llm.client import ChatClient, LLMConfig
from deepresearch.llm.pricing import Price
from deepresearch.llm.tokens import count_tokens
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.judge.scripted_judge import GARBLE, OMIT, ScriptedJudge, criteria_of, kind_of, raw

QUESTION = "How did the 2024 solar module price collapse affect European manufacturers?"
REPORT = "\n\n".join(
    f"Paragraph {n}. Module prices fell by roughly half between 2023 and 2024, and European plants "
    f"closed lines as Chinese exports grew; this paragraph adds detail number {n} with a citation [{n}]."
    for n in range(1, 9)
)


def rubric(criterion: str, weight: float = 1.0, **extra: Any) -> Rubric:
    return Rubric(criterion=criterion, weight=weight, **extra)


def task(*rubrics: Rubric, task_id: str = "t1") -> Task:
    return Task(task_id=task_id, prompt=QUESTION, rubrics=list(rubrics))


def grade(
    config: LLMConfig, the_task: Task, report: str = REPORT, **options: Any
) -> tuple[TaskGrades, Judge]:
    async def go() -> tuple[TaskGrades, Judge]:
        async with ChatClient(config) as client:
            judge = Judge(client, **options)
            return await judge.grade(the_task, report), judge

    return asyncio.run(go())


def by_criterion(records: list[JudgeRecord]) -> dict[str, JudgeRecord]:
    return {record.criterion: record for record in records}


# --- parsing (pure)


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Satisfied", "satisfied"),
        ("Partially Satisfied", "partially"),
        ("Not Satisfied", "not_satisfied"),
        ("partially_satisfied", "partially"),
        ("NOT_SATISFIED", "not_satisfied"),
        ("partially", "partially"),
        ("present", "satisfied"),  # a flaw that is present: the negative criterion holds
        ("partially_present", "partially"),
        ("Absent", "not_satisfied"),
        ("not present", "not_satisfied"),
        ("Yes.", "satisfied"),
        (1, "satisfied"),
        ("0.5", "partially"),
        (0, "not_satisfied"),
        ("satisfied | partially | not_satisfied", None),  # the option list echoed back
        ("N/A", None),
        ("unclear", None),
        (None, None),
    ],
)
def test_normalize_verdict(label: Any, expected: str | None) -> None:
    assert normalize_verdict(label) == expected


def test_parse_verdict_tolerates_fences_prose_and_truncation() -> None:
    fenced = (
        '```json\n{"verdict": "Partially Satisfied", "score": 0.5, "confidence": "85%", '
        '"reasoning": "Half of it.", "evidence": "one quote"}\n```'
    )
    trial = parse_verdict(fenced)
    assert (trial.verdict, trial.score, trial.confidence) == ("partially", 0.5, 0.85)
    assert trial.evidence == ["one quote"] and trial.reasoning == "Half of it."
    prose = (
        'Let me check the report first.\n\n{"verdict": "Not Satisfied", "reasoning": "Nothing on it"} done'
    )
    assert parse_verdict(prose).verdict == "not_satisfied"
    assert parse_verdict('{"verdict": "satisfied", "reasoning": "cut off her').verdict == "satisfied"
    assert parse_verdict('{"score": 1, "reasoning": "no verdict key"}').verdict == "satisfied"
    assert parse_verdict("Verdict: Partially Satisfied because the data is old.").verdict == "partially"
    assert parse_verdict("**Not Satisfied**").verdict == "not_satisfied"  # a bare label
    assert parse_verdict('{"results": [{"index": 1, "verdict": "present"}]}').verdict == "satisfied"
    thinking = '{"draft": "maybe partially"}\n{"verdict": "satisfied", "reasoning": "final"}'
    assert parse_verdict(thinking).reasoning == "final"
    # A verdict the model wrote wins over an inconsistent score.
    assert parse_verdict('{"verdict": "absent", "score": 1}').score == 0.0


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("", "empty"),
        ("I can't evaluate this report without access to the sources.", "declined"),
        ('{"verdict": "N/A", "reasoning": "I am unable to assess this."}', "declined"),
        ('{"verdict": "maybe"}', "no recognisable verdict"),
        ("The report is fine overall.", "no JSON"),
    ],
)
def test_parse_verdict_refuses_unusable_replies(reply: str, reason: str) -> None:
    with pytest.raises(InvalidJudgeOutput, match=reason):
        parse_verdict(reply)


def test_parse_batch_keys_by_index_and_skips_garbled_items() -> None:
    text = json.dumps(
        {
            "results": [
                {"index": 2, "verdict": "absent"},
                {"index": "1", "verdict": "Satisfied"},
                {"index": 3, "verdict": "???"},
                {"index": 9, "verdict": "satisfied"},
            ]
        }
    )
    found = parse_batch(text, 3)
    assert {index: trial.verdict for index, trial in found.items()} == {1: "satisfied", 2: "not_satisfied"}
    # Without indices, exactly one entry per item is read in order; a mapping keyed by index works too.
    assert parse_batch('[{"verdict": "yes"}, {"verdict": "no"}]', 2)[2].verdict == "not_satisfied"
    assert parse_batch('{"1": {"verdict": "partially"}}', 1)[1].verdict == "partially"
    with pytest.raises(InvalidJudgeOutput):
        parse_batch('{"results": [{"index": 1, "verdict": "???"}]}', 1)


def test_parse_evidence() -> None:
    text = '{"evidence": [{"index": 1, "quotes": ["a", {"quote": "b"}], "note": "two bits"}]}'
    found = parse_evidence(text, 2, part=3)
    assert found[1].quotes == ["a", "b"] and found[1].part == 3 and 2 not in found
    assert parse_evidence('{"evidence": []}', 2, part=1) == {}
    with pytest.raises(InvalidJudgeOutput):
        parse_evidence("I could not read this part.", 2, part=1)
    with pytest.raises(InvalidJudgeOutput):
        parse_evidence('{"verdict": "satisfied"}', 1, part=1)


def test_majority_and_ties() -> None:
    assert majority(["satisfied", "satisfied", "not_satisfied"]) == "satisfied"
    assert majority(["satisfied", "not_satisfied"]) == "partially"  # tie: the middle verdict
    assert majority(["satisfied", "partially", "not_satisfied"]) == "partially"
    assert majority(["not_satisfied"]) == "not_satisfied"


def test_split_report_cuts_at_paragraphs_and_keeps_everything() -> None:
    chunks = split_report(REPORT, 80)
    assert len(chunks) > 1
    assert all(count_tokens(chunk) <= 80 for chunk in chunks)
    assert "\n\n".join(chunks) == REPORT  # paragraphs whole, nothing lost, nothing reordered
    assert all(chunk.startswith("Paragraph") for chunk in chunks)
    # One paragraph longer than a chunk is cut at sentences, then words.
    long = " ".join(f"Sentence {n} says something about module prices." for n in range(60))
    pieces = split_report(long, 30)
    assert all(count_tokens(piece) <= 30 for piece in pieces)
    assert " ".join(pieces).split() == long.split()
    assert split_report("short", 30) == ["short"]


def test_prompt_version_is_stable_and_temperature_zero_config(fake_llm_config: LLMConfig) -> None:
    assert prompt_version() == prompt_version() and len(prompt_version()) == 16
    for name in TEMPLATES:  # every template the grader renders is versioned
        assert (Path(grader_module.__file__).parent / "prompts" / name).is_file()
    assert judge_llm_config(fake_llm_config).temperature == 0.0
    with pytest.raises(ConfigError, match="trials"):
        Judge(ChatClient(fake_llm_config), trials=0)


# --- grading against the fake server


def test_positive_and_negative_rubrics_with_researchrubrics_labels(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig
) -> None:
    fake_llm.script = ScriptedJudge(
        {
            "States the size of the price drop": "Satisfied",
            "Names European manufacturers": "Partially Satisfied",
            "Relies on a single source": "partially_present",
            "Contains unsupported speculation": "absent",
        }
    )
    the_task = task(
        rubric("States the size of the price drop", 3, axis="Explicit Criteria"),
        rubric("Names European manufacturers", 2),
        rubric("Relies on a single source", -2),
        rubric("Contains unsupported speculation", -1, fatal=True),
    )
    result, _ = grade(judge_llm_config(fake_llm_config), the_task, model_name="judge-x")
    records = by_criterion(result.records)
    assert [r.criterion for r in result.records] == [r.criterion for r in the_task.rubrics]  # rubric order
    size = records["States the size of the price drop"]
    assert (size.verdict, size.score, size.axis, size.weight) == ("satisfied", 1.0, "Explicit Criteria", 3)
    assert size.evidence == ["a scripted quote"] and size.reasoning == "scripted: Satisfied"
    assert size.judge_model == "judge-x" and not size.failed
    assert records["Names European manufacturers"].verdict == "partially"
    single_source = records["Relies on a single source"]
    assert (single_source.verdict, single_source.score, single_source.role) == ("partially", 0.5, "negative")
    speculation = records["Contains unsupported speculation"]
    assert (speculation.verdict, speculation.fatal) == ("not_satisfied", True)
    # One call per rubric, each with the question, the report and the right template, at temperature 0.
    assert len(fake_llm.requests) == 4 and result.calls == 4
    for request in fake_llm.requests:
        prompt = request["messages"][0]["content"]
        assert QUESTION in prompt and REPORT in prompt and request["temperature"] == 0.0
        negative = criteria_of(request)[0] in (
            "Relies on a single source",
            "Contains unsupported speculation",
        )
        assert ("describes a flaw" in prompt) is negative
        assert ('"present" | "partially_present" | "absent"' in prompt) is negative


@pytest.mark.parametrize(
    ("trials", "answers", "verdict", "score"),
    [
        (3, ["satisfied", "satisfied", "not_satisfied"], "satisfied", 2 / 3),
        (3, ["satisfied", "partially", "not_satisfied"], "partially", 0.5),  # 1/1/1: the middle
        (2, ["satisfied", "not_satisfied"], "partially", 0.5),  # 1/1: the middle
        (3, ["not_satisfied", "partially", "partially"], "partially", 1 / 3),
    ],
)
def test_trials_majority_and_mean_score(
    fake_llm: FakeOpenAI,
    fake_llm_config: LLMConfig,
    trials: int,
    answers: list[str],
    verdict: str,
    score: float,
) -> None:
    fake_llm.script = ScriptedJudge({"Covers tariffs": list(answers)})
    result, _ = grade(fake_llm_config, task(rubric("Covers tariffs")), trials=trials)
    (record,) = result.records
    assert record.verdict == verdict and record.score == pytest.approx(score)
    assert sorted(t.verdict for t in record.trials) == sorted(answers)
    assert len(fake_llm.requests) == trials and record.error is None


def test_invalid_reply_is_retried_with_the_reason(fake_llm: FakeOpenAI, fake_llm_config: LLMConfig) -> None:
    fake_llm.script = ScriptedJudge({"Covers tariffs": [raw("Looks good to me!"), "satisfied"]})
    result, _ = grade(fake_llm_config, task(rubric("Covers tariffs")))
    (record,) = result.records
    assert record.verdict == "satisfied" and not record.failed
    first, second = fake_llm.requests
    assert len(first["messages"]) == 1
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    assert second["messages"][1]["content"] == "Looks good to me!"
    assert "could not be used: no JSON object" in second["messages"][2]["content"]


def test_always_invalid_fails_the_rubric_never_zero(fake_llm: FakeOpenAI, fake_llm_config: LLMConfig) -> None:
    fake_llm.script = ScriptedJudge(
        {"Covers tariffs": raw('{"verdict": "unclear"}'), "Names firms": "satisfied"}
    )
    result, _ = grade(
        fake_llm_config, task(rubric("Covers tariffs"), rubric("Names firms")), max_invalid_retries=1
    )
    records = by_criterion(result.records)
    bad = records["Covers tariffs"]
    assert bad.failed and bad.verdict is None and bad.score is None and bad.trials == []
    assert (
        bad.error is not None and "after 2 attempt(s)" in bad.error and "no recognisable verdict" in bad.error
    )
    assert records["Names firms"].verdict == "satisfied"
    assert len(fake_llm.requests) == 3  # 1 + 1 retry for the bad one, 1 for the good one


def test_refusal_is_an_invalid_reply(fake_llm: FakeOpenAI, fake_llm_config: LLMConfig) -> None:
    fake_llm.script = ScriptedJudge({"Covers tariffs": raw("I'm sorry, but I can't evaluate this report.")})
    result, _ = grade(fake_llm_config, task(rubric("Covers tariffs")), max_invalid_retries=2)
    (record,) = result.records
    assert record.failed and record.error is not None and "declined to grade" in record.error
    assert len(fake_llm.requests) == 3


def test_timeout_fails_that_rubric_and_the_others_succeed(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig
) -> None:
    fake_llm.script = ScriptedJudge(
        {"Slow criterion": Reply(content="{}", delay=3.0), "Fast one": "satisfied", "Fast two": "absent"}
    )
    config = fake_llm_config.model_copy(update={"timeout": 0.5, "max_retries": 1})
    the_task = task(rubric("Slow criterion"), rubric("Fast one"), rubric("Fast two", -1))
    result, _ = grade(config, the_task)
    records = by_criterion(result.records)
    slow = records["Slow criterion"]
    assert slow.failed and slow.verdict is None and slow.error is not None and "LLMTimeout" in slow.error
    assert records["Fast one"].verdict == "satisfied" and records["Fast two"].verdict == "not_satisfied"
    assert len(fake_llm.requests) == 4  # the slow one was tried twice (the client's retry)


def test_some_failed_trials_keep_the_others(fake_llm: FakeOpenAI, fake_llm_config: LLMConfig) -> None:
    fake_llm.script = ScriptedJudge({"Covers tariffs": [raw("?"), "partially", "partially"]})
    result, _ = grade(fake_llm_config, task(rubric("Covers tariffs")), trials=2, max_invalid_retries=0)
    (record,) = result.records
    assert not record.failed and record.verdict == "partially" and len(record.trials) == 1
    assert record.error is not None and record.error.startswith("1 of 2 trials failed")


def test_batch_agrees_with_single_calls_and_costs_fewer_tokens(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig
) -> None:
    answers = {
        "States the size of the price drop": "satisfied",
        "Names European manufacturers": "partially",
        "Explains the role of Chinese exports": "satisfied",
        "Gives a timeline": "not_satisfied",
        "Relies on a single source": "absent",
        "Overstates certainty": "partially_present",
    }
    weights = [3, 2, 2, 1, -2, -1]
    the_task = task(*(rubric(text, weight) for text, weight in zip(answers, weights, strict=True)))

    fake_llm.script = ScriptedJudge(answers)
    single, _ = grade(fake_llm_config, the_task, batch=1)
    single_requests = list(fake_llm.requests)
    fake_llm.reset()
    fake_llm.script = ScriptedJudge(answers)
    batched, _ = grade(fake_llm_config, the_task, batch=3)

    agreement = sum(
        a.verdict == b.verdict for a, b in zip(single.records, batched.records, strict=True)
    ) / len(single.records)
    assert agreement == 1.0
    assert [r.verdict for r in batched.records] == [
        "satisfied",
        "partially",
        "satisfied",
        "not_satisfied",
        "not_satisfied",
        "partially",
    ]
    # Six single calls; batched: [3 positives], [1 positive], [2 negatives] — polarity never mixes.
    assert len(single_requests) == 6 and {kind_of(r) for r in single_requests} == {"single"}
    assert sorted(len(criteria_of(r)) for r in fake_llm.requests) == [1, 2, 3]
    assert all(kind_of(r) == "batch" or len(criteria_of(r)) == 1 for r in fake_llm.requests)
    # The report is sent once per call instead of once per rubric.
    assert batched.usage.prompt_tokens < single.usage.prompt_tokens
    saving = 1 - batched.usage.prompt_tokens / single.usage.prompt_tokens
    assert saving > 0.4, f"batch=3 saved only {saving:.0%} of prompt tokens"
    # The batch prompt asks for indexed results, in the polarity's own labels.
    negative_batch = next(r for r in fake_llm.requests if "Overstates certainty" in criteria_of(r))
    assert '"present" | "partially_present" | "absent"' in negative_batch["messages"][0]["content"]


def test_batch_falls_back_to_single_calls_for_missing_items(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig
) -> None:
    fake_llm.script = ScriptedJudge(
        {"A": "satisfied", "B": [OMIT, "partially"], "C": [GARBLE, "not_satisfied"]}
    )
    result, _ = grade(fake_llm_config, task(rubric("A"), rubric("B"), rubric("C")), batch=3)
    assert [r.verdict for r in result.records] == ["satisfied", "partially", "not_satisfied"]
    kinds = [kind_of(r) for r in fake_llm.requests]
    assert kinds[0] == "batch" and sorted(kinds[1:]) == ["single", "single"]
    assert sorted(c for r in fake_llm.requests[1:] for c in criteria_of(r)) == ["B", "C"]


def test_long_report_is_read_in_parts_then_synthesised(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig
) -> None:
    fake_llm.script = ScriptedJudge({"Covers tariffs": "partially"})
    result, _ = grade(fake_llm_config, task(rubric("Covers tariffs")), max_report_tokens=100)
    (record,) = result.records
    assert record.verdict == "partially" and not record.failed
    parts = split_report(REPORT, 100)
    kinds = [kind_of(r) for r in fake_llm.requests]
    assert len(parts) >= 3 and kinds == ["chunk"] * len(parts) + ["synthesis"]
    chunk_prompts = [r["messages"][0]["content"] for r in fake_llm.requests[:-1]]
    for part in parts:  # every part was shown once, with the question, and the whole report never
        assert sum(part in prompt for prompt in chunk_prompts) == 1
    assert all(QUESTION in prompt and REPORT not in prompt for prompt in chunk_prompts)
    synthesis = fake_llm.requests[-1]["messages"][0]["content"]
    assert f"read in {len(parts)} parts" in synthesis and REPORT not in synthesis
    for part in parts:  # the evidence the scripted judge quoted from each part reached the synthesis
        assert f"[part {parts.index(part) + 1}] seen: Covers tariffs" in synthesis
        assert part.splitlines()[0] in synthesis


def test_long_report_with_a_batch_of_rubrics(fake_llm: FakeOpenAI, fake_llm_config: LLMConfig) -> None:
    fake_llm.script = ScriptedJudge({"A": "satisfied", "B": [OMIT, "not_satisfied"]})
    result, _ = grade(fake_llm_config, task(rubric("A"), rubric("B")), max_report_tokens=100, batch=2)
    assert [r.verdict for r in result.records] == ["satisfied", "not_satisfied"]
    kinds = [kind_of(r) for r in fake_llm.requests]
    parts = len(split_report(REPORT, 100))
    # chunk calls for both rubrics at once, one synthesis, and one more for the item it left out
    assert kinds == ["chunk"] * parts + ["synthesis", "synthesis"]
    assert criteria_of(fake_llm.requests[-1]) == ["B"]


def test_cache_answers_a_rerun_without_requests(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig, tmp_path: Path
) -> None:
    path = tmp_path / "judge-cache.sqlite"
    the_task = task(rubric("A"), rubric("B", -1), rubric("C"))
    fake_llm.script = ScriptedJudge({"A": "satisfied", "B": "present", "C": "partially"})
    first, _ = grade(fake_llm_config, the_task, cache=JudgeCache(path))
    assert len(fake_llm.requests) == 3 and path.is_file()

    fake_llm.reset()  # no script: any request would now fail with a 500
    again, judge = grade(fake_llm_config, the_task, cache=JudgeCache(path))
    assert fake_llm.requests == [] and again.calls == 0 and judge.usage.prompt_tokens == 0
    assert [r.verdict for r in again.records] == [r.verdict for r in first.records]
    assert [r.trials for r in again.records] == [r.trials for r in first.records]

    # Another report, another judge model, or a second trial is a different question.
    fake_llm.script = ScriptedJudge({"A": "satisfied", "B": "present", "C": "partially"})
    grade(fake_llm_config, the_task, report=REPORT + "\n\nA new paragraph.", cache=JudgeCache(path))
    assert len(fake_llm.requests) == 3
    grade(fake_llm_config, the_task, model_name="other-judge", cache=JudgeCache(path))
    assert len(fake_llm.requests) == 6
    grade(fake_llm_config, the_task, trials=2, cache=JudgeCache(path))
    assert len(fake_llm.requests) == 9  # trial 0 from the cache, trial 1 asked


def test_cache_with_batches_and_fallbacks(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig, tmp_path: Path
) -> None:
    path = tmp_path / "judge-cache.sqlite"
    the_task = task(rubric("A"), rubric("B"))
    fake_llm.script = ScriptedJudge({"A": "satisfied", "B": [OMIT, "partially"]})
    grade(fake_llm_config, the_task, batch=2, cache=JudgeCache(path))
    assert len(fake_llm.requests) == 2
    fake_llm.reset()
    again, _ = grade(fake_llm_config, the_task, batch=2, cache=JudgeCache(path))
    assert fake_llm.requests == [] and [r.verdict for r in again.records] == ["satisfied", "partially"]


def test_cost_tally_per_record_task_and_total(fake_llm: FakeOpenAI, fake_llm_config: LLMConfig) -> None:
    config = fake_llm_config.model_copy(update={"prices": {"fake-model": Price(1.0, 2.0)}})
    fake_llm.script = ScriptedJudge({"A": "satisfied", "B": "absent", "C": "partially"})
    tasks = [
        task(rubric("A"), rubric("B", -1), task_id="t1"),
        task(rubric("C"), rubric("A"), rubric("B", -1), task_id="t2"),
        task(rubric("A"), task_id="no-report"),
    ]
    reports = {"t1": REPORT, "t2": REPORT[:400]}

    async def go() -> tuple[list[TaskGrades], Judge]:
        async with ChatClient(config) as client:
            judge = Judge(client, batch=2, concurrency=2)
            return [grades async for grades in judge.grade_many(tasks, reports)], judge

    results, judge = asyncio.run(go())
    by_task = {grades.task_id: grades for grades in results}
    assert set(by_task) == {"t1", "t2", "no-report"}
    missing = by_task["no-report"].records[0]
    assert missing.failed and missing.error == "no report for task no-report"
    assert judge.calls == len(fake_llm.requests) == sum(g.calls for g in results) == 4
    total = sum(g.usage.cost_usd for g in results)
    assert judge.usage.cost_usd == pytest.approx(total) and total > 0
    tokens = sum(g.usage.prompt_tokens for g in results)
    assert judge.usage.prompt_tokens == tokens
    for grades in results:  # each call's cost is split between the rubrics it graded
        assert sum(r.cost_usd for r in grades.records) == pytest.approx(grades.usage.cost_usd)
        expected = (grades.usage.prompt_tokens * 1.0 + grades.usage.completion_tokens * 2.0) / 1e6
        assert grades.usage.cost_usd == pytest.approx(expected)
    assert by_task["t1"].usage.prompt_tokens > by_task["t2"].usage.prompt_tokens  # a longer report


def test_unusable_cache_file_is_bypassed(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "not-a-cache.sqlite"
    path.write_bytes(b"this is not an SQLite database, and it must survive untouched" * 20)
    before = path.read_bytes()
    fake_llm.script = ScriptedJudge({"A": "satisfied"})
    result, _ = grade(fake_llm_config, task(rubric("A")), cache=JudgeCache(path))
    assert result.records[0].verdict == "satisfied" and len(fake_llm.requests) == 1
    assert path.read_bytes() == before
    assert any("judge cache" in message and "unusable" in message for message in caplog.messages)
