"""Citation checks on a finished report: DeepResearch Bench's FACT and ResearcherBench's faithfulness
and groundedness.

A report's citations are claims about web pages, and they can be checked the way the benchmarks do:
pair each cited statement with the URL it cites, read the page, and ask a judge whether the page
supports the statement. One pass serves both benchmarks:

- **Statement–URL pairs.** The report is cut into sentences (headings, code blocks and the references
  section left out). A sentence's URLs are those of its ``[n]`` markers (``[1]``, ``[1, 2]``,
  ``[1-3]``; a marker right after the sentence's full stop belongs to it), looked up in the references
  section (``[n] Title — URL`` lines, as our reports write them, or ``n. … URL``), plus its inline
  ``[text](url)`` links and bare URLs. One pair per distinct (statement, URL); the statement is the
  sentence with its markers and URLs removed. DeepResearch Bench has a judge extract the pairs and
  another drop statements that say exactly the same thing; we extract by rule and drop exact repeats,
  which is deterministic, free, and what the official dedup is instructed to do.
- **Fetching.** Each distinct URL is fetched once per ``FactChecker`` (with ``HttpFetcher`` that means
  its SSRF guard, limits and SQLite cache), however many statements and reports cite it.
- **Judging.** All statements citing one URL go to the judge together (in batches of ``batch``), with
  the page text (the first ``max_page_chars`` characters), in the ``fact_en.j2`` or ``fact_zh.j2``
  prompt; the verdict is ``supported``, ``unsupported`` or ``unknown`` (the page has no usable content).
  An unreadable reply goes back to the judge with the reason (``retry_invalid.j2``, as the grader does).

Accounting follows the official FACT scripts (``utils/validate.py`` and ``utils/stat.py`` of
DeepResearch Bench): a pair whose page could not be fetched (``unverifiable``), a pair the judge found
no usable content for (``unknown``) and a pair the judge never answered readably (``failed``) are all
left out of both the numerator and the denominator; they are counted, never scored as unsupported.
So per task ``citation_accuracy = supported / (supported + unsupported)`` and ``effective_citations
= supported``. Over a benchmark (``summarize``), the official accuracy is pooled (total supported over
total judged, not a mean of per-task ratios) and effective citations are averaged over the tasks that
cite anything at all.

ResearcherBench (``faithful_evaluator.py``) scores claim–source items: every cited (claim, URL) and
every uncited claim is one item; its judge answers yes / no / unknown, a page it cannot read is a
"URL error", and a judge call that fails or answers with the wrong count is "unknown". Our claims are
the report's sentences (deduplicated, cited or not) — a rule, not the official claim-extraction judge
call — and the items are our statement–URL pairs plus the uncited sentences. So ``faithfulness =
supported / (supported + unsupported)`` and ``groundedness = (supported + unsupported + unknown +
failed) / items`` (an unfetchable page's pair counts in the items only); both are 0.0 rather than
undefined when their denominator is 0, and a benchmark's value is the plain mean over all reports,
as ``faithfulness_script.py`` averages them.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import json_repair

from deepresearch.errors import ConfigError, LLMError
from deepresearch.fetch import Fetcher, Page
from deepresearch.judge.verdicts import InvalidJudgeOutput
from deepresearch.llm.client import ChatClient
from deepresearch.llm.messages import Message, Usage
from deepresearch.templates import render_prompt

logger = logging.getLogger(__name__)

PairVerdict = Literal["supported", "unsupported", "unknown", "unverifiable", "failed"]
"""``unknown``: the judge saw no usable content on the page; ``unverifiable``: the page could not be
fetched (or had no text); ``failed``: no readable judge answer. Only the first two are scored."""

DEFAULT_BATCH = 10
DEFAULT_CONCURRENCY = 8
DEFAULT_MAX_PAGE_CHARS = 100_000
DEFAULT_MAX_INVALID_RETRIES = 2

_FENCE = re.compile(r"^\s*(```|~~~).*?^\s*\1[^\n]*$", re.MULTILINE | re.DOTALL)
_REFERENCES_HEADING = re.compile(
    r"^[ \t]{0,3}(?:#{1,6}[ \t]*|\*\*)?(?:\d+[.)]?[ \t]*)?"
    r"(?:references?|sources?|bibliography|works cited|citations|参考文献|参考资料|参考来源|引用来源|来源)"
    r"[ \t]*[:：]?[ \t]*(?:\*\*)?[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_REFERENCE_LINE = re.compile(r"^\s*(?:[-*+]\s*)?(?:\[(\d+)\]:?|(\d+)[.)])\s*(.*)$")
_URL = re.compile(r"https?://[^\s<>\"'`\]]+")
_LINK = re.compile(r"(!?)\[([^\]\n]*)\]\((https?://[^)\s]+)(?:\s+\"[^\"]*\")?\)")
_MARKER = re.compile(r"\[(\d+(?:\s*[-–,，、]\s*\d+)*)\](?!\()")
_LEADING_MARKERS = re.compile(r"^(?:\s*\[\d+(?:\s*[-–,，、]\s*\d+)*\](?!\())+")
_MARKERS_AFTER_STOP = re.compile(r"([.!?。！？])((?:[ \t]*\[\d+(?:\s*[-–,，、]\s*\d+)*\](?!\())+)")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")
_BLOCK_START = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}(?:\s|$)")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
JudgeLabel = Literal["supported", "unsupported", "unknown"]
_LABELS: dict[str, JudgeLabel] = {
    **dict.fromkeys(("supported", "support", "supports", "yes", "true", "partially supported"), "supported"),
    **dict.fromkeys(("unsupported", "not supported", "no", "false", "contradicted"), "unsupported"),
    **dict.fromkeys(("unknown", "cannot determine", "unclear", "n a", "no content", "invalid"), "unknown"),
}


# --- statements and claims


@dataclass(frozen=True, slots=True)
class Claim:
    """One sentence of the report (cleaned of markers and URLs) and the URLs it cites, in order."""

    text: str
    urls: tuple[str, ...] = ()


def parse_references(report: str) -> tuple[str, dict[int, str]]:
    """The report's body (before its last references heading) and the URL of each numbered reference."""
    headings = list(_REFERENCES_HEADING.finditer(report))
    if not headings:
        return report, {}
    body, section = report[: headings[-1].start()], report[headings[-1].end() :]
    urls: dict[int, str] = {}
    for line in section.splitlines():
        match = _REFERENCE_LINE.match(line)
        found = _URL.search(match.group(3)) if match else None
        if match and found:
            urls.setdefault(int(match.group(1) or match.group(2)), _clean_url(found.group(0)))
    return body, urls


