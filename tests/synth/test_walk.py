"""``synth walk`` end to end: a small linked corpus of HTML pages (one language pair in Chinese) built
and indexed in the test, walked with a scripted model on the fake OpenAI server; the drops, the
fallback for a bad link choice, the Chinese prompts, and a rerun after a failed first run that does
only the walks left undecided."""

from __future__ import annotations

import asyncio
import json
import random
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from deepresearch.config import Settings, load_settings
from deepresearch.errors import ConfigError
from deepresearch.search.local import LinkedDocument, LocalIndex
from deepresearch.synth.context import open_context
from deepresearch.synth.engine import Tally, ledger_path
from deepresearch.synth.walk import (
    LEAKED,
    MAX_CANDIDATES,
    Fact,
    Walk,
    candidates,
    choice_problems,
    grounded,
    leaked,
    question_problems,
    question_schema,
    supported,
    synth_walk,
    walk_item,
)
from tests.fakes.openai_server import FakeOpenAI, Reply

FILLER = (
    "This page belongs to a small handbook about the services of one made-up cluster. It describes how "
    "the part works, what it depends on and what an operator should check before changing it. "
)
FILLER_ZH = (
    "本页属于一本关于某个虚构集群各项服务的小手册，"
    "介绍这个组件如何工作、依赖什么，以及运维人员在修改之前应当检查的事项。"
)
PAGES: dict[str, tuple[str, str, list[str]]] = {
    "alpha.html": (
        "Alpha service",
        "The alpha service listens on port 7431 by default.",
        ["beta.html", "gamma.html"],
    ),
    "beta.html": (
        "Beta store",
        "The beta store keeps every snapshot for 45 days.",
        ["gamma.html", "alpha.html"],
    ),
    "gamma.html": ("Gamma scheduler", "The gamma scheduler wakes up every 900 seconds.", ["alpha.html"]),
    "lonely.html": ("Lonely page", "The lonely page was last revised in 2019 by nobody.", []),
    "zh/jiansuo.html": ("检索服务", "检索服务默认监听端口 8080，并在每天凌晨重建索引。", ["suoyin.html"]),
    "zh/suoyin.html": ("索引构建", "索引构建程序会把快照保留 14 天，之后自动删除。", ["jiansuo.html"]),
}
EN_STARTS = 3
ZH_STARTS = 2
CHOICES = 2
"""Walks that meet two unvisited links at once (from Alpha and from Beta); every other step has one."""


def write_page(path: Path, title: str, fact: str, links: list[str]) -> None:
    filler = FILLER_ZH if path.parent.name == "zh" else FILLER
    anchors = " ".join(f'<a href="{target}">{PAGES_BY_NAME[target][0]}</a>' for target in links)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"<html><head><title>{title}</title></head><body><h1>{title}</h1><p>{filler * 2}</p>"
        f"<p>{fact}</p><p>{filler}</p><p>{anchors}</p></body></html>",
        encoding="utf-8",
    )


PAGES_BY_NAME = {name.rpartition("/")[2]: page for name, page in PAGES.items()}


@pytest.fixture(scope="module")
def linked_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("linked")
    for name, (title, fact, links) in PAGES.items():
        write_page(root / "site" / name, title, fact, links)
    path = root / "index.sqlite"
    with LocalIndex(path) as index:
        assert index.add_paths([root / "site"]).errors == []
        assert index.has_links()
    return path


def url_of(index_path: Path, name: str) -> str:
    return (index_path.parent / "site" / name).resolve().as_uri()


def settings_for(fake_llm: FakeOpenAI, index: Path, **extra: Any) -> Settings:
    return load_settings({"base_url": fake_llm.base_url, "model": "m", "index": str(index), **extra}, env={})


# --- the scripted model --------------------------------------------------------------------------


def prompt_of(request: dict[str, Any]) -> str:
    return str(request["messages"][0]["content"])


def kind_of(text: str) -> str:
    if "--- document text ---" in text or "--- 文档正文 ---" in text:
        return "facts"
    if '"choice"' in text:
        return "choice"
    return "question"


def key_sentence(text: str) -> str:
    """The sentence of a page's text that holds its number (each page has one)."""
    body = re.split(r"--- (?:document text|文档正文) ---", text)[1]
    return re.search(r"[^.。\n]*\d+[^.。\n]*[.。]", body).group(0).strip()  # type: ignore[union-attr]


