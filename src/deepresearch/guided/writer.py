"""What the guided strategy asks the model, how it reads the replies, and how it builds the report.

Two kinds of call, each one constrained JSON reply: the plan (section headings with a search query
each) and one section at a time (paragraphs whose ``sources`` are an enum of the keys of the
passages shown, so a citation cannot name a page the run did not read). A reply that does not
parse, or fails ``judge.verdict``, is replaced: the plan by sections named after the best pages,
a section by its passages quoted with their citations.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import json_repair

from deepresearch.agent import prompts
from deepresearch.guided.judge import Paragraph
from deepresearch.guided.select import STOPWORDS, Window, terms

HEADING_CHARS = 80
QUERY_CHARS = 120
QUOTE_WORDS = 70
POINT_CHARS = 300
_LEADING_LABEL = re.compile(r"^(\s*(\[[^\]]*\]|#+)\s*)+")
_MARKS = re.compile(r"`{3,}|(?:^|\s)#{1,6}(?=\s)")
_GENERIC_HEADINGS = re.compile(
    r"^(section|part|chapter|heading|title|introduction|overview|conclusion|summary|background)"
    r"(\s+\w+)?[\s.,:;]*$",
    re.I,
)
_QUERY_WORD = re.compile(r"[^\W_]+(?:[-.'][^\W_]+)*")
_OVERVIEW = {"en": "Overview", "zh": "概述"}
_QUOTED = {"en": "*Quoted from the sources.*", "zh": "*以下内容直接引自来源。*"}
_COUNT_WORDS = {
    "en": {1: "one paragraph", 2: "one or two paragraphs", 3: "one to three paragraphs"},
    "zh": {1: "一段", 2: "一到两段", 3: "一到三段"},
}


@dataclass(frozen=True)
class Section:
    heading: str
    query: str


def overview(question: str, language: str) -> Section:
    return Section(_OVERVIEW.get(language, "Overview"), question)


def plan_messages(question: str, titles: Sequence[str], count: int, language: str) -> list[dict[str, Any]]:
    text = prompts.render(f"guided_plan_{language}.j2", question=question, titles=titles, count=count)
    return [{"role": "user", "content": text}]


def plan_schema(count: int) -> dict[str, Any]:
    section = {
        "type": "object",
        "properties": {
            "heading": {"type": "string", "minLength": 3, "maxLength": HEADING_CHARS},
            "query": {"type": "string", "minLength": 3, "maxLength": QUERY_CHARS},
        },
        "required": ["heading", "query"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"sections": {"type": "array", "items": section, "minItems": 1, "maxItems": count}},
        "required": ["sections"],
        "additionalProperties": False,
    }


def read_plan(reply: str, question: str, count: int, titles: Sequence[str] = ()) -> list[Section]:
    """The usable sections of a plan reply: headings that say something new, not generic ("Section 1"),
    on the subject (heading or query shares a word with the question or a page found), with a query."""
    data = _json(reply)
    items = data.get("sections") if isinstance(data, dict) else None
    found: list[Section] = []
    seen = [set(terms(question))]
    subject = set(terms(question)).union(*(terms(t) for t in titles))
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        heading = " ".join(str(item.get("heading") or "").split())[:HEADING_CHARS].strip(" #*:")
        query = " ".join(str(item.get("query") or "").split())[:QUERY_CHARS] or heading
        words = set(terms(heading))
        if not words or _GENERIC_HEADINGS.match(heading) or not (words | set(terms(query))) & subject:
            continue
        if any(words == other for other in seen):
            continue
        query = plain_query(query) or heading  # a small model's query is often code
        seen.append(words)
        found.append(Section(heading, query))
    return found[:count]


def plain_query(text: str, most: int = 10) -> str:
    """The words of ``text`` as a search query (no symbols, no stopwords, each once, as written): a
    small model's "query" is often code or a template."""
    words: dict[str, str] = {}
    for word in _QUERY_WORD.findall(text):
        if word.lower() not in STOPWORDS:
            words.setdefault(word.lower(), word)
    return " ".join(list(words.values())[:most])


def fallback_plan(titles: Sequence[str], question: str, count: int) -> list[Section]:
    """Sections named after the best pages' titles, when the model's plan is unusable."""
    found: list[Section] = []
    seen = [set(terms(question))]
    for title in titles:
        heading = ": ".join(title.split(" > ")[-2:]).strip()  # an index section's title is its path
        words = set(terms(heading))
        if words and not any(words == other for other in seen):
            seen.append(words)
            found.append(Section(heading[:HEADING_CHARS], f"{title} {question}"))
    return found[:count]