def extract_claims(report: str) -> list[Claim]:
    """Every sentence of the report's body, deduplicated by text, with the URLs it cites."""
    body, references = parse_references(report)
    claims: dict[str, list[str]] = {}
    for block in _blocks(_FENCE.sub("\n", body)):
        for sentence in _sentences(block):
            text, urls = _read_sentence(sentence, references)
            if text and re.search(r"\w", text):
                claims.setdefault(text, []).extend(url for url in urls if url not in claims.get(text, []))
    return [Claim(text, tuple(dict.fromkeys(urls))) for text, urls in claims.items()]


def statement_url_pairs(claims: Iterable[Claim]) -> list[tuple[str, str]]:
    """One (statement, URL) pair per distinct combination, in report order."""
    return list(dict.fromkeys((claim.text, url) for claim in claims for url in claim.urls))


def _blocks(body: str) -> list[str]:
    """Paragraphs, list items and table rows, each joined into one line; headings and table header
    rows left out."""
    blocks: list[list[str]] = [[]]
    for line in body.splitlines():
        if _TABLE_RULE.match(line):  # the row above was the header: labels, not claims
            if blocks[-1] and blocks[-1][0].startswith("|"):
                blocks[-1] = []
            continue
        if not line.strip() or _HEADING.match(line):
            blocks.append([])
            continue
        row = line.lstrip().startswith("|")
        if _BLOCK_START.match(line) or row or (blocks[-1] and blocks[-1][-1].startswith("|")):
            blocks.append([])
        blocks[-1].append(line.strip())
    return [" ".join(lines) for lines in blocks if lines]


def _sentences(block: str) -> list[str]:
    """``block`` cut after sentence-ending punctuation; markers right after a full stop (``end.[1]``)
    belong to the sentence they end."""
    block = _MARKERS_AFTER_STOP.sub(r"\2\1", block)
    sentences: list[str] = []
    for piece in _SENTENCE_END.split(block):
        leading = _LEADING_MARKERS.match(piece)
        if leading and sentences:
            sentences[-1] += " " + leading.group(0).strip()
            piece = piece[leading.end() :]
        if piece.strip():
            sentences.append(piece.strip())
    return sentences


