"""Turn the model's answer into the report: ``\\cite{key}`` → ``[n]``, a References section, HTML.

The model cites opaque keys; only the source registry knows their URLs. Keys are numbered by first
use, keys the registry never issued are removed from the text and counted (``unresolved`` in
``run.json``) — an invented citation never becomes a link. Pure functions: no I/O here (the HTML page's
template, ``pages/report.html``, is package data).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from markupsafe import Markup

from deepresearch.sources import KEY_PATTERN, Source, SourceRegistry
from deepresearch.templates import render_page

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|\Z)", re.S | re.I)
_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.S | re.I)
_KEY_LIST = rf"{KEY_PATTERN.pattern}(?:\s*[,;，、]\s*{KEY_PATTERN.pattern})*"
_CITATION = re.compile(
    r"[ \t]?\\cite[a-z]*\{([^{}]*)\}"  # \cite{a}, \cite{a, b}, \citep{…}
    rf"|[ \t]?[\[【]\s*({_KEY_LIST})\s*[\]】]"  # [web_…], [web_a, web_b], 【web_…】
)
_SENTINEL = re.compile("\ue000([0-9,]+)\ue001")
_TRAILING_REFERENCES = re.compile(
    r"\n#{1,6}\s*(references|sources|bibliography|works cited|参考文献|参考资料|引用来源|来源)\s*\n.*\Z",
    re.S | re.I,
)

_MARKUP = re.compile(r"<cite\b|【([^】]*)】|\[\s*(web_[^\]\s]*(?:\s*[,;]\s*[^\]\s]+)*)\s*\]", re.I)
"""Citation-looking markup: a ``<cite>`` tag, ``【…】``, ``[web_…]``; real only when every key is known."""
PLACEHOLDERS = ("<the whole report", "<the complete report", "<what the last result", "<why the evidence")
"""The prompts' example text; a reply that repeats it was not written for the question."""
_ONLY_PLACEHOLDER = re.compile(r"<[^<>]{0,200}>")

Language = Literal["en", "zh"]
_HEADINGS = {"en": "References", "zh": "参考文献"}


def extract_answer(text: str) -> str:
    """The ``<answer>`` span (an unclosed tag runs to the end), else the text without ``<think>``."""
    match = _ANSWER.search(text)
    if match:
        return match.group(1).strip()
    return _THINK.sub("", text).strip()


def strip_references(text: str) -> str:
    """``text`` without its trailing References section (the heading and everything after it)."""
    return _TRAILING_REFERENCES.sub("", "\n" + text)[1:]


def cited_keys(text: str) -> list[str]:
    """Every citation key of an answer (``\\cite{…}``, ``[web_…]``, ``【web_…】``), in order of first use."""
    keys = [
        key.strip()
        for match in _CITATION.finditer(text)
        for key in re.split(r"[,;，、]", match.group(1) or match.group(2) or "")
    ]
    return list(dict.fromkeys(key for key in keys if key))


@dataclass
class CitedText:
    """The answer with citations replaced by sentinels, plus what they resolved to."""

    text: str
    order: list[Source] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    cited_keys: set[str] = field(default_factory=set)

    @property
    def stats(self) -> dict[str, int]:
        return {
            "cited": len(self.cited_keys),
            "resolved": len(self.order),
            "unresolved": len(self.unresolved),
        }

    @property
    def numbers(self) -> dict[str, int]:
        return {source.key: n for n, source in enumerate(self.order, start=1)}


def resolve_citations(answer: str, registry: SourceRegistry) -> CitedText:
    """Number every cited key by first use; drop (and count) keys the registry does not know."""
    result = CitedText(text="")
    numbers: dict[str, int] = {}
    unresolved: dict[str, None] = {}

    def replace(match: re.Match[str]) -> str:
        keys = [k for k in re.split(r"[\s,;，、]+", match.group(1) or match.group(2) or "") if k]
        found: list[int] = []
        for key in keys:
            result.cited_keys.add(key)
            source = registry.get(key)
            if source is None:
                unresolved[key] = None
                continue
            if key not in numbers:
                numbers[key] = len(numbers) + 1
                result.order.append(source)
            if numbers[key] not in found:
                found.append(numbers[key])
        if not found:
            return ""
        space = " " if match.group(0)[:1] in (" ", "\t") else ""
        return f"{space}\ue000{','.join(map(str, found))}\ue001"

    body = _TRAILING_REFERENCES.sub("", answer.strip())
    result.text = _CITATION.sub(replace, body)
    result.unresolved = list(unresolved)
    return result