def used_facts(text: str) -> tuple[int, int, str, str]:
    """The first fact and the first fact of another document, that second fact's number, and the
    first fact's text."""
    facts = re.findall(r"^\[(\d+)\] ?[(（](?:document|文档) (\d+)[:：].*?[)）] ?(.*)$", text, re.MULTILINE)
    first = facts[0]
    other = next(f for f in facts if f[1] != first[1])
    return int(first[0]), int(other[0]), re.findall(r"\d+", other[2])[0], first[2]


def answer_walks(request: dict[str, Any], *, leak: bool = False) -> Reply:
    text = prompt_of(request)
    kind = kind_of(text)
    if kind == "facts":
        sentence = key_sentence(text)
        return Reply(
            content=json.dumps({"facts": [{"fact": sentence, "quote": sentence}]}, ensure_ascii=False)
        )
    if kind == "choice":
        return Reply(content='{"choice": 1, "reason": "it names a part"}')
    first, other, number, about = used_facts(text)
    subject = re.sub(r"\d+", "", about).strip(" .。")
    question = f"From where it says {subject}, which value does the linked part use?" + (
        f" ({number})" if leak else ""
    )
    reply = {"question": question, "answer": number, "start_fact": first, "answer_fact": other}
    return Reply(content=json.dumps(reply))


def requests_of(fake_llm: FakeOpenAI, kind: str) -> list[str]:
    return [prompt_of(r) for r in fake_llm.requests if kind_of(prompt_of(r)) == kind]


def records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def ledger(out: Path) -> dict[str, dict[str, Any]]:
    lines = [json.loads(line) for line in ledger_path(out).read_text(encoding="utf-8").splitlines()]
    return {line["id"]: line for line in lines}


# --- end to end ----------------------------------------------------------------------------------


def test_walks_become_questions_that_need_two_documents(
    fake_llm: FakeOpenAI, linked_index: Path, tmp_path: Path
) -> None:
    fake_llm.script = answer_walks
    out = tmp_path / "walk.jsonl"
    summary = asyncio.run(synth_walk(settings_for(fake_llm, linked_index), out=out, limit=10, progress=False))
    assert (summary.kept, summary.failed, dict(summary.dropped)) == (EN_STARTS + ZH_STARTS, 0, {})
    kept = records(out)
    assert {r["task_id"] for r in kept} == {f"walk-0-{n}" for n in range(EN_STARTS + ZH_STARTS)}
    assert all(r["task_id"] == r["source_id"] for r in kept)
    by_start = {r["path"][0]: r for r in kept}
    alpha = by_start[url_of(linked_index, "alpha.html")]
    # alpha → beta (the model's choice among two) → gamma (the only unvisited link) → nowhere new
    assert alpha["path"] == [url_of(linked_index, n) for n in ("alpha.html", "beta.html", "gamma.html")]
    assert [f["quote"] for f in alpha["facts"]] == [
        PAGES[n][1] for n in ("alpha.html", "beta.html", "gamma.html")
    ]
    assert (alpha["answer"], alpha["used_facts"], alpha["language"]) == ("45", [0, 1], "en")
    assert alpha["answer"] not in alpha["question"]
    zh = by_start[url_of(linked_index, "zh/jiansuo.html")]
    assert zh["language"] == "zh" and zh["path"][1] == url_of(linked_index, "zh/suoyin.html")
    assert zh["answer"] == "14" and zh["facts"][0]["fact"].startswith("检索服务")
    for record in kept:
        assert set(record) >= {"task_id", "question", "answer", "path", "facts", "language"}
        assert {fact["url"] for fact in record["facts"]} <= set(record["path"])
    # Chinese walks are asked in Chinese, English ones in English; the only choice was made by the model.
    facts_prompts = requests_of(fake_llm, "facts")
    assert sum("文档正文" in p for p in facts_prompts) == 2 * ZH_STARTS
    assert sum("document text" in p for p in facts_prompts) == 3 * EN_STARTS
    assert (
        len(requests_of(fake_llm, "choice")) == CHOICES and "Beta store" in requests_of(fake_llm, "choice")[0]
    )
    assert sum("沿着链接" in p for p in requests_of(fake_llm, "question")) == ZH_STARTS
    assert summary.tally.calls == len(fake_llm.requests) == 3 * EN_STARTS + 2 * ZH_STARTS + CHOICES + 5
    # A rerun decides nothing again and pays nothing.
    fake_llm.requests.clear()
    again = asyncio.run(synth_walk(settings_for(fake_llm, linked_index), out=out, limit=10, progress=False))
    assert (again.kept, again.skipped, fake_llm.requests) == (0, 5, [])


