"""Deep search by hyperlink walk (``synth walk``): questions whose answer lies at the end of a path.

A deep-search question worth training on makes the agent find one document, learn something there and
follow it to another. A walk builds such questions from the links the local index keeps
(``search.local.LocalIndex.links_from``): it starts at a document chosen by ``--seed``, and on each
document the model extracts 1–3 facts with the sentence that supports each (checked against the text),
then picks the next link among the numbered candidates knowing only their titles and anchor texts, as
a searcher would. The walk stops after ``max_steps`` documents or where no unvisited link is left.
From the facts gathered the model then writes a question that starts from a fact of the first
document that gave any and is answered by a fact of a later one (the two fact numbers are limited to
those roles in the reply's schema, so even a small constrained model cannot cite one document twice),
with a short answer that the facts must support. A quote the model did not copy exactly is replaced
by the document's sentence holding most of its words, so every recorded quote is the document's text.

Items are walks (``walk-<seed>-<n>``, each with its start), so a rerun with the same seed and index
skips the walks already decided (``synth.engine``). A reply that is unusable when choosing a link
falls back to a choice fixed by the walk's id, and one unusable when extracting facts leaves that
document without facts; only an unusable question ends the walk as ``bad_reply``. Other drops:
``no_links`` (the start leads nowhere), ``too_short_path`` (facts from fewer than two documents),
``answer_leaked`` (the answer is spelled out in the question).
"""

from __future__ import annotations

import asyncio
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepresearch.config import Settings
from deepresearch.errors import ConfigError, FetchError
from deepresearch.fetch import Page
from deepresearch.search.local import LinkedDocument, LocalIndex
from deepresearch.services import open_local_index
from deepresearch.synth.context import open_context
from deepresearch.synth.engine import Outcome, Summary, Tally, run_items
from deepresearch.synth.model import BadReply, Language, Model, language_of, prompt, require

MAX_STEPS = 4
"""Documents a walk visits at most (the start included)."""
MAX_CANDIDATES = 12
"""Links shown to the model at each step; a page with more shows a sample fixed by the walk's id."""
DOCUMENT_CHARS = 6000
"""How much of a document's text the fact extraction reads."""
MIN_DOCUMENTS = 2
MIN_QUOTE_OVERLAP = 0.7
"""Share of a quote's words one sentence of the document must hold for the quote to count as copied."""
"""Documents of the path whose facts a question must combine."""

FACTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "facts": {
            "type": "array",
            "minItems": 1,
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {"fact": {"type": "string"}, "quote": {"type": "string"}},
                "required": ["fact", "quote"],
            },
        }
    },
    "required": ["facts"],
}
CHOICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"choice": {"type": "integer"}, "reason": {"type": "string"}},
    "required": ["choice"],
}
_SENTENCE = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])|\n+")
_WORD = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|\w+")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
LEAKED = "the answer appears in the question: describe it without naming it, or pick another answer"
_VAGUE_WORDS = {"what", "which", "where", "when", "answer", "question", "this", "that", "there", "with"}


@dataclass(frozen=True, slots=True)
class Fact:
    url: str
    title: str
    document: int
    """Its document's place on the path, from 1."""
    fact: str
    quote: str


@dataclass(slots=True)
class Walk:
    """What a walk gathered: the documents in the order visited and their facts."""

    path: list[str] = field(default_factory=list)
    facts: list[Fact] = field(default_factory=list)
    bad_replies: int = 0
    """Replies that could not be used (facts lost, or a link chosen by the fallback)."""

    @property
    def documents_with_facts(self) -> int:
        return len({fact.document for fact in self.facts})


class NoLinks(Exception):
    """The start document links to no other indexed document."""


async def synth_walk(
    settings: Settings,
    *,
    out: Path,
    limit: int = 20,
    seed: int = 0,
    max_steps: int = MAX_STEPS,
    language: str = "auto",
    concurrency: int = 4,
    progress: bool = True,
) -> Summary:
    """``limit`` walks over the links of the local index, each kept as a question–answer record."""
    if max_steps < MIN_DOCUMENTS:
        raise ConfigError(f"max_steps must be at least {MIN_DOCUMENTS}, not {max_steps}")
    if language not in ("auto", "en", "zh"):
        raise ConfigError(f"language must be auto, en or zh, not {language!r}")
    index = open_local_index(settings)
    try:
        starts = await asyncio.to_thread(walk_starts, index, limit, seed)
        items = [{"id": f"walk-{seed}-{n}", "start": url} for n, url in enumerate(starts)]
        async with open_context(settings, out) as ctx:

            async def step(item: dict[str, Any], tally: Tally) -> Outcome:
                return await walk_item(item, index, ctx.model(tally), max_steps=max_steps, language=language)

            return await run_items(
                items, step, out, concurrency=concurrency, label="walk", progress=progress, total=len(items)
            )
    finally:
        index.close()


