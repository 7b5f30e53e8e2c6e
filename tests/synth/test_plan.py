"""``synth plan`` end to end: documents written by the test (Markdown, HTML, Chinese Markdown) read by
the index's loaders, a scripted model on the fake OpenAI server, every drop reason, a rerun after a
failed first run, and the plan-alignment filter on runs of our agent over the local index."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from deepresearch.config import load_settings
from deepresearch.errors import ConfigError
from deepresearch.runs import RunDir
from deepresearch.search.loaders import load_file
from deepresearch.synth.engine import ledger_path
from deepresearch.synth.plan import (
    TASKS_SUFFIX,
    check_reply,
    clean_plan,
    strip_results,
    synth_plan,
    word_count,
)
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.web_server import make_pdf
from tests.synth.test_alignment import FOLLOWER, PLAN, STRAY

OUTAGE = {"plan": False, "agent": False}
SECRET = "SECRET-RESULT"
AQUEDUCT_PLAN = [
    "Collect the history of Roman aqueducts",
    "Compare aqueduct gradients across provinces",
    "Explain how aqueduct siphons carried water uphill",
]
ZH_PLAN = [
    "收集中文分词的主要方法",
    "比较词典分词与统计分词",
    "整理分词在全文检索中的作用",
    "撰写关于中文分词的报告",
]


def prose(topic: str, sentences: int = 14) -> str:
    """Enough plain sentences about ``topic`` to pass the length floor (no numbers, no units)."""
    verbs = ["shapes", "explains", "limits", "guides", "changes", "frames", "informs"]
    return " ".join(
        f"The study of {topic} {verbs[i % len(verbs)]} how engineers reason about systems and their users."
        for i in range(sentences)
    )


def write_documents(folder: Path) -> Path:
    (folder / "zh").mkdir(parents=True)
    (folder / "bm25-study.md").write_text(
        f"# BM25 in practice\n\n{prose('BM25 ranking')}\n\n"
        "Throughput rose by 35% after tuning. The ranking saturates term frequency.\n\n"
        "![latency chart](latency.png)\n\nFigure 1: latency of each ranking function\n\n"
        "| function | latency |\n|---|---|\n| bm25 | 3 ms |\n\n"
        f"## Results\n\nThe {SECRET} is what the experiments found.\n\n### Per corpus\n\nMore {SECRET}.\n\n"
        f"## Discussion\n\n{prose('term frequency saturation', 4)}\n",
        encoding="utf-8",
    )
    (folder / "crawling.html").write_text(
        "<html><head><title>Polite crawling</title></head><body><article><h1>Polite crawling</h1>"
        f"<p>{prose('polite crawling')}</p><h2>Experiments</h2><p>The crawler fetched pages while {SECRET} "
        "was measured across many sites, which took a long time and much patience from everyone.</p>"
        "<table><tr><th>site</th><th>pages</th></tr><tr><td>alpha</td><td>2000</td></tr></table>"
        f"<h2>Conclusion</h2><p>{prose('robots rules', 3)}</p></article></body></html>",
        encoding="utf-8",
    )
    (folder / "zh" / "分词.md").write_text(
        "# 中文分词\n\n"
        + "中文文本的词与词之间没有空格，因此全文检索系统需要先把句子切分成词，再建立倒排索引。" * 4
        + "\n\n最常见的做法是基于词典的最大匹配，也有基于统计模型的方法，它们各有长处和短处。" * 3
        + "\n\n## 实验结果\n\n"
        + f"准确率提高到百分之九十五。{SECRET}。\n",
        encoding="utf-8",
    )
    lines = [f"The study of inverted indexes shapes how engineers reason, part {n}." for n in range(16)]
    pdf = make_pdf("Inverted indexes", [[*lines[:8], "Lookups got 40% faster."], lines[8:]])
    (folder / "index-notes.pdf").write_bytes(pdf)
    records = [
        {
            "id": "qe",
            "title": "Query expansion",
            "url": "https://notes.example.org/qe",
            "text": prose("expansion"),
        },
        {"id": "stub", "title": "Stub", "text": "A stub."},
    ]
    (folder / "notes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (folder / "tiny.md").write_text("# Tiny\n\nToo short to teach anything.\n", encoding="utf-8")
    (folder / "garbage.md").write_text(f"# Garbage\n\n{prose('garbage collection')}\n", encoding="utf-8")
    (folder / "short-plan.md").write_text(f"# Short plan\n\n{prose('short plans')}\n", encoding="utf-8")
    return folder


def title_of(request: dict[str, Any]) -> str:
    match = re.search(r"<title>(.*?)</title>", str(request["messages"][0]["content"]))
    return match.group(1) if match else ""


def planner(request: dict[str, Any]) -> Reply:
    """The pipeline's model: a task and a plan per document; titles trip the drop paths."""
    title, retried = title_of(request), len(request["messages"]) > 1
    if OUTAGE["plan"] and title == "Flaky":
        return Reply(status=500, body=json.dumps({"error": {"message": "scripted outage"}}))
    if title == "Garbage":
        return Reply(content="I would rather write a poem.")
    if title == "Short plan":
        plan = ["1. Read about short plans", "2. Read about short plans", "Write it up"]
        return Reply(content=json.dumps({"task": "What are short plans?", "plan": plan}))
    if title == "中文分词":
        task = (
            "Which methods segment Chinese text?"
            if not retried
            else "中文分词有哪些主要方法，各有什么优缺点？"
        )
        return Reply(content=json.dumps({"task": task, "plan": ZH_PLAN}, ensure_ascii=False))
    if title == "Roman aqueducts":
        task = "How did Roman aqueducts carry water?"
        return Reply(content=json.dumps({"task": task, "plan": AQUEDUCT_PLAN}))
    plan = [f"{n}. {step}" for n, step in enumerate(PLAN, 1)]
    return Reply(content=json.dumps({"task": f"How does {title} work, in practice?", "plan": plan}))