def _read_sentence(sentence: str, references: dict[int, str]) -> tuple[str, list[str]]:
    """The statement text and the URLs a sentence cites."""
    urls: list[str] = []

    def link(match: re.Match[str]) -> str:
        if match.group(1):  # an image is not a source
            return " "
        urls.append(_clean_url(match.group(3)))
        return match.group(2)

    def bare(match: re.Match[str]) -> str:
        url, rest = _split_url(match.group(0))
        urls.append(_clean_url(url))
        return " " + rest

    def marker(match: re.Match[str]) -> str:
        urls.extend(references[number] for number in _numbers(match.group(1)) if number in references)
        return " "

    text = _LINK.sub(link, sentence)
    text = _URL.sub(bare, text.replace("<http", " http"))
    text = _MARKER.sub(marker, text)
    text = re.sub(r"\(\s*\)|（\s*）", " ", _BLOCK_START.sub("", text))
    text = re.sub(r"\*\*|__|`|(?<!\w)>(?=\s)", "", text).replace("|", " ")
    text = re.sub(r"\s+([,.;:!?。，；：！？])", r"\1", " ".join(text.split()))
    return text.strip(), urls


def _numbers(spec: str) -> list[int]:
    """``1, 3-5`` as [1, 3, 4, 5]; a backwards or implausibly long range counts its first number only."""
    numbers: list[int] = []
    for part in re.split(r"\s*[,，、]\s*", spec):
        bounds = [int(bound) for bound in re.split(r"\s*[-–]\s*", part)]
        if len(bounds) == 2 and 0 <= bounds[1] - bounds[0] < 50:
            numbers.extend(range(bounds[0], bounds[1] + 1))
        else:
            numbers.append(bounds[0])
    return numbers


def _clean_url(url: str) -> str:
    return _split_url(url)[0].split("#", 1)[0]


def _split_url(url: str) -> tuple[str, str]:
    """A URL found in prose, less the punctuation that ends the sentence around it: (URL, the rest)."""
    end = len(url.rstrip(".,;:!?。，；"))
    while url[:end].endswith(")") and url[:end].count("(") < url[:end].count(")"):
        end = len(url[: end - 1].rstrip(".,;:!?。，；"))
    return url[:end], url[end:]


def detect_language(text: str) -> str:
    """``zh`` when CJK characters make up a large part of the letters (URLs and the references
    section not counted), else ``en``."""
    text = _URL.sub(" ", parse_references(text)[0])
    cjk = len(_CJK.findall(text))
    latin = len(re.findall(r"[A-Za-z]", text))
    return "zh" if cjk and cjk * 3 >= latin else "en"


# --- results


@dataclass(slots=True)
class PairResult:
    statement: str
    url: str
    verdict: PairVerdict
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"statement": self.statement, "url": self.url, "verdict": self.verdict, "reason": self.reason}


@dataclass(slots=True)
class FactResult:
    """One report's pairs and claims with their verdicts, and what checking them cost."""

    task_id: str
    pairs: list[PairResult]
    claims: list[Claim]
    usage: Usage = field(default_factory=Usage)
    calls: int = 0

    def count(self, verdict: PairVerdict) -> int:
        return sum(pair.verdict == verdict for pair in self.pairs)

    @property
    def supported(self) -> int:
        return self.count("supported")

    @property
    def judged(self) -> int:
        """Pairs with a supported/unsupported verdict: FACT's denominator."""
        return self.supported + self.count("unsupported")

    @property
    def citation_accuracy(self) -> float | None:
        return self.supported / self.judged if self.judged else None

    @property
    def effective_citations(self) -> int:
        return self.supported

    @property
    def uncited_claims(self) -> int:
        return sum(not claim.urls for claim in self.claims)

    @property
    def faithfulness(self) -> float:
        """ResearcherBench: supported over supported + unsupported items (0.0 when there are none)."""
        return self.supported / self.judged if self.judged else 0.0

    @property
    def groundedness(self) -> float:
        """ResearcherBench: items whose page was read and judged (an unusable judge answer is its
        "unknown") over all items, uncited claims included (0.0 when the report has none)."""
        items = len(self.pairs) + self.uncited_claims
        read = len(self.pairs) - self.count("unverifiable")
        return read / items if items else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "citation_accuracy": self.citation_accuracy,
            "effective_citations": self.effective_citations,
            "pairs": len(self.pairs),
            "pair_verdicts": dict(Counter(pair.verdict for pair in self.pairs)),
            "faithfulness": self.faithfulness,
            "groundedness": self.groundedness,
            "claims": len(self.claims),
            "uncited_claims": self.uncited_claims,
            "calls": self.calls,
            "usage": self.usage.to_dict(),
            "details": [pair.to_dict() for pair in self.pairs],
        }