def walk_starts(index: LocalIndex, limit: int, seed: int) -> list[str]:
    """The start documents of the first ``limit`` walks for ``seed``; ``ConfigError`` without links."""
    if not index.has_links():
        raise ConfigError(
            f"this index has no links ({index.path}): fetch the documentation corpus again "
            "(`deepresearch index fetch debian-docs`) or add the folders of HTML or Markdown documents "
            "it was made from again (`deepresearch index add PATH…`), so the links are recorded"
        )
    return index.random_documents(limit, seed=seed)


async def walk_item(
    item: dict[str, Any], index: LocalIndex, model: Model, *, max_steps: int, language: str
) -> Outcome:
    """One walk from ``item["start"]`` and the question written from it, or why there is none."""
    start = await open_document(index, str(item["start"]))
    if start is None:
        return Outcome.drop("no_links", start=str(item["start"]), missing=True)
    chosen: Language = (
        "zh" if language == "zh" else "en" if language == "en" else language_of(start.text[:2000])
    )
    try:
        walk = await take_walk(str(item["id"]), index, model, start.url, max_steps=max_steps, language=chosen)
    except NoLinks:
        return Outcome.drop("no_links", start=start.url)
    detail = {"path": len(walk.path), "facts": len(walk.facts), "bad_replies": walk.bad_replies}
    if walk.documents_with_facts < MIN_DOCUMENTS:
        return Outcome.drop("too_short_path", **detail)
    try:
        reply = await model.json(
            question_prompt(walk, chosen),
            question_schema(walk),
            check=lambda data: question_problems(data, walk),
        )
    except BadReply as exc:
        reason = "answer_leaked" if str(exc) == LEAKED else "bad_reply"
        return Outcome.drop(reason, stage="question", problem=str(exc), **detail)
    question, answer = reply["question"].strip(), reply["answer"].strip()
    record = {
        "task_id": str(item["id"]),
        "question": question,
        "answer": answer,
        "path": walk.path,
        "facts": [{"url": f.url, "fact": f.fact, "quote": f.quote} for f in walk.facts],
        "used_facts": [reply["start_fact"] - 1, reply["answer_fact"] - 1],
        "language": chosen,
    }
    return Outcome.keep(record, **detail)


async def take_walk(
    walk_id: str, index: LocalIndex, model: Model, start: str, *, max_steps: int, language: Language
) -> Walk:
    """Visit up to ``max_steps`` documents from ``start``, gathering facts; ``NoLinks`` at a dead start."""
    walk = Walk()
    url = start
    while True:
        page = await open_document(index, url)
        if page is None:
            break
        walk.path.append(url)
        visited = set(walk.path)
        links = [link for link in await asyncio.to_thread(index.links_from, url) if link.url not in visited]
        if not links and len(walk.path) == 1:
            raise NoLinks(start)  # before any model call: a dead start costs nothing
        facts = await extract_facts(model, page.url, page.title, page.text, language)
        if not facts:  # a model too small to pick facts still leaves the page's own statements
            walk.bad_replies += facts is None
            facts = statements(page.text[:DOCUMENT_CHARS])
        walk.facts += [Fact(url, page.title, len(walk.path), fact, quote) for fact, quote in facts or []]
        if len(walk.path) >= max_steps or not links:
            break
        rng = random.Random(f"{walk_id}:{len(walk.path)}")  # the same walk id samples the same links
        shown = candidates(links, rng)
        next_link = await choose_link(model, page.title, walk.facts, shown, language)
        if next_link is None:
            walk.bad_replies += 1
            next_link = rng.choice(shown)
        url = next_link.url
    return walk