def script(request: dict[str, Any]) -> Reply:
    """Agent requests (they start with a system prompt) go to an agent that follows the BM25 plan, or
    to one that strays (weather and trains) when the task is about aqueducts; the rest to ``planner``."""
    if request["messages"][0].get("role") != "system":
        return planner(request)
    question = next(m["content"] for m in request["messages"] if m.get("role") == "user")
    if OUTAGE["agent"]:
        return Reply(status=500, body=json.dumps({"error": {"message": "scripted outage"}}))
    return STRAY(request) if "aqueduct" in question else FOLLOWER(request)


@pytest.fixture(autouse=True)
def no_outage() -> Any:
    OUTAGE.update(plan=False, agent=False)
    yield OUTAGE
    OUTAGE.update(plan=False, agent=False)


def settings_for(fake: FakeOpenAI, index: Path) -> Any:
    return load_settings(
        {
            "base_url": fake.base_url,
            "model": "fake-model",
            "index": index,
            "max_retries": 0,
            "retry_base_delay": 0.001,
            "retry_max_delay": 0.01,
        },
        env={},
    )


def plan_requests(fake: FakeOpenAI, title: str | None = None) -> list[dict[str, Any]]:
    return [
        r
        for r in fake.requests
        if r["messages"][0].get("role") != "system" and (title is None or title_of(r) == title)
    ]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_strip_results_removes_findings_tables_figures_and_result_sections() -> None:
    text = (
        "# Study\n\nWe study crawling. Throughput rose by 35% to 120 pages/s. Crawlers wait.\n\n"
        "Accuracy improved to 0.93 overall. Python 3.12 is used. It cost $40 and 3 GB.\n\n"
        "![chart](c.png) The chart <img src='x.png'> shows it.\n\nFig. 2: throughput\n\nTable 1. Sites\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n```\nrate = 12 ms\n```\n\n"
        "## Experimental results\n\nHidden.\n\n### Details\n\nHidden too.\n\n## Related work\n\nKept.\n\n"
        "# 中文\n\n中文没有空格。准确率提高到百分之九十。速度快了三倍，耗时 5 秒。分词需要词典。\n\n"
        "## 实验\n\n隐藏。\n\n# Next\n\nIn the 2020s crawlers grew."
    )
    stripped = strip_results(text)
    for gone in (
        "35%",
        "0.93",
        "$40",
        "c.png",
        "x.png",
        "Fig. 2",
        "Table 1",
        "| a |",
        "Hidden",
        "九十",
        "5 秒",
        "隐藏",
    ):
        assert gone not in stripped, gone
    for kept in (
        "We study crawling. Crawlers wait.",
        "Python 3.12 is used.",  # a decimal without a word of outcome is not a finding
        "The chart  shows it.",
        "rate = 12 ms",  # code is left alone
        "## Experimental results\n## Related work\n\nKept.",
        "中文没有空格。分词需要词典。",  # the sentence with 5 秒 went whole
        "In the 2020s crawlers grew.",  # a year is not a measurement
    ):
        assert kept in stripped, kept
    assert word_count("BM25 ranks documents") == 3 and word_count("中文分词") == 2


