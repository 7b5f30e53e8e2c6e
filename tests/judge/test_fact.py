"""FACT citation accuracy, effective citations, and ResearcherBench faithfulness and groundedness.

Reports cite real pages of the fake website on 127.0.0.1 (one of them a 404), fetched by the real
``HttpFetcher``; the judge is the fake OpenAI server answering by the statement and page each request
carries. Expected numbers are hand-computed from the official formulas.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from deepresearch.fetch.http import FetchConfig, HttpFetcher
from deepresearch.judge.fact import (
    Claim,
    FactChecker,
    FactResult,
    extract_claims,
    parse_fact_reply,
    statement_url_pairs,
    summarize,
)
from deepresearch.judge.verdicts import InvalidJudgeOutput
from deepresearch.llm.client import ChatClient, LLMConfig
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.web_server import FakeWebSite
from tests.judge.scripted_judge import first_user

BLOOM = "/articles/bloom-filters.html"
PDF = "/papers/consistent-hashing.pdf"
DATED = "/dated.html"
LATIN = "/notes/latin1.txt"
MISSING = "/status/404"

S_FORGETS = "A Bloom filter never forgets an item that was added"
S_TEN_BITS = "About ten bits per item give close to one percent false positives"
S_RING = "Consistent hashing maps keys and servers onto the same ring"
S_MOON = "Bloom filters were invented on the moon"
S_MISSING = "This claim rests on a page that is gone"
S_UNCITED = "This sentence cites nothing at all"
S_CAFE = "The café note is written in French"
S_ZH = "布隆过滤器从不遗忘已经加入的元素"

VERDICTS = {
    (S_FORGETS, BLOOM): "supported",
    (S_TEN_BITS, BLOOM): "supported",
    (S_TEN_BITS, PDF): "unsupported",
    (S_RING, PDF): "supported",
    (S_MOON, DATED): "unsupported",
    (S_CAFE, LATIN): "unknown",
    (S_ZH, BLOOM): "supported",
}
_PAGE = re.compile(r'<page url="([^"]+)">')
_STATEMENT = re.compile(r'<statement index="(\d+)">(.*?)</statement>')


def english_report(site: FakeWebSite) -> str:
    return f"""# Bloom filters and hashing

{S_FORGETS} [1]. {S_TEN_BITS}.[1][2] {S_RING} [2]. {S_MOON} [3].

- {S_MISSING} [4].
- {S_UNCITED}.

{S_CAFE} ({site.url(LATIN)}). {S_FORGETS} [1].

## References

[1] Bloom filters explained — {site.url(BLOOM)}
[2] Notes on consistent hashing — {site.url(PDF)}
[3] Release notes — {site.url(DATED)}
[4] A page that is gone — {site.url(MISSING)}
"""


def chinese_report(site: FakeWebSite) -> str:
    return f"""# 布隆过滤器

{S_ZH}。[1]这一句没有引用。

## 参考文献