def summarize(results: Sequence[FactResult]) -> dict[str, Any]:
    """Benchmark-level numbers, aggregated as the official scripts do (see the module docstring).

    FACT counts only tasks with at least one pair; faithfulness and groundedness are plain means over
    all tasks.
    """
    citing = [result for result in results if result.pairs]
    supported = sum(result.supported for result in citing)
    judged = sum(result.judged for result in citing)
    return {
        "tasks": len(results),
        "tasks_with_citations": len(citing),
        "citation_accuracy": supported / judged if judged else None,
        "effective_citations": supported / len(citing) if citing else None,
        "judged_citations": judged / len(citing) if citing else None,
        "pair_verdicts": dict(sum((Counter(p.verdict for p in r.pairs) for r in results), Counter())),
        "faithfulness": sum(r.faithfulness for r in results) / len(results) if results else None,
        "groundedness": sum(r.groundedness for r in results) / len(results) if results else None,
    }


# --- the checker


@dataclass(slots=True)
class _Tally:
    usage: Usage = field(default_factory=Usage)
    calls: int = 0


class FactChecker:
    """Checks reports' citations against the pages they cite; see the module docstring."""

    def __init__(
        self,
        client: ChatClient,
        fetcher: Fetcher,
        *,
        model_name: str | None = None,
        batch: int = DEFAULT_BATCH,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_page_chars: int = DEFAULT_MAX_PAGE_CHARS,
        max_invalid_retries: int = DEFAULT_MAX_INVALID_RETRIES,
    ) -> None:
        for name, value, least in (
            ("batch", batch, 1),
            ("concurrency", concurrency, 1),
            ("max_page_chars", max_page_chars, 1),
            ("max_invalid_retries", max_invalid_retries, 0),
        ):
            if value < least:
                raise ConfigError(f"fact check {name} must be at least {least}, not {value}")
        self.client = client
        self.fetcher = fetcher
        self.model_name = model_name or client.config.model
        self.batch = batch
        self.concurrency = concurrency
        self.max_page_chars = max_page_chars
        self.max_invalid_retries = max_invalid_retries
        self.usage = Usage()
        self.calls = 0
        self.fetches = 0
        """Distinct URLs fetched (each at most once per checker)."""
        self._pages: dict[str, asyncio.Future[Page | str]] = {}
        self._semaphore: asyncio.Semaphore | None = None
        self._semaphore_loop: asyncio.AbstractEventLoop | None = None

    async def check(self, report: str, *, task_id: str = "", language: str | None = None) -> FactResult:
        """The verdict of every statement–URL pair and claim of ``report``."""
        language = language or detect_language(report)
        claims = extract_claims(report)
        by_url: dict[str, list[str]] = {}
        for statement, url in statement_url_pairs(claims):
            by_url.setdefault(url, []).append(statement)
        tally = _Tally()
        checked = await asyncio.gather(
            *(self._check_url(url, statements, language, tally) for url, statements in by_url.items())
        )
        results = {(pair.statement, pair.url): pair for pairs in checked for pair in pairs}
        pairs = [results[key] for key in statement_url_pairs(claims)]
        result = FactResult(
            task_id,
            pairs,
            claims,
            tally.usage,
            tally.calls,
        )
        logger.info(
            "fact check %s: %d pairs over %d URLs, %d supported of %d judged, %d claims",
            task_id or "report",
            len(pairs),
            len(by_url),
            result.supported,
            result.judged,
            len(claims),
        )
        return result

    async def _check_url(
        self, url: str, statements: list[str], language: str, tally: _Tally
    ) -> list[PairResult]:
        page = await self._page(url)
        if isinstance(page, str):
            return [PairResult(statement, url, "unverifiable", page) for statement in statements]
        batches = [statements[start : start + self.batch] for start in range(0, len(statements), self.batch)]
        judged = await asyncio.gather(*(self._judge(page, url, part, language, tally) for part in batches))
        return [pair for part in judged for pair in part]

    async def _page(self, url: str) -> Page | str:
        """The page at ``url`` or why it could not be read; fetched once, shared by every caller."""
        future = self._pages.get(url)
        if future is None or future.get_loop() is not asyncio.get_running_loop():
            future = asyncio.get_running_loop().create_future()
            self._pages[url] = future
            self.fetches += 1
            try:
                page: Page | str = await self.fetcher.fetch(url)
                if isinstance(page, Page) and not page.text.strip():
                    page = "the page has no readable text"
            except Exception as exc:  # any failure to read a cited page makes it unverifiable, not fatal
                page = f"{type(exc).__name__}: {exc}"
                logger.info("fact check: could not fetch %s: %s", url, page)
            except BaseException:  # cancelled: the next caller fetches again instead of waiting forever
                self._pages.pop(url, None)
                future.cancel()
                raise
            future.set_result(page)
            return page
        return await future

    async def _judge(
        self, page: Page, url: str, statements: list[str], language: str, tally: _Tally
    ) -> list[PairResult]:
        prompt = render_prompt(
            "deepresearch.judge",
            "fact_zh.j2" if language == "zh" else "fact_en.j2",
            {
                "url": url,
                "title": page.title,
                "page": page.text[: self.max_page_chars],
                "statements": [{"index": i, "text": text} for i, text in enumerate(statements, 1)],
            },
            trim_blocks=True,
        )
        messages: list[Message] = [{"role": "user", "content": prompt}]
        conversation = messages
        found: dict[int, tuple[JudgeLabel, str]] = {}
        problem = ""
        for _attempt in range(self.max_invalid_retries + 1):
            try:
                content = await self._complete(conversation, tally)
            except LLMError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                break
            try:
                for index, answer in parse_fact_reply(content, len(statements)).items():
                    found.setdefault(index, answer)
                missing = [i for i in range(1, len(statements) + 1) if i not in found]
                if not missing:
                    break
                problem = "statements " + ", ".join(map(str, missing)) + " had no readable verdict"
            except InvalidJudgeOutput as exc:
                problem = str(exc)
            retry = render_prompt("deepresearch.judge", "retry_invalid.j2", {"problem": problem})
            conversation = [
                *messages,
                {"role": "assistant", "content": content},
                {"role": "user", "content": retry},
            ]
        results = []
        for index, statement in enumerate(statements, 1):
            if index in found:
                verdict, reason = found[index]
                results.append(PairResult(statement, url, verdict, reason))
            else:
                results.append(PairResult(statement, url, "failed", problem))
        return results

    async def _complete(self, messages: list[Message], tally: _Tally) -> str:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._semaphore_loop is not loop:  # a semaphore cannot cross loops
            self._semaphore, self._semaphore_loop = asyncio.Semaphore(self.concurrency), loop
        async with self._semaphore:
            completion = await self.client.complete(messages)
        for total in (tally.usage, self.usage):
            total.add(completion.usage)
        tally.calls += 1
        self.calls += 1
        return completion.content