def test_replies_are_checked_for_shape_length_and_language() -> None:
    good = {"task": "How does BM25 rank documents?", "plan": ["Find", "Compare", "Write"]}
    assert check_reply(good, "en") == []
    assert any("Chinese" in p for p in check_reply(good, "zh"))
    assert check_reply({"task": "", "plan": []}, "en") == [
        '"task" is missing or empty',
        '"plan" is missing or empty',
    ]
    assert "at most 10" in check_reply({**good, "plan": ["Step"] * 11}, "en")[0]
    assert "longer than 200" in check_reply({**good, "plan": ["x" * 201, "a", "b"]}, "en")[0]
    assert check_reply({**good, "plan": ["a", 2, "b"]}, "en") == ['every item of "plan" must be a string']
    assert clean_plan(["1. Find X", "- find x", "Step 2: Compare", "第三步：撰写", " "]) == [
        "Find X",
        "Compare",
        "撰写",
    ]


def test_documents_become_tasks_with_plans_and_every_drop_is_recorded(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path
) -> None:
    fake_llm.script = script
    documents = write_documents(tmp_path / "docs")
    out = tmp_path / "plan.jsonl"
    settings = settings_for(fake_llm, corpus_index)
    summary = asyncio.run(synth_plan(settings, documents=documents, out=out, concurrency=3, progress=False))

    assert (summary.kept, summary.failed) == (5, 0)
    assert summary.dropped == {"too_short": 2, "bad_reply": 1, "plan_too_short": 1}
    assert summary.tally.calls == len(fake_llm.requests) == 9  # garbage and the zh task were asked twice
    records = {r["source"]: r for r in read_jsonl(out)}
    assert set(records) == {
        "bm25-study.md",
        "crawling.html",
        "zh/分词.md",
        "index-notes.pdf",
        "notes.jsonl#https://notes.example.org/qe",
    }
    bm25 = records["bm25-study.md"]
    assert set(bm25) == {"task_id", "prompt", "plan", "reference", "source", "language", "source_id"}
    assert bm25["task_id"] == "plan-bm25-study.md" and bm25["source_id"] == "bm25-study.md"
    assert bm25["prompt"] == "How does BM25 in practice work, in practice?" and bm25["language"] == "en"
    assert bm25["plan"] == PLAN  # list marks removed
    path = documents / "bm25-study.md"
    assert bm25["reference"] == load_file(path, path.read_bytes(), [])[0].text  # the whole document
    assert SECRET in bm25["reference"]

    zh = records["zh/分词.md"]
    assert zh["language"] == "zh" and zh["prompt"].startswith("中文分词") and zh["plan"] == ZH_PLAN
    zh_asked = plan_requests(fake_llm, "中文分词")
    assert len(zh_asked) == 2 and "Chinese" in zh_asked[1]["messages"][-1]["content"]
    assert zh_asked[0]["messages"][0]["content"].startswith("下面是一份已经完成的研究文档")
    pdf_sent = plan_requests(fake_llm, "Inverted indexes")[0]["messages"][0]["content"]
    assert (
        "part 15" in pdf_sent and "40%" not in pdf_sent and "40%" in records["index-notes.pdf"]["reference"]
    )
    assert (
        records["notes.jsonl#https://notes.example.org/qe"]["prompt"]
        == "How does Query expansion work, in practice?"
    )
    html = records["crawling.html"]
    assert html["language"] == "en" and "Polite crawling" in html["reference"]

    for request in plan_requests(fake_llm):
        sent = request["messages"][0]["content"]
        assert (
            SECRET not in sent and "35%" not in sent and "latency.png" not in sent and "| bm25 |" not in sent
        )
        assert "alpha" not in sent and "百分之" not in sent
        if title_of(request) != "中文分词":
            assert sent.startswith("Below is a finished research document")
    bm25_sent = plan_requests(fake_llm, "BM25 in practice")[0]["messages"][0]["content"]
    assert "The ranking saturates term frequency." in bm25_sent and "## Discussion" in bm25_sent
    assert not plan_requests(fake_llm, "Tiny")  # too short: never sent

    ledger = {line["id"]: line for line in read_jsonl(ledger_path(out))}
    assert ledger["tiny.md"]["reason"] == "too_short" and ledger["tiny.md"]["detail"]["words"] < 80
    assert ledger["notes.jsonl#stub"]["reason"] == "too_short"
    assert ledger["garbage.md"]["reason"] == "bad_reply"
    assert ledger["short-plan.md"]["reason"] == "plan_too_short" and ledger["short-plan.md"]["detail"] == {
        "steps": 2
    }


