"""`train judge-data` and judge–teacher agreement: a teacher judge grades the sample tasks over the fake
server, its records become chat samples whose prompts are byte for byte the requests the teacher got,
split by task; the data trains with the plain `train sft`; a student served by the same kind of server
is compared with the teacher through `judge agreement`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from deepresearch.cli import app
from deepresearch.cli.train_judge import judge_agreement, train_judge_data
from deepresearch.errors import ConfigError
from deepresearch.judge.loaders import load_tasks, sample_tasks_path
from deepresearch.judge.records import JudgeRecord, Trial
from deepresearch.judge.verdicts import parse_verdict
from deepresearch.train.judge_data import (
    build_judge_data,
    load_records,
    split_tasks,
    teacher_agreement,
    teacher_reply,
)
from tests.judge.scripted_judge import ScriptedJudge, raw

runner = CliRunner()
LABELS = ("satisfied", "partially", "not_satisfied")
REFUSAL = "I cannot evaluate this report."


def commands() -> typer.Typer:
    """The three commands as the lead registers them (here on a bare app of our own)."""
    local = typer.Typer()
    local.command("judge-data")(train_judge_data)
    local.command("agreement")(judge_agreement)
    return local


def write_reports(folder: Path) -> Path:
    reports = folder / "reports"
    reports.mkdir()
    for task in load_tasks(sample_tasks_path()).tasks:
        (reports / f"{task.task_id}.md").write_text(
            f"# {task.task_id}\n\nA short report on {task.prompt[:60]}.\n\n## References\n[1] docs"
        )
    return reports


def teacher_answers(shift: int = 0) -> dict[str, Any]:
    """A verdict per criterion of the sample tasks, cycling through the three labels."""
    answers: dict[str, Any] = {}
    for task in load_tasks(sample_tasks_path()).tasks:
        for index, rubric in enumerate(task.rubrics):
            answers[rubric.criterion] = LABELS[(index + shift) % 3]
    return answers


def grade(
    fake_llm: Any, folder: Path, reports: Path, model: str, answers: dict[str, Any], prompts: str = "auto"
) -> Path:
    """``judge grade`` of every sample task by ``model`` over the fake server (``auto``: the task
    file's protocol, ResearchRubrics' official binary prompts); the records' path."""
    fake_llm.script = ScriptedJudge(answers)
    out = folder / model / "results.jsonl"
    result = runner.invoke(
        app,
        [
            *("judge", "grade", "--tasks", str(sample_tasks_path()), "--reports", str(reports)),
            *("--judge-model", model, "--judge-base-url", fake_llm.base_url, "--out", str(out)),
            *("--cache", str(folder / f"{model}.sqlite")),
            *(("--prompts", prompts) if prompts != "auto" else ()),
        ],
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(params=["auto", "paper"])
def teacher(
    fake_llm: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[Path, Path, list[dict[str, Any]]]:
    """The teacher's records (one rubric refused every time, so it fails), the reports, and the
    requests the teacher received; graded with the official binary prompts, then the paper's."""
    reports = write_reports(tmp_path)
    answers = teacher_answers()
    failing = load_tasks(sample_tasks_path()).tasks[1].rubrics[0].criterion
    answers[failing] = raw(REFUSAL)
    records = grade(fake_llm, tmp_path, reports, "teacher-x", answers, request.param)
    return records, reports, list(fake_llm.requests)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_samples_carry_the_exact_grader_prompt_and_the_teacher_verdict(teacher, tmp_path: Path) -> None:
    records_path, reports, requests = teacher
    records = load_records(records_path)
    out = tmp_path / "judge-data"

    report = build_judge_data(
        tasks_path=sample_tasks_path(), reports=reports, records_path=records_path, out=out, eval_fraction=0.4
    )

    train, evaluation = read_jsonl(out / "train.jsonl"), read_jsonl(out / "eval.jsonl")
    samples = train + evaluation
    assert len(records) == 67 and sum(r.failed for r in records) == 1
    family = json.loads((records_path.parent / "summary.json").read_text())["protocol"]["prompts"]
    assert report.prompts == family and report.teacher_models == ["teacher-x"]
    partially = sum(1 for r in records if r.verdict == "partially")
    assert partially > 10
    words = {(s["meta"]["negative"], json.loads(s["messages"][-1]["content"])["verdict"]) for s in samples}
    if family == "paper":  # a flaw is "present" or "absent", as negative.j2 asks
        assert dict(report.skipped) == {"failed grading": 1}
        assert {s["meta"]["verdict"] for s in samples} == set(LABELS)
        assert {word for negative, word in words if not negative} == set(LABELS)
        assert {word for negative, word in words if negative} <= {"present", "partially_present", "absent"}
    else:  # ResearchRubrics' official prompts are binary: the teacher's "partially" cannot be taught
        assert family == "official-researchrubrics"
        assert dict(report.skipped) == {"failed grading": 1, "partially in binary prompts": partially}
        assert {word for _, word in words} == {"Satisfied", "Not Satisfied"}
    assert report.written == len(samples) == 66 - dict(report.skipped).get("partially in binary prompts", 0)
    # split by task: 2 of 5 tasks held out, none of their rubrics in training
    train_tasks = {s["meta"]["task_id"] for s in train}
    eval_tasks = {s["meta"]["task_id"] for s in evaluation}
    assert len(eval_tasks) == 2 and len(train_tasks) == 3 and not train_tasks & eval_tasks
    assert sorted(eval_tasks) == report.eval_tasks
    assert {s["meta"]["split"] for s in train} == {"train"} and {s["meta"]["split"] for s in evaluation} == {
        "eval"
    }
    # every prompt is a request the teacher really received, byte for byte
    sent = {json.dumps(request["messages"]) for request in requests}
    by_key = {(r.task_id, r.criterion): r for r in records}
    for sample in samples:
        *prompt, answer = sample["messages"]
        assert json.dumps(prompt) in sent
        assert answer["role"] == "assistant" and sample["tools"] == []
        meta = sample["meta"]
        teacher_record = by_key[(meta["task_id"], meta["criterion"])]
        assert parse_verdict(answer["content"]).verdict == meta["verdict"] == teacher_record.verdict
        assert json.loads(answer["content"])["reasoning"] == teacher_record.reasoning
        assert meta["teacher"] == "teacher-x" and meta["prompts"] == family
    assert any(s["meta"]["negative"] for s in samples)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train"]["samples"] == len(train) and summary["skipped"] == dict(report.skipped)


@pytest.mark.parametrize("teacher", ["paper"], indirect=True)
def test_the_data_trains_with_the_plain_sft_recipe(teacher, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("trl")
    from deepresearch.train.sft import load_recipe, read_metrics, run_sft
    from tests.train.test_judge_rl import tiny_judge_model

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    records_path, reports, _ = teacher
    out = tmp_path / "judge-data"
    build_judge_data(tasks_path=sample_tasks_path(), reports=reports, records_path=records_path, out=out)
    tiny_judge_model(out / "train.jsonl", tmp_path / "model")
    recipe_path = tmp_path / "judge-sft.toml"
    recipe_path.write_text(
        'model = "model"\ndata = "judge-data/train.jsonl"\noutput_dir = "sft"\nmax_length = 2048\n'
        "learning_rate = 3e-3\nmax_steps = 16\nlogging_steps = 1\n"
    )

    result = run_sft(load_recipe(recipe_path), console=False)

    assert result.steps == 16 and result.samples == len(read_jsonl(out / "train.jsonl"))
    assert result.skipped == [] and result.truncated == 0
    losses = [line["loss"] for line in read_metrics(result.metrics_path) if "loss" in line]
    assert len(losses) == 16 and sum(losses[-4:]) < 0.8 * sum(losses[:4])


def test_records_that_make_no_sample_are_counted_and_the_command_fails(teacher, tmp_path: Path) -> None:
    records_path, reports, _ = teacher
    records = load_records(records_path)
    only_one_task = tmp_path / "reports-one"
    only_one_task.mkdir()
    failing = {r.task_id for r in records if r.failed}  # records arrive in grading order: pick by content
    first = next(r.task_id for r in records if r.task_id not in failing)
    (only_one_task / f"{first}.md").write_text((reports / f"{first}.md").read_text())
    unknown = records[1].model_copy(update={"criterion": "A criterion no task has."})
    other = tmp_path / "records.jsonl"
    other.write_text("".join(r.model_dump_json() + "\n" for r in [*records, unknown]))

    report = build_judge_data(
        tasks_path=sample_tasks_path(), reports=only_one_task, records_path=other, out=tmp_path / "one"
    )
    per_task = sum(1 for r in records if r.task_id == first)
    assert report.written == per_task and report.eval_samples == 0  # one task: nothing to hold out
    assert report.skipped["no report"] == len(records) - per_task - 1
    assert report.skipped["failed grading"] == 1 and report.skipped["criterion not in the task"] == 1

    failed_only = tmp_path / "failed.jsonl"
    failed_only.write_text("".join(r.model_dump_json() + "\n" for r in records if r.failed))
    args = ["judge-data", "--records", str(failed_only), "--tasks", str(sample_tasks_path())]
    result = runner.invoke(commands(), [*args, "--reports", str(reports), "--out", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "0 train samples" in result.stdout and "failed grading 1" in result.stdout
    assert "no sample could be made" in result.stderr
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"task_id": 3}\n')
    result = runner.invoke(
        commands(),
        [*args[:2], str(broken), *args[3:], "--reports", str(reports), "--out", str(tmp_path / "x")],
    )
    assert result.exit_code == 1 and "broken.jsonl:1: not a judge record" in result.stderr


def test_binary_families_answer_in_their_own_words_and_cannot_say_partially() -> None:
    record = JudgeRecord(
        task_id="t",
        criterion="c",
        weight=1.0,
        verdict="satisfied",
        trials=[Trial(verdict="satisfied", score=1.0, confidence=0.8, reasoning="Yes.", evidence=["q"] * 5)],
        reasoning="Yes.",
    )
    paper = json.loads(teacher_reply(record) or "")
    assert paper == {
        "verdict": "satisfied",
        "score": 1.0,
        "confidence": 0.8,
        "reasoning": "Yes.",
        "evidence": ["q"] * 3,
    }
    assert json.loads(teacher_reply(record, "official-researcherbench") or "")["verdict"] == "yes"
    assert json.loads(teacher_reply(record, "official-researchrubrics") or "")["verdict"] == "Satisfied"
    partial = record.model_copy(
        update={
            "verdict": "partially",
            "trials": [record.trials[0].model_copy(update={"verdict": "partially"})],
        }
    )
    assert teacher_reply(partial, "official-researcherbench") is None
    # a 1-1-1 tie's majority is "partially", which no trial said: no reasoning to teach
    tie = record.model_copy(
        update={
            "verdict": "partially",
            "trials": [Trial(verdict=v, score=0.0) for v in ("satisfied", "not_satisfied")],
        }
    )
    assert teacher_reply(tie) is None


def test_the_task_split_is_seeded_and_never_empty_or_total() -> None:
    ids = [f"t{i}" for i in range(10)]
    assert split_tasks(ids, 0.2, seed=1) == split_tasks(reversed(ids), 0.2, seed=1)
    assert len(split_tasks(ids, 0.2)) == 2
    assert len(split_tasks(ids, 0.01)) == 1 and len(split_tasks(ids, 0.99)) == 9
    assert split_tasks(["only"], 0.5) == set() and split_tasks(ids, 0.0) == set()


def test_a_served_student_is_compared_with_the_teacher(fake_llm, tmp_path: Path) -> None:
    reports = write_reports(tmp_path)
    teacher_records = grade(fake_llm, tmp_path, reports, "teacher-x", teacher_answers())
    # the student (served like any OpenAI-compatible model) agrees on every rubric but the ones
    # where the teacher said "partially": there it says "satisfied"
    student_answers = {c: ("satisfied" if v == "partially" else v) for c, v in teacher_answers().items()}
    student_records = grade(fake_llm, tmp_path, reports, "student-1", student_answers)
    assert all(r.judge_model == "student-1" for r in load_records(student_records))
    partially = sum(1 for r in load_records(teacher_records) if r.verdict == "partially")
    total = len(load_records(teacher_records))

    stats = teacher_agreement(teacher_records, student_records)
    assert stats.n == total and stats.missing_judge == 0
    assert stats.accuracy == pytest.approx((total - partially) / total)
    assert stats.confusion[1] == [partially, 0, 0]  # teacher partially → student satisfied
    assert stats.f1["partially"] == 0.0 and stats.kappa is not None and 0 < stats.kappa < 1
    binary = teacher_agreement(teacher_records, student_records, binary=True)
    assert binary.labels == ("satisfied", "not_satisfied") and binary.accuracy == stats.accuracy

    result = runner.invoke(
        commands(), ["agreement", "--teacher", str(teacher_records), "--records", str(student_records)]
    )
    assert result.exit_code == 0, result.output
    assert f"{total} rubrics: accuracy {stats.accuracy:.3f}" in result.stdout
    as_json = runner.invoke(
        commands(),
        ["agreement", "--teacher", str(teacher_records), "--records", str(student_records), "--json"],
    )
    assert json.loads(as_json.stdout)["macro_f1"] == pytest.approx(stats.macro_f1)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ConfigError, match="no rubric graded by both"):
        teacher_agreement(teacher_records, empty)