def test_seed_and_limit_fix_the_walks(fake_llm: FakeOpenAI, linked_index: Path, tmp_path: Path) -> None:
    fake_llm.script = answer_walks
    settings = settings_for(fake_llm, linked_index)
    two = asyncio.run(synth_walk(settings, out=tmp_path / "two.jsonl", limit=2, seed=7, progress=False))
    five = asyncio.run(synth_walk(settings, out=tmp_path / "five.jsonl", limit=5, seed=7, progress=False))
    other = asyncio.run(synth_walk(settings, out=tmp_path / "other.jsonl", limit=2, seed=8, progress=False))
    assert (two.kept, five.kept, other.kept) == (2, 5, 2)
    starts = {r["task_id"]: r["path"][0] for r in records(tmp_path / "five.jsonl")}
    assert {r["task_id"]: r["path"][0] for r in records(tmp_path / "two.jsonl")} == {
        key: starts[key] for key in ("walk-7-0", "walk-7-1")
    }
    assert [r["task_id"] for r in records(tmp_path / "other.jsonl")] != ["walk-7-0", "walk-7-1"]


# --- drops and fallbacks -------------------------------------------------------------------------


def test_a_leaked_answer_and_an_unusable_question_are_dropped(
    fake_llm: FakeOpenAI, linked_index: Path, tmp_path: Path
) -> None:
    fake_llm.script = lambda request: answer_walks(request, leak=True)
    out = tmp_path / "leaked.jsonl"
    leaked_run = asyncio.run(
        synth_walk(settings_for(fake_llm, linked_index), out=out, limit=2, progress=False)
    )
    assert (leaked_run.kept, dict(leaked_run.dropped)) == (0, {"answer_leaked": 2})
    assert all(line["detail"]["problem"] == LEAKED for line in ledger(out).values())
    assert len(requests_of(fake_llm, "question")) == 4  # each leak was pointed out once, then dropped

    def garbled_question(request: dict[str, Any]) -> Reply:
        if kind_of(prompt_of(request)) == "question":
            return Reply(
                content='{"question": "Which value?", "answer": "7431", "start_fact": 1, "answer_fact": 1}'
            )
        return answer_walks(request)

    fake_llm.reset()
    fake_llm.script = garbled_question
    out = tmp_path / "bad.jsonl"
    bad = asyncio.run(synth_walk(settings_for(fake_llm, linked_index), out=out, limit=1, progress=False))
    assert (bad.kept, dict(bad.dropped)) == (0, {"bad_reply": 1})
    (line,) = ledger(out).values()
    assert line["detail"] == {
        "stage": "question",
        "problem": '"answer_fact" must be one of 2, 3',
        "path": 3,
        "facts": 3,
        "bad_replies": 0,
    }
    retry = requests_of(fake_llm, "question")
    assert len(retry) == 2  # asked once more with the problems listed
    assert "That reply cannot be used" in str(fake_llm.requests[-1]["messages"][-1]["content"])


def test_invented_facts_give_way_to_the_pages_own_statements(
    fake_llm: FakeOpenAI, linked_index: Path, tmp_path: Path
) -> None:
    def only_alpha(request: dict[str, Any]) -> Reply:
        text = prompt_of(request)
        if kind_of(text) == "facts" and "Alpha service" not in text.partition("---")[0]:
            return Reply(content='{"facts": [{"fact": "made up", "quote": "a sentence the page never had"}]}')
        return answer_walks(request)

    fake_llm.script = only_alpha
    out = tmp_path / "short.jsonl"
    summary = asyncio.run(
        synth_walk(settings_for(fake_llm, linked_index), out=out, limit=10, language="en", progress=False)
    )
    details = [line["detail"] for line in ledger(out).values()]
    assert all(d["bad_replies"] >= 1 for d in details)  # the invented quotes were refused...
    records = (
        [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] if out.exists() else []
    )
    facts = [fact for record in records for fact in record["facts"]]
    assert summary.kept == len(records) and facts  # ...and the pages' own statements stood in for them
    assert not any(fact["fact"] == "made up" for fact in facts)
    assert not any("文档正文" in p for p in requests_of(fake_llm, "facts"))  # language="en" for all