def parse_fact_reply(text: str, count: int) -> dict[int, tuple[JudgeLabel, str]]:
    """(verdict, reason) by statement index (1-based) from a reply to ``fact_*.j2``.

    Statements the reply leaves out are absent; ``InvalidJudgeOutput`` when none could be read.
    """
    try:
        data = json_repair.loads(text) if text.strip() else ""
    except Exception:  # json_repair is lenient but not total; anything it cannot read is no JSON
        data = ""
    if isinstance(data, dict):
        data = next(
            (data[key] for key in ("results", "verdicts", "items") if isinstance(data.get(key), list)), [data]
        )
    entries = [entry for entry in data if isinstance(entry, dict)] if isinstance(data, list) else []
    found: dict[int, tuple[JudgeLabel, str]] = {}
    for position, entry in enumerate(entries, 1):
        index = next((entry[key] for key in ("index", "idx", "id") if key in entry), None)
        if index is None and len(entries) == count:
            index = position
        label = next((entry[key] for key in ("verdict", "result", "label") if key in entry), None)
        verdict = _LABELS.get(" ".join(re.sub(r"[^a-z ]+", " ", str(label).lower()).split()))
        try:
            number = int(index) if index is not None and not isinstance(index, bool) else 0
        except (TypeError, ValueError):
            number = 0
        if verdict is not None and 1 <= number <= count:
            reason = entry.get("reason") or entry.get("reasoning") or ""
            found.setdefault(number, (verdict, str(reason).strip()))
    if not found:
        if not text.strip():
            raise InvalidJudgeOutput("the reply was empty")
        if not entries:
            raise InvalidJudgeOutput("no JSON object was found in the reply")
        raise InvalidJudgeOutput(
            'no statement had a readable index and a "verdict" of supported/unsupported/unknown'
        )
    return found