def test_a_rerun_after_a_failed_first_run_asks_only_for_what_is_undecided(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path, no_outage: dict[str, bool]
) -> None:
    fake_llm.script = script
    documents = tmp_path / "docs"
    documents.mkdir()
    (documents / "flaky.md").write_text(f"# Flaky\n\n{prose('flaky endpoints')}\n", encoding="utf-8")
    (documents / "steady.md").write_text(f"# Steady\n\n{prose('steady endpoints')}\n", encoding="utf-8")
    out = tmp_path / "plan.jsonl"
    settings = settings_for(fake_llm, corpus_index)
    no_outage["plan"] = True
    first = asyncio.run(synth_plan(settings, documents=documents, out=out, progress=False))
    assert (first.kept, first.failed, first.dropped) == (1, 1, {})
    assert "flaky.md" in first.errors[0]
    assert [r["source"] for r in read_jsonl(out)] == ["steady.md"]

    no_outage["plan"] = False
    fake_llm.requests.clear()
    again = asyncio.run(synth_plan(settings, documents=documents, out=out, progress=False))
    assert (again.kept, again.skipped, again.failed) == (1, 1, 0)
    assert [title_of(r) for r in fake_llm.requests] == ["Flaky"]  # steady.md is not asked again
    assert sorted(r["source"] for r in read_jsonl(out)) == ["flaky.md", "steady.md"]


def test_with_run_agent_runs_that_deviate_from_the_plan_are_dropped_and_a_failed_run_resumes(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path, no_outage: dict[str, bool]
) -> None:
    fake_llm.script = script
    documents = tmp_path / "docs"
    documents.mkdir()
    (documents / "bm25.md").write_text(f"# BM25 in practice\n\n{prose('BM25 ranking')}\n", encoding="utf-8")
    (documents / "aqueducts.md").write_text(f"# Roman aqueducts\n\n{prose('aqueducts')}\n", encoding="utf-8")
    out = tmp_path / "plan.jsonl"
    settings = settings_for(fake_llm, corpus_index)

    no_outage["agent"] = True
    first = asyncio.run(synth_plan(settings, documents=documents, out=out, run_agent=True, progress=False))
    assert (first.kept, first.failed) == (0, 2) and not out.exists()
    drafts = {d["id"]: d for d in read_jsonl(out.with_name(out.name + TASKS_SUFFIX))}
    assert set(drafts) == {"bm25.md", "aqueducts.md"} and drafts["bm25.md"]["plan"] == PLAN

    no_outage["agent"] = False
    fake_llm.requests.clear()
    again = asyncio.run(synth_plan(settings, documents=documents, out=out, run_agent=True, progress=False))
    assert not plan_requests(fake_llm)  # the tasks written by the first run are reused, not paid again
    assert (again.kept, again.failed, again.dropped) == (1, 0, {"deviates_from_plan": 1})

    (record,) = read_jsonl(out)
    assert record["source"] == "bm25.md" and record["prompt"] == drafts["bm25.md"]["task"]
    run = RunDir.open(Path(record["run_dir"]))
    assert run.finished and run.meta.question == record["prompt"]
    assert record["alignment"]["score"] >= 0.6 and record["alignment"]["matched"] == [0, 1, 2, 3]
    ledger = {line["id"]: line for line in read_jsonl(ledger_path(out))}
    deviated = ledger["aqueducts.md"]["detail"]
    assert ledger["aqueducts.md"]["reason"] == "deviates_from_plan" and deviated["score"] < 0.6
    assert deviated["matched"] == [None, None, None] and RunDir.open(Path(deviated["run_dir"])).finished

    fake_llm.requests.clear()
    third = asyncio.run(synth_plan(settings, documents=documents, out=out, run_agent=True, progress=False))
    assert third.skipped == 2 and not fake_llm.requests


def test_bad_inputs_are_refused_before_any_model_call(
    fake_llm: FakeOpenAI, corpus_index: Path, tmp_path: Path
) -> None:
    settings = settings_for(fake_llm, corpus_index)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "picture.png").write_bytes(b"\x89PNG")
    with pytest.raises(ConfigError, match="holds no document the index reads"):
        asyncio.run(synth_plan(settings, documents=empty, out=tmp_path / "o.jsonl", progress=False))
    with pytest.raises(ConfigError, match="does not exist"):
        asyncio.run(synth_plan(settings, documents=tmp_path / "nowhere", out=tmp_path / "o.jsonl"))
    with pytest.raises(ConfigError, match="min_alignment"):
        asyncio.run(synth_plan(settings, documents=empty, out=tmp_path / "o.jsonl", min_alignment=2.0))
    assert not fake_llm.requests and not (tmp_path / "o.jsonl").exists()


def test_a_task_that_echoes_the_prompt_form_is_refused() -> None:
    plan = ["Find the sources", "Compare them", "Write it up"]
    for echoed in ("The task", "<the task>", "task"):
        assert check_reply({"task": echoed, "plan": plan}, "en")[-1].startswith('"task" must be the request')
    assert check_reply({"task": "How do inverted indexes answer queries?", "plan": plan}, "en") == []