def test_a_bad_link_choice_falls_back_to_a_fixed_choice(
    fake_llm: FakeOpenAI, linked_index: Path, tmp_path: Path
) -> None:
    def wild_choice(request: dict[str, Any]) -> Reply:
        if kind_of(prompt_of(request)) == "choice":
            return Reply(content='{"choice": 99}')
        return answer_walks(request)

    paths = []
    for attempt in range(2):
        fake_llm.reset()
        fake_llm.script = wild_choice
        out = tmp_path / f"fallback{attempt}.jsonl"
        summary = asyncio.run(
            synth_walk(settings_for(fake_llm, linked_index), out=out, limit=10, progress=False)
        )
        assert summary.kept == EN_STARTS + ZH_STARTS
        assert len(requests_of(fake_llm, "choice")) == 2 * CHOICES  # each asked twice, then the fallback
        paths.append({r["task_id"]: r["path"] for r in records(out)})
        assert sum(line["detail"]["bad_replies"] for line in ledger(out).values()) == CHOICES
    assert paths[0] == paths[1]


def test_a_start_without_links_is_dropped_before_any_model_call(
    fake_llm: FakeOpenAI, linked_index: Path, tmp_path: Path
) -> None:
    fake_llm.script = answer_walks
    settings = settings_for(fake_llm, linked_index)

    async def walk_from(name: str) -> Any:
        async with open_context(settings, tmp_path / "x.jsonl") as ctx:
            with LocalIndex(linked_index) as index:
                item = {"id": "w", "start": url_of(linked_index, name)}
                return await walk_item(item, index, ctx.model(Tally()), max_steps=4, language="auto")

    lonely = asyncio.run(walk_from("lonely.html"))
    assert lonely.dropped == "no_links" and lonely.detail["start"].endswith("lonely.html")
    gone = asyncio.run(walk_from("missing.html"))
    assert gone.dropped == "no_links" and gone.detail["missing"] is True
    assert fake_llm.requests == []
    two_steps = asyncio.run(
        synth_walk(settings, out=tmp_path / "two.jsonl", limit=10, max_steps=2, progress=False)
    )
    assert all(len(r["path"]) == 2 for r in records(tmp_path / "two.jsonl")) and two_steps.kept == 5
    with pytest.raises(ConfigError, match="max_steps"):
        asyncio.run(synth_walk(settings, out=tmp_path / "one.jsonl", max_steps=1, progress=False))


def test_an_index_without_links_says_to_rebuild_it(fake_llm: FakeOpenAI, tmp_path: Path) -> None:
    site = tmp_path / "site"
    write_page(site / "alpha.html", *PAGES["alpha.html"])
    write_page(site / "beta.html", *PAGES["beta.html"])
    path = tmp_path / "index.sqlite"
    with LocalIndex(path) as index:
        index.add_paths([site])
    with sqlite3.connect(path) as db:  # as an index built before links were kept reads after migrating
        db.execute("DELETE FROM links")
    db.close()
    with pytest.raises(
        ConfigError, match=r"this index has no links .*index fetch debian-docs.*index add PATH"
    ):
        asyncio.run(synth_walk(settings_for(fake_llm, path), out=tmp_path / "w.jsonl", progress=False))
    assert fake_llm.requests == [] and not (tmp_path / "w.jsonl").exists()


# --- a failed first run, then a rerun ------------------------------------------------------------


def test_a_rerun_finishes_the_failed_walks_without_repeating_the_others(
    fake_llm: FakeOpenAI, linked_index: Path, tmp_path: Path
) -> None:
    def gamma_down(request: dict[str, Any]) -> Reply:
        text = prompt_of(request)
        if kind_of(text) == "facts" and "Gamma scheduler" in text.partition("---")[0]:
            return Reply(status=500, body='{"error": {"message": "down"}}')
        return answer_walks(request)

    settings = settings_for(fake_llm, linked_index, max_retries=0)
    out = tmp_path / "walk.jsonl"
    fake_llm.script = gamma_down
    first = asyncio.run(synth_walk(settings, out=out, limit=10, progress=False))
    assert (first.kept, first.failed) == (ZH_STARTS, EN_STARTS)  # every English walk reaches Gamma
    assert set(ledger(out)) == {r["task_id"] for r in records(out)}
    zh_ids = set(ledger(out))

    fake_llm.reset()
    fake_llm.script = answer_walks
    second = asyncio.run(synth_walk(settings, out=out, limit=10, progress=False))
    assert (second.kept, second.skipped, second.failed, second.total_kept) == (EN_STARTS, ZH_STARTS, 0, 5)
    redone = {key: line for key, line in ledger(out).items() if key not in zh_ids}
    assert len(redone) == EN_STARTS
    assert len(fake_llm.requests) == sum(line["calls"] for line in redone.values()) == second.tally.calls
    assert not any("文档正文" in prompt_of(r) for r in fake_llm.requests)  # the Chinese walks were not redone
    assert len(records(out)) == 5 and len({r["task_id"] for r in records(out)}) == 5