[1] Bloom filters explained — {site.url(BLOOM)}
"""


class Script:
    """Answers each statement of a FACT request from ``VERDICTS`` by (statement, page path)."""

    def __init__(self, site: FakeWebSite) -> None:
        self.site = site
        self.prompts: list[str] = []

    def __call__(self, request: dict[str, Any]) -> Reply:
        prompt = first_user(request)
        self.prompts.append(prompt)
        (url,) = _PAGE.findall(prompt)
        path = url.removeprefix(self.site.base_url)
        results = [
            {"index": int(index), "verdict": VERDICTS[(text.rstrip(".。"), path)], "reason": "scripted"}
            for index, text in _STATEMENT.findall(prompt)
        ]
        return Reply(content="```json\n" + json.dumps({"results": results}) + "\n```")


@pytest.fixture
def site(fake_web_server: FakeWebSite) -> FakeWebSite:
    fake_web_server.reset()
    return fake_web_server


def fetch_config(tmp_path: Path) -> FetchConfig:
    """Loopback allowed (the site is on 127.0.0.1), no politeness delay, a cache in ``tmp_path``."""
    return FetchConfig(
        allow_private=True,
        timeout_s=2.0,
        total_timeout_s=10.0,
        retry_backoff_s=0.0,
        host_delay_s=0,
        cache_path=tmp_path / "fetch.sqlite",
    )


async def check_all(
    config: LLMConfig, fetch: FetchConfig, reports: dict[str, str], **options: Any
) -> tuple[list[FactResult], FactChecker]:
    async with ChatClient(config) as client, HttpFetcher(fetch) as fetcher:
        checker = FactChecker(client, fetcher, **options)
        results = await asyncio.gather(*(checker.check(text, task_id=task) for task, text in reports.items()))
    return list(results), checker


def test_fact_and_researcherbench_numbers_match_the_official_formulas(
    site: FakeWebSite, fake_llm: FakeOpenAI, fake_llm_config: LLMConfig, tmp_path: Path
) -> None:
    script = Script(site)
    fake_llm.script = script
    reports = {"en": english_report(site), "zh": chinese_report(site), "none": "Just one uncited sentence."}

    (en, zh, none), checker = asyncio.run(check_all(fake_llm_config, fetch_config(tmp_path), reports))

    # 7 distinct pairs: the repeated sentence is one pair; the 404 is unverifiable; the judge found no
    # usable content on the Latin-1 note ("unknown"). Only supported/unsupported are scored.
    assert [(pair.statement, pair.verdict) for pair in en.pairs] == [
        (S_FORGETS + ".", "supported"),
        (S_TEN_BITS + ".", "supported"),
        (S_TEN_BITS + ".", "unsupported"),
        (S_RING + ".", "supported"),
        (S_MOON + ".", "unsupported"),
        (S_MISSING + ".", "unverifiable"),
        (S_CAFE + ".", "unknown"),
    ]
    assert "404" in en.pairs[5].reason
    supported, judged = 3, 3 + 2
    assert en.citation_accuracy == pytest.approx(supported / judged, abs=1e-9)
    assert en.effective_citations == 3
    # ResearcherBench items: the 7 pairs and the one uncited sentence; the 404's pair is a "URL error"
    # (an item, not judged), the Latin-1 note's "unknown" counts as judged for groundedness
    assert len(en.claims) == 7 and en.uncited_claims == 1
    assert en.faithfulness == pytest.approx(3 / (3 + 2), abs=1e-9)
    assert en.groundedness == pytest.approx((3 + 2 + 1) / (7 + 1), abs=1e-9)

    assert [(pair.statement, pair.verdict) for pair in zh.pairs] == [(S_ZH + "。", "supported")]
    assert (zh.citation_accuracy, zh.effective_citations) == (1.0, 1)
    assert zh.faithfulness == 1.0
    assert zh.groundedness == pytest.approx(1 / 2, abs=1e-9)
    assert none.pairs == [] and none.citation_accuracy is None
    assert (none.faithfulness, none.groundedness) == (0.0, 0.0)  # as the official evaluator scores it

    summary = summarize([en, zh, none])
    assert summary["tasks_with_citations"] == 2  # a task citing nothing is left out, as in stat.py
    assert summary["citation_accuracy"] == pytest.approx((3 + 1) / (5 + 1), abs=1e-9)  # pooled
    assert summary["effective_citations"] == pytest.approx((3 + 1) / 2, abs=1e-9)
    assert summary["faithfulness"] == pytest.approx((3 / 5 + 1 + 0) / 3, abs=1e-9)  # mean over all tasks
    assert summary["groundedness"] == pytest.approx((6 / 8 + 1 / 2 + 0) / 3, abs=1e-9)
    assert summary["pair_verdicts"] == {"supported": 4, "unsupported": 2, "unverifiable": 1, "unknown": 1}

    # each distinct URL fetched once, though both reports cite the article; the 404 never reaches the judge
    assert {path: site.hits[path] for path in (BLOOM, PDF, DATED, LATIN, MISSING)} == dict.fromkeys(
        (BLOOM, PDF, DATED, LATIN, MISSING), 1
    )
    assert checker.fetches == 5
    # one call per URL and report (statements of one URL share a call), zh prompt for the zh report
    assert checker.calls == len(fake_llm.requests) == 5
    bloom_prompts = [p for p in script.prompts if site.url(BLOOM) in p]
    assert len(bloom_prompts) == 2
    assert any("你负责核查" in p and S_ZH in p for p in bloom_prompts)
    assert any("You check citations" in p and S_FORGETS in p and S_TEN_BITS in p for p in bloom_prompts)
    assert all("Bloom filters explained" in p for p in bloom_prompts)  # the page's text went to the judge
    assert checker.usage.total_tokens > 0


def test_a_second_run_reads_pages_from_the_fetch_cache(
    site: FakeWebSite, fake_llm: FakeOpenAI, fake_llm_config: LLMConfig, tmp_path: Path
) -> None:
    fake_llm.script = Script(site)
    report = {"zh": chinese_report(site)}
    first, _ = asyncio.run(check_all(fake_llm_config, fetch_config(tmp_path), report))
    second, _ = asyncio.run(check_all(fake_llm_config, fetch_config(tmp_path), report))
    assert site.hits[BLOOM] == 1
    assert first[0].effective_citations == second[0].effective_citations == 1


def test_unreadable_replies_are_retried_and_a_judge_that_never_answers_fails_the_pair(
    site: FakeWebSite, fake_llm: FakeOpenAI, fake_llm_config: LLMConfig, tmp_path: Path
) -> None:
    script = Script(site)
    bloom_answers = ["I think it is fine.", '{"results": [{"index": 1}]}']  # then a good reply

    def judge(request: dict[str, Any]) -> Reply:
        if site.url(DATED) in first_user(request):
            return Reply(content="no JSON here, sorry")  # never readable
        return Reply(content=bloom_answers.pop(0)) if bloom_answers else script(request)

    fake_llm.script = judge
    references = f"## References\n\n[1] a {site.url(BLOOM)}\n[2] b {site.url(DATED)}\n"
    report = f"{S_FORGETS} [1]. {S_MOON} [2].\n\n{references}"
    (result,), checker = asyncio.run(
        check_all(
            fake_llm_config, fetch_config(tmp_path), {"t": report}, max_invalid_retries=2, concurrency=1
        )
    )
    assert [pair.verdict for pair in result.pairs] == ["supported", "failed"]
    assert "no JSON" in result.pairs[1].reason
    # FACT leaves the failed pair out of both sums; ResearcherBench counts it "unknown" (read, not judged)
    assert (result.citation_accuracy, result.effective_citations) == (1.0, 1)
    assert (result.faithfulness, result.groundedness) == (1.0, 1.0)
    retries = [r for r in fake_llm.requests if len(r["messages"]) == 3]
    assert retries and "could not be used" in retries[0]["messages"][2]["content"]
    assert checker.calls == 3 + 3  # bloom: two unreadable replies then a good one; dated: three unreadable


def test_claims_and_pairs_are_extracted_by_rule() -> None:
    report = """# Title