async def open_document(index: LocalIndex, url: str) -> Page | None:
    """The indexed document at ``url``; ``None`` when it is gone (the index changed since the walk began)."""
    try:
        return await index.get_document(url)
    except FetchError:  # a file URL no longer indexed, and no longer on disk
        return None


async def extract_facts(
    model: Model, url: str, title: str, text: str, language: Language
) -> list[tuple[str, str]] | None:
    """``(fact, quote)`` pairs whose quote is in ``text``; ``None`` when the model gave none usable."""
    shown = text[:DOCUMENT_CHARS]
    content = prompt("walk_facts", language, title=title, url=url, text=shown)
    try:
        reply = await model.json(content, FACTS_SCHEMA, check=lambda data: fact_problems(data, shown))
    except BadReply:
        return None
    usable = []
    for f in _facts_of(reply):
        quote = grounded(f["quote"], shown) or grounded(f["fact"], shown)
        if quote is not None:
            usable.append((f["fact"].strip(), quote))
    return usable[:3]


async def choose_link(
    model: Model,
    title: str,
    facts: list[Fact],
    shown: list[LinkedDocument],
    language: Language,
) -> LinkedDocument | None:
    """The link the model picks among ``shown`` (the only one, without asking); ``None`` on a bad reply."""
    if len(shown) == 1:
        return shown[0]
    content = prompt(
        "walk_choose",
        language,
        title=title,
        facts=[fact.fact for fact in facts],
        candidates=[{"title": link.title, "text": link.text} for link in shown],
    )
    try:
        reply = await model.json(content, CHOICE_SCHEMA, check=lambda data: choice_problems(data, len(shown)))
    except BadReply:
        return None
    return shown[int(reply["choice"]) - 1]


def candidates(links: list[LinkedDocument], rng: random.Random) -> list[LinkedDocument]:
    """At most ``MAX_CANDIDATES`` of ``links``, in their order on the page."""
    if len(links) <= MAX_CANDIDATES:
        return links
    picked = sorted(rng.sample(range(len(links)), MAX_CANDIDATES))
    return [links[n] for n in picked]


def question_prompt(walk: Walk, language: Language) -> str:
    facts = [{"document": f.document, "title": f.title, "fact": f.fact, "quote": f.quote} for f in walk.facts]
    starts, answers = fact_roles(walk)
    return prompt(
        "walk_question",
        language,
        facts=facts,
        documents=len(walk.path),
        first=walk.facts[0].document,
        starts=starts,
        answers=answers,
    )


def fact_roles(walk: Walk) -> tuple[list[int], list[int]]:
    """The facts (numbered from 1) a question may start from, those of the first document that gave
    any, and those that may give its answer, from the documents after it: one of each makes a question
    that needs two documents, the shape a walk has."""
    first = walk.facts[0].document
    starts = [n for n, fact in enumerate(walk.facts, 1) if fact.document == first]
    return starts, [n for n, fact in enumerate(walk.facts, 1) if fact.document != first]


def question_schema(walk: Walk) -> dict[str, Any]:
    """The question's reply, the two facts limited to their roles (a constrained model cannot pick
    two facts of one document)."""
    starts, answers = fact_roles(walk)
    return {
        "type": "object",
        "properties": {
            "question": {"type": "string"},
            "answer": {"type": "string"},
            "start_fact": {"type": "integer", "enum": starts},
            "answer_fact": {"type": "integer", "enum": answers},
        },
        "required": ["question", "answer", "start_fact", "answer_fact"],
    }


# --- checks on replies (pure) ----------------------------------------------------------------------


def fact_problems(data: dict[str, Any], text: str) -> list[str]:
    """Why a facts reply is unusable: no facts, or none whose quote is in the document."""
    problems = require(data, facts=list)
    if problems:
        return problems
    facts = _facts_of(data)
    if not facts:
        return ['"facts" must hold objects with a "fact" and a "quote"']
    if not any(grounded(f["quote"], text) or grounded(f["fact"], text) for f in facts):
        return ["no quote is copied exactly from the document text"]
    return []


def choice_problems(data: dict[str, Any], count: int) -> list[str]:
    choice = _number(data.get("choice"))
    if choice is None or not 1 <= choice <= count:
        return [f'"choice" must be the number of a link, from 1 to {count}']
    data["choice"] = choice
    return []