# --- the checks on replies -----------------------------------------------------------------------


def test_reply_checks() -> None:
    walk = Walk(
        path=["u1", "u2"],
        facts=[
            Fact("u1", "One", 1, "The port is 7431.", "It listens on port 7431."),
            Fact("u1", "One", 1, "It logs to syslog.", "Logs go to syslog."),
            Fact("u2", "Two", 2, "Snapshots last 45 days.", "Every snapshot is kept for 45 days."),
        ],
    )
    good = {
        "question": "Where logs go to syslog, how long?",
        "answer": "45 days",
        "start_fact": "2",
        "answer_fact": 3,
    }
    assert question_problems(good, walk) == [] and good["start_fact"] == 2
    assert question_problems({**good, "answer_fact": 2}, walk) == ['"answer_fact" must be one of 3']
    assert question_problems({**good, "start_fact": 3}, walk) == ['"start_fact" must be one of 1, 2']
    assert question_problems({**good, "answer": "12"}, walk) == [
        "the answer must be stated in the answer fact (or the start fact)"
    ]
    assert question_problems({**good, "question": ""}, walk) == ['"question" is missing or empty']
    two_answers = Walk(
        path=walk.path,
        facts=[*walk.facts, Fact("u2", "Two", 2, "Backups run nightly.", "Backups run nightly.")],
    )
    named_wrong = {**good, "answer": "nightly", "answer_fact": 3}
    assert question_problems(named_wrong, two_answers) == [] and named_wrong["answer_fact"] == 4
    assert question_problems({**good, "question": "What is the answer to this question?"}, walk) == [
        "the question must be about the start fact: name or describe something it says"
    ]
    schema = question_schema(walk)["properties"]
    assert (schema["start_fact"]["enum"], schema["answer_fact"]["enum"]) == ([1, 2], [3])
    assert supported("kept 45 days", ["Every snapshot is kept for 45 days."])
    assert supported("检索服务", ["检索服务默认监听端口"]) and not supported("", ["x"])
    assert leaked("7431", "Does port 7431 matter?") and not leaked("7431", "Does port 74310 matter?")
    assert leaked("端口", "哪个端口？") and not leaked("45 days", "How long?")
    data: dict[str, Any] = {"choice": "2"}
    assert choice_problems(data, 3) == [] and data["choice"] == 2
    assert choice_problems({"choice": 0}, 3) and choice_problems({"choice": True}, 3)


def test_quotes_are_the_documents_own_sentences_and_many_links_are_sampled() -> None:
    text = (
        "The alpha service listens on port 7431 by default. It logs to syslog.\n\n检索服务默认监听端口 8080。"
    )
    assert (
        grounded("the ALPHA service listens  on port 7431", text) == "the ALPHA service listens on port 7431"
    )
    assert grounded("alpha service uses port 7431 by default", text) == (
        "The alpha service listens on port 7431 by default."
    )
    assert grounded("检索服务默认监听端口8080", text) == "检索服务默认监听端口 8080。"
    assert grounded("The supporting sentence, copied exactly", text) is None
    assert grounded("port", text) is None
    links = [LinkedDocument(f"u{n}", f"T{n}", "") for n in range(30)]
    shown = candidates(links, random.Random("walk-0-0:1"))
    assert len(shown) == MAX_CANDIDATES and shown == sorted(shown, key=lambda link: int(link.url[1:]))
    assert candidates(links, random.Random("walk-0-0:1")) == shown != candidates(links, random.Random("x"))
    assert candidates(links[:3], random.Random(0)) == links[:3]


def test_statements_are_prose_sentences_of_the_page() -> None:
    from deepresearch.synth.walk import statements

    text = (
        "# Heading of the page\n\nShort one.\n\n- a list item that is long enough to count as words here.\n\n"
        "The postgres_fdw module provides a foreign data wrapper for accessing remote PostgreSQL servers. "
        "It replaces the older dblink module for most purposes and pushes work to the remote server."
    )
    assert statements(text) == [
        ("The postgres_fdw module provides a foreign data wrapper for accessing remote PostgreSQL servers.",)
        * 2,
        ("It replaces the older dblink module for most purposes and pushes work to the remote server.",) * 2,
    ]