def section_messages(
    question: str, section: Section, passages: Sequence[Window], paragraphs: int, language: str
) -> list[dict[str, Any]]:
    count = _COUNT_WORDS[language if language in _COUNT_WORDS else "en"][max(1, min(3, paragraphs))]
    text = prompts.render(
        f"guided_section_{language}.j2",
        question=question,
        heading=section.heading,
        passages=passages,
        count=count,
    )
    return [{"role": "user", "content": text}]


def section_schema(keys: Sequence[str], paragraphs: int, paragraph_chars: int) -> dict[str, Any]:
    paragraph = {
        "type": "object",
        "properties": {
            "text": {"type": "string", "minLength": 40, "maxLength": paragraph_chars},
            "sources": {
                "type": "array",
                "items": {"type": "string", "enum": list(dict.fromkeys(keys))},
                "minItems": 1,
                "maxItems": 3,
            },
        },
        "required": ["text", "sources"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "paragraphs": {"type": "array", "items": paragraph, "minItems": 1, "maxItems": paragraphs}
        },
        "required": ["paragraphs"],
        "additionalProperties": False,
    }


def point_messages(window: Window, language: str) -> list[dict[str, Any]]:
    """One passage, one sentence: what a model too small to write a section can still do."""
    text = prompts.render(f"guided_point_{language}.j2", title=window.title, text=window.text)
    return [{"role": "user", "content": text}]


def point_schema(chars: int = POINT_CHARS) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"sentence": {"type": "string", "minLength": 20, "maxLength": chars}},
        "required": ["sentence"],
        "additionalProperties": False,
    }


def read_point(reply: str) -> str:
    """The sentence of a point reply, without the page title a small model likes to put first and
    without Markdown marks (``#``, fences) it copied from the passage."""
    data = _json(reply)
    sentence = data.get("sentence") if isinstance(data, dict) else None
    if not isinstance(sentence, str):
        return ""
    sentence = _LEADING_LABEL.sub("", " ".join(sentence.split()))
    sentence = _MARKS.sub(" ", sentence)
    return " ".join(sentence.split()).strip(" }{")


def read_section(reply: str, keys: Sequence[str]) -> list[Paragraph]:
    """The paragraphs of a section reply; citations of keys it was not shown are dropped (a server
    that ignored the schema may have written them)."""
    data = _json(reply)
    items = data.get("paragraphs") if isinstance(data, dict) else None
    allowed = set(keys)
    found = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            cited = item.get("sources")
            found.append(
                Paragraph(
                    item["text"],
                    [k for k in cited if isinstance(k, str) and k in allowed]
                    if isinstance(cited, list)
                    else [],
                )
            )
    return found


def quoted(passages: Sequence[Window], most: int = 2) -> list[Paragraph]:
    """The extractive fallback: the best passages, cut at a sentence end near ``QUOTE_WORDS`` words."""
    return [Paragraph(_shorten(w.text), [w.key]) for w in passages[:most]]


def assemble(question: str, sections: Sequence[dict[str, Any]], language: str) -> str:
    """The report: the question as title, then each section with its paragraphs and citations; quoted
    passages are block quotes, and a section made only of them says so."""
    parts = [f"# {' '.join(question.split())}"]
    for section in sections:
        paragraphs = section.get("paragraphs") or []
        if not paragraphs:
            continue
        parts.append(f"## {section['heading']}")
        if section.get("kept") == "quoted":
            parts.append(_QUOTED.get(language, _QUOTED["en"]))
        for paragraph in paragraphs:
            cite = "\\cite{" + ",".join(paragraph["keys"]) + "}" if paragraph["keys"] else ""
            text = paragraph["text"].strip()
            quote = section.get("kept") == "quoted" or paragraph.get("quoted")
            parts.append(f"> {text} {cite}" if quote else f"{text} {cite}")
    return "\n\n".join(parts) + "\n"


def _shorten(text: str) -> str:
    words = text.split()
    if len(words) <= QUOTE_WORDS:
        return text
    cut = " ".join(words[:QUOTE_WORDS])
    end = max(cut.rfind(". "), cut.rfind("。"))
    return cut[: end + 1] if end > len(cut) // 2 else cut + " …"


def _json(reply: str) -> Any:
    try:
        return json.loads(reply)
    except ValueError:
        return json_repair.loads(reply) if reply.strip() else None