def echoes_prompt(answer: str) -> bool:
    """Whether ``answer`` is (or contains) the prompts' placeholder text instead of a report."""
    lowered = answer.lower()
    return any(p in lowered for p in PLACEHOLDERS) or bool(_ONLY_PLACEHOLDER.fullmatch(answer.strip()))


def fake_citations(answer: str, registry: SourceRegistry) -> bool:
    """Whether ``answer`` cites in a form that cannot resolve: a ``<cite>`` tag, or ``【…】`` / ``[web_…]``
    naming a key the run never issued. (``\\cite{…}`` with an unknown key is well-formed: the key is
    removed and counted as unresolved.)"""
    for match in _MARKUP.finditer(answer):
        inside = match.group(1) if match.group(1) is not None else match.group(2)
        if inside is None:  # <cite …>
            return True
        keys = [k for k in re.split(r"[\s,;，、]+", inside) if k]
        if not keys or any(registry.get(k) is None for k in keys):
            return True
    return False


def _title(source: Source) -> str:
    if source.title.strip():
        return " ".join(source.title.split())
    parts = urlsplit(source.url)
    return (parts.netloc + parts.path) or source.url


def render_markdown(cited: CitedText, language: Language = "en") -> str:
    """The report as Markdown: ``[n]`` citations and a References section (``[n] Title — URL``)."""
    body = _SENTINEL.sub(lambda m: "[" + ", ".join(m.group(1).split(",")) + "]", cited.text)
    if not cited.order:
        return body.rstrip() + "\n"
    refs = "\n\n".join(f"[{n}] {_title(s)} — {s.url}" for n, s in enumerate(cited.order, start=1))
    return f"{body.rstrip()}\n\n## {_HEADINGS[language]}\n\n{refs}\n"


@cache
def _markdown() -> MarkdownIt:
    from markdown_it import MarkdownIt

    # Raw HTML off: anything the model or a web page smuggled in is escaped, never rendered.
    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table").enable("strikethrough")


def _linkable(url: str) -> bool:
    """Whether a reference may link out: web and file URLs only (never ``javascript:`` or ``data:``)."""
    return urlsplit(url).scheme.lower() in ("http", "https", "file")


def render_html(cited: CitedText, *, title: str, language: Language = "en") -> str:
    """A self-contained HTML page (``pages/report.html``): citations link to the references, references
    link out. The template escapes every string; the body is Markup because Markdown with raw HTML
    off has escaped whatever the model or a web page wrote."""

    def link(match: re.Match[str]) -> str:
        links = (f'<a class="cite" href="#ref-{n}">{n}</a>' for n in match.group(1).split(","))
        return "[" + ", ".join(links) + "]"

    references = [
        {"n": n, "title": _title(source), "url": source.url, "linked": _linkable(source.url)}
        for n, source in enumerate(cited.order, start=1)
    ]
    return render_page(
        "deepresearch",
        "run-report.html",
        {
            "lang": language,
            "title": title,
            "heading": _HEADINGS[language],
            "body": Markup(_SENTINEL.sub(link, _markdown().render(cited.text))),
            "references": references,
        },
    )


def fallback_report(question: str, registry: SourceRegistry, reason: str, language: Language = "en") -> str:
    """What the run delivers when the model wrote no report at all: an honest note and the evidence."""
    read = [s for s in registry if s.fetched] or list(registry)
    if language == "zh":
        head = (
            f"# 未能生成完整报告\n\n模型没有给出最终报告（原因：{reason}）。以下是本次研究针对问题"
            f"“{question}”收集到的资料，可据此继续研究或重新运行。\n"
        )
    else:
        head = (
            f"# No final report was written\n\nThe model did not produce a final report ({reason}). "
            f'Below is the evidence this run gathered for the question "{question}", '
            "so the work is not lost; resume or rerun with a larger budget to get a full report.\n"
        )
    lines = [f"- {_title(s)} \\cite{{{s.key}}}: {' '.join(s.snippet.split())[:300]}" for s in read[:40]]
    return head + "\n" + "\n".join(lines)
