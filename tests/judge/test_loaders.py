"""Task and report loading in every format the benchmarks ship, including the broken lines.

Fixtures are written into ``tmp_path`` by each test in the benchmarks' own shapes (ResearchRubrics
JSONL, DeepResearch Bench ``criteria.jsonl`` with its ``criterions`` key, ResearcherBench's
pretty-printed ``rubrics.json``/``questions.json``), so each test shows the input it reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deepresearch.errors import ConfigError
from deepresearch.judge.loaders import (
    DRB_WEIGHT_SCALE,
    collect_reports,
    load_reports,
    load_tasks,
    sample_tasks_path,
)
from deepresearch.judge.rubrics import Rubric, Task
from deepresearch.runs import RunInfo

SIX_AXES = {
    "Explicit Criteria",
    "Implicit Criteria",
    "Synthesis of Information",
    "References & Citation Quality",
    "Communication Quality",
    "Instruction Following",
}


def jsonl(path: Path, *lines: Any) -> Path:
    """Write each item as one line: dicts as JSON, strings verbatim (for broken lines)."""
    path.write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x, ensure_ascii=False) for x in lines) + "\n"
    )
    return path


def rr_task(sample_id: str, **extra: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "prompt": f"Question {sample_id}?",
        "sample_id": sample_id,
        "domain": "STEM",
        "conceptual_breadth": "high",
        "logical_nesting": "low",
        "exploration": "medium",
        "rubrics": [
            {"criterion": "States the main result.", "weight": 4.0, "axis": "Explicit Criteria"},
            {"criterion": "Notes an unstated caveat.", "weight": 2.0, "axis": "Implicit Criteria"},
            {"criterion": "Presents a 2019 figure as current.", "weight": -3.0, "axis": "Implicit Criteria"},
        ],
    }
    task.update(extra)
    return task


# ------------------------------------------------------------------------------------- ResearchRubrics


def test_researchrubrics_lines_load_and_broken_ones_become_errors(tmp_path):
    zero = rr_task("zero")  # one real ResearchRubrics dev task has a weight-0 rubric: it loads
    zero["rubrics"][0]["weight"] = 0
    bad_role = rr_task("role")
    bad_role["rubrics"][2]["role"] = "explicit"  # a negative weight with a positive role
    missing = rr_task("missing")
    del missing["prompt"]
    path = jsonl(
        tmp_path / "processed_data.jsonl",
        rr_task("a"),
        "{not json",
        missing,
        zero,
        "",
        bad_role,
        rr_task("a", prompt="again"),
        rr_task("b"),
    )
    loaded = load_tasks(path)
    assert loaded.format == "researchrubrics"
    assert [t.task_id for t in loaded.tasks] == ["a", "zero", "b"]
    assert len(loaded.errors) == 4
    assert loaded.errors[0].startswith(f"{path}:2: invalid JSON")
    assert loaded.errors[1] == f"{path}:3: missing prompt"
    assert (
        loaded.errors[2].startswith(f"{path}:6: rubrics[2]: ") and "does not match weight" in loaded.errors[2]
    )
    assert loaded.errors[3] == f"{path}:7: duplicate task id 'a' (first at line 1)"
    # the weight-0 rubric is kept and counted, but is no part of the scale nor of what the judge is asked
    loaded_zero = loaded.tasks[1]
    assert [(r.weight, r.role) for r in loaded_zero.rubrics] == [
        (0.0, "explicit"),
        (2.0, "implicit"),
        (-3.0, "negative"),
    ]
    assert loaded_zero.zero_weight == 1 and loaded_zero.positive_weight == 2.0
    assert [r.weight for r in loaded_zero.scored().rubrics] == [2.0, -3.0]
    assert loaded.tasks[0].scored() is loaded.tasks[0]
    task = loaded.tasks[0]
    assert task.prompt == "Question a?" and task.domain == "STEM"
    assert task.meta == {
        "format": "researchrubrics",
        "conceptual_breadth": "high",
        "logical_nesting": "low",
        "exploration": "medium",
    }
    # roles: sign of the weight, and "implicit" for positive rubrics on the Implicit Criteria axis
    assert [r.role for r in task.rubrics] == ["explicit", "implicit", "negative"]
    assert [r.weight for r in task.rubrics] == [4.0, 2.0, -3.0]
    assert task.positive_weight == 6.0


def test_researchrubrics_fatal_flag_is_kept(tmp_path):
    task = rr_task("f")
    task["rubrics"][2]["fatal"] = True
    loaded = load_tasks(jsonl(tmp_path / "t.jsonl", task))
    assert [r.fatal for r in loaded.tasks[0].rubrics] == [False, False, True]


# ----------------------------------------------------------------------------------------------- DRB


def drb_line(task_id: int = 7) -> dict[str, Any]:
    return {
        "id": task_id,
        "language": "zh",
        "prompt": "分析 2010 年至今的黄金走势",
        "dimension_weight": {
            "comprehensiveness": 0.3,
            "insight": 0.4,
            "instruction_following": 0.2,
            "readability": 0.1,
        },
        "criterions": {
            "comprehensiveness": [
                {"criterion": "历史走势回顾", "explanation": "是否覆盖主要阶段", "weight": 0.6},
                {"criterion": "驱动因素", "explanation": "是否识别多种因素", "weight": 0.4},
            ],
            "insight": [{"criterion": "因果分析", "explanation": "是否深入", "weight": 1.0}],
            "instruction_following": [
                {"criterion": "思维导图", "explanation": "是否使用思维导图", "weight": 1.0}
            ],
            "readability": [
                {
                    "criterion": "结构",
                    "explanation": "是否清晰",
                    "weight": 1.0,
                    "comment": "extra keys are ignored",
                }
            ],
        },
    }


def test_drb_criteria_become_weighted_rubrics_on_dimension_axes(tmp_path):
    no_dimension = drb_line(8)
    del no_dimension["dimension_weight"]["insight"]
    zero = drb_line(9)
    zero["criterions"]["insight"][0]["weight"] = 0
    negative = drb_line(10)
    negative["criterions"]["insight"][0]["weight"] = -1
    loaded = load_tasks(jsonl(tmp_path / "criteria.jsonl", drb_line(), no_dimension, zero, negative))
    assert loaded.format == "drb"
    assert [t.task_id for t in loaded.tasks] == ["7", "9"]
    task = loaded.tasks[0]
    assert task.task_id == "7" and task.prompt.startswith("分析")
    # weight = dimension weight × criterion weight × 100:
    #   comprehensiveness 0.3 × 0.6 × 100 = 18, 0.3 × 0.4 × 100 = 12; insight 0.4 × 1 × 100 = 40;
    #   instruction_following 20; readability 10 — together 100
    assert [(r.axis, r.weight) for r in task.rubrics] == [
        ("comprehensiveness", 18.0),
        ("comprehensiveness", 12.0),
        ("insight", 40.0),
        ("instruction_following", 20.0),
        ("readability", 10.0),
    ]
    assert task.positive_weight == pytest.approx(DRB_WEIGHT_SCALE)
    assert task.rubrics[0].criterion == "历史走势回顾 — 是否覆盖主要阶段"
    assert [r.role for r in task.rubrics] == ["implicit", "implicit", "implicit", "explicit", "implicit"]
    assert task.meta["language"] == "zh" and task.meta["dimension_weight"]["insight"] == 0.4
    assert loaded.errors[0].endswith(":2: criterions for 'insight' but no numeric dimension_weight for it")
    assert loaded.errors[1].endswith(":4: criterions.insight[0]: weight 0.4 × -1.0 is negative")
    assert len(loaded.errors) == 2
    # a criterion of weight 0 loads with weight 0 (it counts in no score)
    zero_task = loaded.tasks[1]
    assert [(r.axis, r.weight) for r in zero_task.rubrics][2] == ("insight", 0.0)
    assert zero_task.zero_weight == 1 and zero_task.positive_weight == pytest.approx(60.0)


# ----------------------------------------------------------------------------------- ResearcherBench


def write_researcherbench(folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    rubrics = [
        {
            "id": 1,
            "question": "Q1?",
            "rubric": [{"point": "Explains A.", "weight": 2}, {"point": "Cites B.", "weight": 3}],
        },
        {"id": 2, "question": "Q2?", "rubric": [{"point": "Bad weight.", "weight": -1}]},
        {"id": 3, "question": "Q3?", "rubric": [{"point": "Explains C.", "weight": 1}]},
    ]
    questions = [
        {"id": 1, "question": "Q1?", "category": "Technical Details", "Subject": "Model Architecture"},
        {"id": 2, "question": "Q2?", "category": "Open Consulting", "Subject": "AI Policy"},
        {"id": 3, "question": "Q3?", "category": "Literature Survey", "Subject": "Agents"},
        {"id": 4, "question": "Q4?", "category": "Literature Survey", "Subject": "Agents"},
    ]
    (folder / "rubrics.json").write_text(json.dumps(rubrics, indent=4))
    (folder / "questions.json").write_text(json.dumps(questions, indent=4))


def test_researcherbench_folder_merges_questions_and_reports_lines(tmp_path):
    folder = tmp_path / "eval_data"
    write_researcherbench(folder)
    loaded = load_tasks(folder)
    assert loaded.format == "researcherbench"
    assert [t.task_id for t in loaded.tasks] == ["1", "3"]
    first = loaded.tasks[0]
    assert first.domain == "Technical Details" and first.meta["subject"] == "Model Architecture"
    assert [(r.criterion, r.weight, r.axis, r.role) for r in first.rubrics] == [
        ("Explains A.", 2.0, "Coverage", "implicit"),
        ("Cites B.", 3.0, "Coverage", "implicit"),
    ]
    # with indent=4, item 2 opens on line 16 of rubrics.json (item 1 spans lines 2–15, six lines of
    # header and two three-line points) and question 4 on line 20 of questions.json (six lines each)
    text = (folder / "rubrics.json").read_text().splitlines()
    assert text[15].strip() == "{" and '"id": 2' in text[16]
    assert loaded.errors == [
        f"{folder / 'rubrics.json'}:16: rubric[0]: weight must be a number ≥ 0 "
        "(ResearcherBench has no penalty items)",
        f"{folder / 'questions.json'}:20: question 4 has no rubrics in rubrics.json",
    ]
    # the same result from either file's path
    assert [t.task_id for t in load_tasks(folder / "rubrics.json").tasks] == ["1", "3"]
    assert [t.task_id for t in load_tasks(folder / "questions.json").tasks] == ["1", "3"]


def test_researcherbench_point_of_weight_0_loads(tmp_path):
    path = tmp_path / "rubrics.json"
    points = [{"point": "P", "weight": 2}, {"point": "Z", "weight": 0}]
    path.write_text(json.dumps([{"id": 5, "question": "Q?", "rubric": points}]))
    loaded = load_tasks(path)
    assert loaded.errors == []
    (task,) = loaded.tasks
    assert [(r.criterion, r.weight, r.role) for r in task.rubrics] == [
        ("P", 2.0, "implicit"),
        ("Z", 0.0, "implicit"),
    ]
    assert task.zero_weight == 1 and [r.criterion for r in task.scored().rubrics] == ["P"]


def test_researcherbench_rubrics_alone_and_a_broken_array(tmp_path):
    path = tmp_path / "rubrics.json"
    path.write_text(
        '[\n  {"id": 1, "question": "Q?", "rubric": [{"point": "P", "weight": 1}]},\n  {"id": 2,,}\n]'
    )
    loaded = load_tasks(path)
    assert [t.task_id for t in loaded.tasks] == ["1"] and loaded.tasks[0].domain == ""
    assert len(loaded.errors) == 1 and loaded.errors[0].startswith(f"{path}:3: invalid JSON")


# ------------------------------------------------------------------------------------ native, detection


def test_native_lines_round_trip_task_model_dump(tmp_path):
    task = Task(
        task_id="n1",
        prompt="p",
        domain="Law",
        rubrics=[
            Rubric(criterion="Needs a DPA.", weight=5, axis="Explicit Criteria", fatal=True),
            Rubric(criterion="Relies on Privacy Shield.", weight=-5, axis="Explicit Criteria", fatal=True),
        ],
        meta={"source": "hand"},
    )
    stray = task.model_dump()
    stray["task_id"] = "n2"
    stray["rubrics"][0]["severity"] = "high"
    loaded = load_tasks(jsonl(tmp_path / "ours.jsonl", task.model_dump(), stray))
    assert loaded.format == "native"
    assert loaded.tasks == [task]
    assert loaded.errors == [
        f"{tmp_path / 'ours.jsonl'}:2: rubrics.0.severity: Extra inputs are not permitted"
    ]


def test_explicit_format_undetectable_and_missing_files(tmp_path):
    path = jsonl(tmp_path / "odd.jsonl", {"question": "?"})
    with pytest.raises(ConfigError, match="cannot tell the task format"):
        load_tasks(path)
    forced = load_tasks(path, format="researchrubrics")
    assert forced.tasks == [] and forced.errors == [f"{path}:1: missing sample_id"]
    with pytest.raises(ConfigError, match="does not exist"):
        load_tasks(tmp_path / "nope.jsonl")
    with pytest.raises(ConfigError, match="unknown task format"):
        load_tasks(path, format="csv")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="only read as ResearcherBench"):
        (tmp_path / "arr.json").write_text("[]")
        load_tasks(tmp_path / "arr.json", format="native")
    with pytest.raises(ConfigError, match="folder"):
        load_tasks(tmp_path)


# --------------------------------------------------------------------------------------- sample tasks


def test_sample_tasks_are_complete_researchrubrics_tasks():
    loaded = load_tasks(sample_tasks_path())
    assert loaded.errors == [] and loaded.format == "researchrubrics"
    assert len(loaded.tasks) == 5
    assert len({t.domain for t in loaded.tasks}) == 5
    axes: set[str] = set()
    for task in loaded.tasks:
        assert task.positive_weight > 0, task.task_id
        assert 8 <= len(task.rubrics) <= 15, task.task_id
        negatives = [r for r in task.rubrics if r.negative]
        assert 2 <= len(negatives) <= 3, task.task_id
        assert all(r.role == "negative" for r in negatives)
        assert {"conceptual_breadth", "logical_nesting", "exploration"} <= task.meta.keys()
        axes |= {r.axis for r in task.rubrics}
    assert axes == SIX_AXES
    law = next(t for t in loaded.tasks if t.domain == "Law")
    assert any(r.fatal and r.negative for r in law.rubrics)
    assert any(r.fatal and not r.negative for r in law.rubrics)
    assert any("CONCURRENTLY" in t.prompt or "PostgreSQL" in t.prompt for t in loaded.tasks)


# -------------------------------------------------------------------------------------------- reports


def make_run(
    folder: Path,
    name: str,
    question: str,
    *,
    report: str | None = "report",
    status: str = "done",
    started: str = "2026-01-01T00:00:00Z",
    task_json: Any = None,
    task_id_file: str | None = None,
) -> Path:
    run = folder / name
    run.mkdir(parents=True)
    info = RunInfo(id=name, question=question, status=status, started=started)  # type: ignore[arg-type]
    (run / "run.json").write_text(info.model_dump_json())
    if report is not None:
        (run / "report.md").write_text(report)
    if task_json is not None:
        (run / "task.json").write_text(json.dumps(task_json))
    if task_id_file is not None:
        (run / "task_id").write_text(task_id_file + "\n")
    return run


def tasks_for(*prompts: tuple[str, str]) -> list[Task]:
    rubric = Rubric(criterion="c", weight=1)
    return [Task(task_id=task_id, prompt=prompt, rubrics=[rubric]) for task_id, prompt in prompts]


def test_reports_from_a_folder_of_markdown_files(tmp_path):
    (tmp_path / "t1.md").write_text("# Report one")
    (tmp_path / "t2.md").write_text("# Report two")
    (tmp_path / "notes.txt").write_text("ignored")
    assert load_reports(tmp_path) == {"t1": "# Report one", "t2": "# Report two"}
    assert load_reports(tmp_path, ["t2", "t9"]) == {"t2": "# Report two"}


def test_reports_from_run_directories(tmp_path):
    tasks = tasks_for(
        ("pg", "How do I build a PostgreSQL index   without blocking writes?"), ("gdpr", "GDPR?")
    )
    make_run(tmp_path, "r1", "anything", report="by task.json", task_json={"task_id": "gdpr"})
    make_run(tmp_path, "r2", "anything", report="by task_id file", task_id_file="bnpl")
    make_run(
        tmp_path, "r3", "how do i build a postgresql index without blocking writes?", report="by question"
    )
    make_run(tmp_path, "r4", "Unrelated question", report="unmapped")
    make_run(tmp_path, "r5", "GDPR?", report=None, status="failed", task_json={"task_id": "lost"})
    make_run(tmp_path, "r6", "q", task_json=["not", "an", "object"])
    loaded = collect_reports(tmp_path, ["pg", "gdpr", "bnpl"], tasks=tasks)
    assert loaded.reports == {"gdpr": "by task.json", "bnpl": "by task_id file", "pg": "by question"}
    assert loaded.origins["pg"] == str(tmp_path / "r3")
    assert sorted(loaded.errors) == [
        f"{tmp_path / 'r4'}: no task.json or task_id file, and its question matches no task prompt",
        f"{tmp_path / 'r5'}: no report.md (run status failed)",
        f'{tmp_path / "r6"}: task.json must be {{"task_id": …}}',
    ]
    # without task_ids, the ids of ``tasks`` filter the result
    assert set(load_reports(tmp_path, tasks=tasks)) == {"pg", "gdpr"}
    # a single run directory works too
    assert load_reports(tmp_path / "r1") == {"gdpr": "by task.json"}


def test_several_runs_for_one_task_prefer_done_then_newest(tmp_path):
    make_run(tmp_path, "a", "q", report="old", started="2026-01-01T00:00:00Z", task_json={"task_id": "t"})
    make_run(tmp_path, "b", "q", report="new", started="2026-02-01T00:00:00Z", task_json={"task_id": "t"})
    cancelled = {"status": "cancelled", "started": "2026-03-01T00:00:00Z"}
    make_run(tmp_path, "c", "q", report="newest but cancelled", task_json={"task_id": "t"}, **cancelled)
    loaded = collect_reports(tmp_path)
    assert loaded.reports == {"t": "new"}
    assert loaded.errors == [
        f"task 't': 3 reports; using {tmp_path / 'b'} (not {tmp_path / 'a'}, {tmp_path / 'c'})"
    ]


def test_question_matching_two_prompts_is_ambiguous(tmp_path):
    make_run(tmp_path, "r", "Same?")
    loaded = collect_reports(tmp_path, tasks=tasks_for(("x", "Same?"), ("y", "same?")))
    assert loaded.reports == {}
    assert loaded.errors == [
        f"{tmp_path / 'r'}: its question matches several task prompts (x, y); add a task.json"
    ]


def test_reports_from_benchmark_submission_files(tmp_path):
    drb = jsonl(
        tmp_path / "model.jsonl",
        {"id": 1, "prompt": "p", "article": "DRB article"},
        "not json",
        {"id": 2, "prompt": "p"},
        {"id": 1, "article": "again"},
    )
    loaded = collect_reports(drb)
    assert loaded.reports == {"1": "DRB article"}
    assert loaded.errors == [
        f"{drb}:2: invalid JSON (Expecting value at column 1)",
        f"{drb}:3: expected {{id, article}} or {{id, response}}",
        f"{drb}:4: duplicate id '1' (first at line 1)",
    ]
    researcherbench = tmp_path / "Grok3.json"
    researcherbench.write_text(json.dumps([{"id": 1, "question": "Q?", "response": "RB answer"}], indent=4))
    assert load_reports(researcherbench) == {"1": "RB answer"}
    with pytest.raises(ConfigError, match="does not exist"):
        load_reports(tmp_path / "missing")


def test_researcherbench_real_file_name_and_repository_layout(tmp_path):
    # the repository ships data/eval_data/rubric.json (singular) beside questions.json
    eval_data = tmp_path / "ResearcherBench" / "data" / "eval_data"
    eval_data.mkdir(parents=True)
    write_researcherbench(eval_data)
    (eval_data / "rubrics.json").rename(eval_data / "rubric.json")
    root = tmp_path / "ResearcherBench"
    for source in (root, root / "data", eval_data, eval_data / "rubric.json", eval_data / "questions.json"):
        loaded = load_tasks(source)
        assert loaded.format == "researcherbench", source
        assert [(t.task_id, t.domain) for t in loaded.tasks] == [
            ("1", "Technical Details"),
            ("3", "Literature Survey"),
        ], source
        assert (
            loaded.errors[-1]
            == f"{eval_data / 'questions.json'}:20: question 4 has no rubrics in rubric.json"
        )
    # the layout is looked for two levels down, no deeper: a folder above it says what it looks for
    with pytest.raises(ConfigError, match=r"rubric\.json, also under data/eval_data/"):
        load_tasks(tmp_path)
