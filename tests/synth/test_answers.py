"""Answer equivalence: the shortcut that needs no model, reading the answer out of a report, and the
model's verdict over the fake server when the shortcut cannot tell."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from deepresearch.llm.client import ChatClient, LLMConfig
from deepresearch.synth.answers import (
    JUDGED_HEAD_CHARS,
    JUDGED_TAIL_CHARS,
    Match,
    answers_match,
    expected_of,
    final_answer,
    question_of,
    shortcut,
    tokens,
)
from deepresearch.synth.engine import Tally
from deepresearch.synth.model import BadReply, Language, Model
from tests.fakes.openai_server import FakeOpenAI, Reply


def test_tokens_fold_case_width_punctuation_articles_and_thousands() -> None:
    assert tokens("The ＢＭ２５ function, 1,000 times!") == ["bm25", "function", "1000", "times"]
    assert tokens("An Apple a day") == ["apple", "day"]
    assert tokens("答案是BM25。") == ["答案是", "bm25"]  # CJK runs stay whole, split from Latin
    assert tokens(" …! ") == []


@pytest.mark.parametrize(
    ("expected", "given", "verdict"),
    [
        ("BM25", "bm25", ("exact", True)),
        ("The Okapi BM25", "okapi  bm25.", ("exact", True)),
        ("北京", "北京。", ("exact", True)),
        ("ＢＭ２５", "BM25", ("exact", True)),
        ("BM25", "The corpus describes BM25.", ("contained", True)),
        ("Okapi BM25", "It is Okapi BM25 [1].", ("contained", True)),
        ("BM25", "", ("empty", False)),
    ],
)
def test_the_shortcut_says_yes_or_empty(expected: str, given: str, verdict: tuple[str, bool]) -> None:
    match = shortcut(expected, given)
    assert match is not None and (match.method, match.equivalent) == verdict


@pytest.mark.parametrize(
    ("expected", "given"),
    [
        ("BM25", "It is not BM25."),  # negated
        ("BM25", "BM25 or TF-IDF"),  # hedged
        ("北京", "北京大学"),  # a CJK run has no word boundary to trust
        ("北京", "不是北京"),
        ("BM25", "TF-IDF"),  # different: only the model may say no
        ("BM25", " ".join(["word"] * 20) + " BM25"),  # too long to trust containment
        ("25", "BM25"),  # not a whole word
        ("", "BM25"),
    ],
)
def test_the_shortcut_leaves_the_rest_to_the_model(expected: str, given: str) -> None:
    assert shortcut(expected, given) is None


def test_final_answer_reads_the_answer_out_of_a_report() -> None:
    report = "# Ranking\n\nThe corpus describes BM25 [1, 2].\n\n## References\n\n[1] A — file:///a\n"
    assert final_answer(report).short == "# Ranking\n\nThe corpus describes BM25."
    long_report = "Background. " * 100 + "\n\n**Final answer:** Okapi BM25 [3]\n"
    answer = final_answer(long_report)
    assert answer.short == "Okapi BM25" and "Background." in answer.text
    endless = "x" * (JUDGED_HEAD_CHARS + JUDGED_TAIL_CHARS) + "the end"
    cut = final_answer(endless)
    assert cut.short is None and cut.text.endswith("the end") and "[…]" in cut.text
    assert len(cut.text) < JUDGED_HEAD_CHARS + JUDGED_TAIL_CHARS + 20
    assert final_answer("## 参考文献\n\n[1] x").text == ""


def test_input_fields() -> None:
    assert question_of({"prompt": " Q? "}) == "Q?" and question_of({"question": "A?", "prompt": "B?"}) == "A?"
    assert expected_of({"answer": ["BM25", "Okapi BM25"]}) == "BM25 / Okapi BM25"
    assert expected_of({"answer": 1994}) == "1994" and expected_of({}) == ""


def judge(replies: list[str]) -> Any:
    queue = iter(replies)
    return lambda request: Reply(content=next(queue))


def run_match(config: LLMConfig, expected: str, given: str, language: Language = "en") -> tuple[Match, Tally]:
    async def go() -> tuple[Match, Tally]:
        tally = Tally()
        async with ChatClient(config) as client:
            return await answers_match(
                Model(client, tally), "Which function?", expected, given, language
            ), tally

    return asyncio.run(go())


def test_the_model_decides_when_the_shortcut_cannot(fake_llm: FakeOpenAI, fake_llm_config: LLMConfig) -> None:
    fake_llm.script = judge([json.dumps({"equivalent": True, "reason": "Okapi's scheme is BM25"})])
    match, tally = run_match(fake_llm_config, "BM25", "Okapi's best-matching scheme")
    assert match == Match(True, "Okapi's scheme is BM25", "model") and tally.calls == 1
    sent = fake_llm.requests[0]["messages"]
    assert len(sent) == 1 and sent[0]["role"] == "user"
    assert "Reference answer" in sent[0]["content"] and "Okapi's best-matching scheme" in sent[0]["content"]


def test_a_long_report_is_judged_whole_in_its_language(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig
) -> None:
    fake_llm.script = judge(['{"equivalent": "false", "reason": "它的结论是 TF-IDF"}'])
    report = "背景介绍。" * 200 + "\n\n结论：这里讨论的是 TF-IDF [1]。\n\n## 参考文献\n\n[1] x — file:///x\n"
    match, _ = run_match(fake_llm_config, "BM25", report, "zh")
    assert (match.equivalent, match.method) == (False, "model")
    content = fake_llm.requests[0]["messages"][0]["content"]
    assert "参考答案" in content and "一整篇研究报告" in content
    assert "结论：这里讨论的是 TF-IDF" in content and "file:///x" not in content


def test_no_model_call_for_a_shortcut_and_bad_reply_after_two_unusable_verdicts(
    fake_llm: FakeOpenAI, fake_llm_config: LLMConfig
) -> None:
    match, tally = run_match(fake_llm_config, "BM25", "The answer is BM25 [1].")
    assert match.method == "contained" and tally.calls == 0 and fake_llm.requests == []
    fake_llm.script = judge(['{"equivalent": "maybe"}', "no idea"])
    with pytest.raises(BadReply):
        run_match(fake_llm_config, "BM25", "TF-IDF")
    assert len(fake_llm.requests) == 2