def question_problems(data: dict[str, Any], walk: Walk) -> list[str]:
    """Why a question reply is unusable: fields missing, facts outside their roles (so fewer than two
    documents behind the question), or an answer the two facts do not support."""
    problems = require(data, question=str, answer=str)
    if problems:
        return problems
    starts, answers = fact_roles(walk)
    for name, allowed in (("start_fact", starts), ("answer_fact", answers)):
        value = _number(data.get(name))
        if value not in allowed:
            return [f'"{name}" must be one of {", ".join(map(str, allowed))}']
        data[name] = value
    used = [walk.facts[data["start_fact"] - 1], walk.facts[data["answer_fact"] - 1]]
    if not supported(data["answer"], [text for fact in used for text in (fact.fact, fact.quote)]):
        stating = [
            n for n in answers if supported(data["answer"], [walk.facts[n - 1].fact, walk.facts[n - 1].quote])
        ]
        if not stating:
            return ["the answer must be stated in the answer fact (or the start fact)"]
        data["answer_fact"] = stating[0]  # the model named the wrong fact for an answer a later one states
        used[1] = walk.facts[stating[0] - 1]
    if not _content_words(data["question"]) & _content_words(used[0].fact + " " + used[0].quote):
        return ["the question must be about the start fact: name or describe something it says"]
    if leaked(data["answer"], data["question"]):
        return [LEAKED]
    return []


def _content_words(text: str) -> set[str]:
    """Words of four letters or more (CJK characters one by one), lower-cased: what a question and a
    fact must share for the question to be about the fact."""
    return {w for w in _WORD.findall(text.lower()) if len(w) >= 4 or _CJK.match(w)} - _VAGUE_WORDS


def statements(text: str, limit: int = 2) -> list[tuple[str, str]]:
    """Up to ``limit`` sentences of ``text`` that read as statements (prose of 8–60 words, not a
    heading, list item or code), each as its own fact and quote: the facts of a page whose model
    reply gave none, so a walk with a tiny model still gathers what its pages say."""
    found: list[tuple[str, str]] = []
    for sentence in _SENTENCE.split(text):
        line = " ".join(sentence.split())
        words = len(_WORD.findall(line))
        if not 8 <= words <= 60 or line.startswith(("#", "-", "*", "|", "`", ">")) or line[-1:] not in ".。":
            continue
        found.append((line, line))
        if len(found) == limit:
            break
    return found


def grounded(quote: str, text: str) -> str | None:
    """The sentence of ``text`` that ``quote`` copies: the quote itself when it appears in ``text``
    (ignoring case and spacing), else the one sentence holding most of its words (a small model rarely
    copies exactly), else ``None``. What is recorded as a quote is always the document's own text."""
    needle = _normal(quote)
    if len(needle) < 8:
        return None
    if needle in _normal(text):
        return " ".join(quote.split())
    words = set(_WORD.findall(needle))
    best, overlap = None, 0.0
    for sentence in _SENTENCE.split(text):
        share = len(words & set(_WORD.findall(_normal(sentence)))) / len(words) if words else 0.0
        if share > overlap:
            best, overlap = " ".join(sentence.split()), share
    return best if best is not None and overlap >= MIN_QUOTE_OVERLAP and len(words) >= 3 else None


def supported(answer: str, texts: list[str]) -> bool:
    """The answer appears in one of ``texts``, or each of its words does in them together."""
    normal = _normal(answer)
    joined = " ".join(_normal(text) for text in texts)
    if not normal:
        return False
    if normal in joined:
        return True
    words = _WORD.findall(normal)
    return bool(words) and all(word in joined for word in words)


def leaked(answer: str, question: str) -> bool:
    """Whether the answer is written out in the question (as a whole word outside CJK text)."""
    needle = _normal(answer)
    if not needle:
        return False
    if _CJK.search(needle):
        return needle in _normal(question)
    return re.search(rf"(?<!\w){re.escape(needle)}(?!\w)", _normal(question)) is not None


def _facts_of(data: dict[str, Any]) -> list[dict[str, str]]:
    return [
        f
        for f in data.get("facts") or []
        if isinstance(f, dict) and isinstance(f.get("fact"), str) and isinstance(f.get("quote"), str)
        if f["fact"].strip() and f["quote"].strip()
    ]


def _number(value: Any) -> int | None:
    """An integer, or a string of digits read as one; anything else is no number."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _normal(text: str) -> str:
    return " ".join(text.casefold().split())