First fact [1, 3]. Second fact.[2] Third fact with [a link](https://example.org/a#part) and [1-2].

中文事实。[3]没有引用。

| Column | Value |
|---|---|
| Row fact [2] | 7 |

```
not a claim [1]
```

## Sources

- [1] One — https://example.org/one.
2. Two https://example.org/two
[3]: https://example.org/(three)
"""
    claims = extract_claims(report)
    one, two, three = "https://example.org/one", "https://example.org/two", "https://example.org/(three)"
    assert claims == [
        Claim("First fact.", (one, three)),
        Claim("Second fact.", (two,)),
        Claim("Third fact with a link and.", ("https://example.org/a", one, two)),
        Claim("中文事实。", (three,)),
        Claim("没有引用。", ()),
        Claim("Row fact 7", (two,)),
    ]
    assert len(statement_url_pairs(claims)) == 8


def test_reply_parsing_reads_lists_and_labels_and_refuses_prose() -> None:
    reply = '[{"idx": 2, "result": "Unsupported"}, {"idx": 1, "result": "supported", "reason": "yes"}]'
    assert parse_fact_reply(reply, 2) == {1: ("supported", "yes"), 2: ("unsupported", "")}
    assert parse_fact_reply('{"results": [{"verdict": "unknown"}]}', 1) == {1: ("unknown", "")}
    with pytest.raises(InvalidJudgeOutput, match="no JSON"):
        parse_fact_reply("The page supports it.", 1)
    with pytest.raises(InvalidJudgeOutput, match="readable"):
        parse_fact_reply('{"results": [{"index": 1, "verdict": "maybe"}]}', 1)


def test_the_cli_writes_per_report_results_and_a_summary(
    site: FakeWebSite, fake_llm: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer
    from typer.testing import CliRunner

    from deepresearch.cli.fact import judge_fact

    app = typer.Typer()
    app.command("fact")(judge_fact)
    app.command("other")(lambda: None)  # two commands: ``fact`` stays a sub-command, as under ``judge``
    monkeypatch.setenv("DEEPRESEARCH_ALLOW_PRIVATE_URLS", "true")
    monkeypatch.setenv("DEEPRESEARCH_FETCH_HOST_DELAY", "0")
    monkeypatch.setenv("DEEPRESEARCH_FETCH_CACHE", str(tmp_path / "fetch.sqlite"))
    fake_llm.script = Script(site)
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "en.md").write_text(english_report(site), encoding="utf-8")
    (reports / "zh.md").write_text(chinese_report(site), encoding="utf-8")
    out = tmp_path / "out" / "fact.jsonl"
    args = ["fact", "--reports", str(reports), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--judge-base-url", fake_llm.base_url, "--judge-model", "j"])
    assert result.exit_code == 0, result.output
    assert "FACT citation accuracy: 66.67; effective citations: 2.00 per task over 2 tasks" in result.stdout
    lines = {row["task_id"]: row for row in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert lines["en"]["effective_citations"] == 3 and lines["zh"]["citation_accuracy"] == 1.0
    summary = json.loads((out.parent / "summary.json").read_text(encoding="utf-8"))
    assert summary["citation_accuracy"] == pytest.approx(4 / 6, abs=1e-9)
    assert summary["fetches"] == 5 and site.hits[BLOOM] == 1
