"""Split a document into paragraph-level passages that remember where they sit.

The local index ranks passages, not whole documents: a search hit should be a paragraph the model can
quote, and a long manual should not win every query just by being long. Each passage keeps its
heading path (``Title > Section > Subsection``) so a hit can say where it came from even when the
paragraph alone is ambiguous.

The index also needs two other views of a passage, kept here with the rest of the text handling:
CJK character bigrams (what the index matches Chinese and Japanese on) and a snippet around the
query terms (what a hit shows); and the query side of the same bigrams, a free-text query turned into
an FTS5 ``MATCH`` expression that cannot fail. Everything here is a pure function of text.

Sizes are in "words": whitespace-separated tokens, with each CJK character counted as one word,
because Chinese and Japanese put no spaces between words.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple

Markup = Literal["markdown", "rst", "text"]
"""How headings are written: ``#`` (and setext underlines), reStructuredText adornments, or none."""

MIN_WORDS = 50
"""Paragraphs shorter than this are merged with their neighbours in the same section."""
MAX_WORDS = 300
"""Paragraphs longer than this are cut at sentence boundaries."""
HEADING_SEPARATOR = " > "
SNIPPET_CHARS = 300
MAX_QUERY_TERMS = 32

_CJK_CHARS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
CJK_RUN_RE = re.compile(f"[{_CJK_CHARS}]+")
"""A run of Han, kana or CJK compatibility characters: text written without spaces between words."""
_WORD_RE = re.compile(rf"[{_CJK_CHARS}]|[^\s{_CJK_CHARS}]+")
_SENTENCE_END_RE = re.compile(r"(?<=[.!?…])\s+|(?<=[。！？])\s*")
_ATX_RE = re.compile(r"^(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE_RE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})")
_SETEXT_RE = re.compile(r"^[ \t]{0,3}(=+|-+)[ \t]*$")
_RST_ADORNMENT_RE = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}[ \t]*$")
_INLINE_MARKUP_RE = re.compile(r"[*`]+")
_SITE_SEPARATORS = frozenset("|-–—:·»")
_THEMATIC_BREAK_RE = re.compile(r"^[ \t]{0,3}([-*_])([ \t]*\1){2,}[ \t]*$")
_QUERY_WORD_RE = re.compile(r"\w+")
_PHRASE_RE = re.compile(r'"([^"]*)"')
# English function words: dropped from queries unless nothing else is left, kept inside a quoted
# phrase. Each one is in a large share of all passages, so a term of them pulls in (and BM25 scores)
# most of the index for almost no weight: "of and the of" took 80-380 ms on 100k passages. Not here:
# the words of asking (below, dropped only with ``question_words``) and the particles that build
# compounds ("time out", ``_PARTICLES``), which tests and the recall benchmark rely on.
STOPWORDS = frozenset(
    {"a", "an", "the", "and", "or", "but", "nor", "if", "then", "than", "so", "as", "because", "while"}
    | {"of", "to", "in", "on", "at", "by", "for", "from", "with", "into", "onto", "about", "after"}
    | {"before", "between", "through", "during", "under", "above", "against", "among", "via", "per"}
    | {"is", "are", "was", "were", "be", "been", "being", "am", "do", "does", "did", "done", "doing"}
    | {"has", "have", "had", "having", "may", "might", "must", "shall"}
    | {"it", "its", "itself", "he", "him", "his", "she", "her", "hers", "they", "them", "their", "theirs"}
    | {"us", "this", "that", "these", "those", "which", "who", "whom", "whose", "what", "when", "where"}
    | {"why", "how", "not", "no", "all", "any", "both", "each", "some", "such", "other", "more", "most"}
    | {"only", "also", "very", "just", "too", "own", "same", "here"}
)
# How people ask ("how can I …", "should we …"): words that say nothing about the answer.
_QUESTION_WORDS = frozenset(
    {"i", "me", "my", "we", "our", "you", "your", "can", "could", "should", "would", "will", "there"}
)
_ASKING_STOPWORDS = STOPWORDS | _QUESTION_WORDS
# Chinese function characters (particles, the copula, common prepositions and conjunctions). The index
# holds CJK text as bigrams, so a bigram of two of them ("的是", "是在") is as common as an English
# stopword, and a lone one is searched as a prefix over every bigram it starts ("的"*): both are
# dropped from queries like the English stopwords. A bigram with one of them ("目的", "是否") is a
# word and stays.
_CJK_FUNCTION_CHARS = frozenset("的了是在和与及或也就都而之其这那着把被对从向以于为吗呢吧啊")
# Words that join the word before them in "time out" → timeout, "set up" → setup (build_fts_query).
_PARTICLES = frozenset({"up", "out", "down", "back", "in", "on", "off", "over"})


@dataclass(frozen=True, slots=True)
class Passage:
    """One searchable piece of a document."""

    ordinal: int
    """0-based position within the document."""
    heading: str
    """Heading path, starting with the document title: ``Title > Section > Subsection``."""
    text: str


def count_words(text: str) -> int:
    """Words as the size limits count them: whitespace tokens, each CJK character on its own."""
    if text.isascii() or CJK_RUN_RE.search(text) is None:
        return len(text.split())  # the same count: ``\s`` is ``str.isspace``
    return len(_WORD_RE.findall(text))


def split_sentences(text: str) -> list[str]:
    """Cut at sentence ends (``.!?`` followed by space, or ``。！？``); good enough for sizing."""
    return [s for s in (part.strip() for part in _SENTENCE_END_RE.split(text)) if s]


def document_title(text: str, *, markup: Markup, fallback: str) -> str:
    """The title a reader would see: front-matter ``title:``, else the first heading, else ``fallback``."""
    lines = text.splitlines()
    if markup == "markdown":
        front, _ = _split_front_matter(lines)
        for line in front:
            key, _, value = line.partition(":")
            if key.strip().lower() == "title" and value.strip():
                return value.strip().strip("\"'")
    for _, heading_text in _iter_headings(lines, markup):
        return heading_text
    if markup == "text":
        for line in lines:
            stripped = line.strip()
            if stripped:
                return stripped if len(stripped) <= 120 else fallback
    return fallback


def split_passages(
    text: str,
    *,
    title: str,
    markup: Markup = "markdown",
    min_words: int = MIN_WORDS,
    max_words: int = MAX_WORDS,
) -> list[Passage]:
    """Cut ``text`` into passages of about ``min_words``–``max_words`` words, each with its heading path.

    Paragraphs (blocks between blank lines, a fenced code block counting as one) are the unit. Short
    ones merge with the next paragraph of the same section; long ones are cut at sentence boundaries
    into roughly equal pieces. Passages never straddle a heading.
    """
    passages: list[Passage] = []
    for path, blocks in _sections(text.splitlines(), markup):
        heading = HEADING_SEPARATOR.join(_heading_path(title, path))
        for chunk in _pack(blocks, min_words=min_words, max_words=max_words):
            passages.append(Passage(ordinal=len(passages), heading=heading, text=chunk))
    return passages


def cjk_grams(text: str) -> list[str]:
    """Overlapping character bigrams of every CJK run in ``text``; a one-character run stays whole."""
    if text.isascii():
        return []  # most text, and a C-speed test where the regex scan is not
    grams: list[str] = []
    for run in CJK_RUN_RE.findall(text):
        grams.extend([run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)])
    return grams


def make_snippet(text: str, terms: list[str], width: int = SNIPPET_CHARS) -> str:
    """About ``width`` characters of ``text`` around the densest cluster of query terms."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    patterns = []
    for term in terms:
        if CJK_RUN_RE.match(term):
            patterns.append(re.escape(term))
        else:
            # The index stems words (porter); a prefix is a cheap stand-in for finding the stem here.
            stem = term[: max(4, len(term) - 3)] if len(term) > 5 else term
            patterns.append(r"\b" + re.escape(stem))
    starts = [m.start() for m in re.finditer("|".join(patterns), flat, re.IGNORECASE)] if patterns else []
    begin = 0
    if starts:
        span = width * 4 // 5
        best = max(starts, key=lambda s: bisect.bisect_left(starts, s + span) - bisect.bisect_left(starts, s))
        begin = max(0, best - width // 5)
        space = flat.rfind(" ", 0, begin)
        if begin and space >= begin - 20:
            begin = space + 1
        begin = min(begin, max(0, len(flat) - width))
    end = min(len(flat), begin + width)
    space = flat.rfind(" ", begin, end)
    if end < len(flat) and space > begin + width // 2:
        end = space
    return ("… " if begin else "") + flat[begin:end].strip() + (" …" if end < len(flat) else "")


class FtsQuery(NamedTuple):
    """A free-text query made safe for FTS5 ``MATCH``, plus the terms used to place snippets."""

    match: str
    terms: list[str]


def build_fts_query(text: str, *, question_words: bool = True, compounds: bool = True) -> FtsQuery | None:
    """Quote each word and OR them; CJK runs become bigrams. ``None`` when nothing searchable is left.

    Only ``\\w`` runs survive, so FTS5 syntax in the input (``*``, ``:``, parentheses, ``-``, ``NEAR``)
    is either dropped or quoted into a plain term and can never raise. A pair of double quotes makes
    a phrase, searched as one (``"to be or not to be"``); an unpaired quote is ignored.

    Function words (``STOPWORDS``, Chinese function characters) are dropped outside phrases: they
    match most passages and weigh almost nothing. A query of nothing else searches them all the same
    (``function_words_only`` tells the index to score a sample of the matches).

    ``question_words``: drop the words of asking ("can I", "should we") with the stopwords.
    ``compounds``: a word followed by a particle is also searched joined, because people write
    apart what manuals write as one word: "time out" (``timeout``), "set up", "shut down", "roll
    back", "log in". Only particles: joining any two words finds accidents ("IP address" became the
    Python module ``ipaddress``). A joined pair that is no word matches nothing and costs nothing;
    the pairs come last, so the cap on terms drops them first.
    """
    phrases, loose = _split_phrases(text.lower())
    words = [token for token in _tokens(loose) if not CJK_RUN_RE.match(token)]
    grams = [gram for token in _tokens(loose) if CJK_RUN_RE.match(token) for gram in cjk_grams(token)]
    dropped = _ASKING_STOPWORDS if question_words else STOPWORDS
    content_words = [w for w in words if w not in dropped]
    content_grams = [g for g in grams if not _is_cjk_function(g)]
    exact = [part for phrase in phrases for part in _phrase_parts(phrase)]
    if not (exact or content_words or content_grams):
        content_words, content_grams = words, grams  # only function words: search them all the same
    joined = _compounds(words, dropped) if compounds else []
    pieces: dict[str, list[str]] = {}  # match expression -> the words it shows in a snippet
    for expression, shown in exact:
        pieces.setdefault(expression, shown)
    for term in [*content_words, *content_grams, *joined]:
        pieces.setdefault(_match_term(term), [term])
    chosen = list(pieces.items())[:MAX_QUERY_TERMS]
    if not chosen:
        return None
    terms = list(dict.fromkeys(word for _, shown in chosen for word in shown))
    return FtsQuery(match=" OR ".join(expression for expression, _ in chosen), terms=terms)


def function_words_only(terms: list[str]) -> bool:
    """Whether every term of a query is a function word (English or Chinese, ``build_fts_query``).

    Such a query matches most of a large index however it is written, so the index scores only a
    sample of its matches (``LocalIndex``); any query with a content word is scored in full.
    """
    return bool(terms) and all(term in _ASKING_STOPWORDS or _is_cjk_function(term) for term in terms)


def _split_phrases(text: str) -> tuple[list[str], str]:
    """The double-quoted phrases of ``text`` and the text outside them; an unpaired quote is ignored."""
    phrases = [match.group(1) for match in _PHRASE_RE.finditer(text)]
    return phrases, _PHRASE_RE.sub(" ", text)


def _tokens(text: str) -> list[str]:
    """Words and CJK runs in order; underscores separate words (``\\w`` keeps them)."""
    tokens: list[str] = []
    for token in _QUERY_WORD_RE.findall(text):
        position = 0
        for run in CJK_RUN_RE.finditer(token):
            tokens.extend(part for part in token[position : run.start()].split("_") if part)
            tokens.append(run.group())
            position = run.end()
        tokens.extend(part for part in token[position:].split("_") if part)
    return tokens


def _phrase_parts(phrase: str) -> list[tuple[str, list[str]]]:
    """A quoted phrase as FTS5 phrases, function words kept: its consecutive non-CJK words make one,
    and each CJK run one of consecutive bigrams (the ``*_cjk`` columns hold CJK text as bigrams)."""
    parts: list[tuple[str, list[str]]] = []
    group: list[str] = []
    for token in [*_tokens(phrase), ""]:
        if token and not CJK_RUN_RE.match(token):
            group.append(token)
            continue
        if group:
            parts.append(('"' + " ".join(group) + '"', group))
            group = []
        if len(token) == 1:
            parts.append((_match_term(token), [token]))
        elif token:
            parts.append(('"' + " ".join(cjk_grams(token)) + '"', [token]))
    return parts


def _match_term(term: str) -> str:
    # A lone CJK character is only indexed inside bigrams: match it as a prefix.
    return f'"{term}"*' if len(term) == 1 and CJK_RUN_RE.fullmatch(term) else f'"{term}"'


def _is_cjk_function(gram: str) -> bool:
    """A CJK term made only of function characters (``_CJK_FUNCTION_CHARS``)."""
    return bool(gram) and all(char in _CJK_FUNCTION_CHARS for char in gram)


def _compounds(words: list[str], dropped: frozenset[str]) -> list[str]:
    """Each alphabetic content word of two letters or more joined with the particle after it."""
    return [
        first + second
        for first, second in itertools.pairwise(words)
        if second in _PARTICLES and len(first) > 1 and first.isalpha() and first not in dropped
    ]


def _heading_path(title: str, path: list[str]) -> list[str]:
    # A document's first heading usually repeats its title, or the title is that heading plus the
    # site name ("Polite crawling | Field Notes"); keep it once.
    if path and _same_title(title, path[0]):
        path = path[1:]
    return [title, *path] if title else list(path)


def _same_title(title: str, heading: str) -> bool:
    title, heading = title.casefold(), heading.casefold()
    return title == heading or (
        title.startswith(heading) and title[len(heading) :].lstrip()[:1] in _SITE_SEPARATORS
    )


def _split_front_matter(lines: list[str]) -> tuple[list[str], list[str]]:
    """YAML front matter (``---`` … ``---`` at the very top) and the rest."""
    if lines and lines[0].strip() == "---":
        for end in range(1, min(len(lines), 60)):
            if lines[end].strip() in ("---", "..."):
                return lines[1:end], lines[end + 1 :]
    return [], lines


def _clean_heading(text: str) -> str:
    return " ".join(_INLINE_MARKUP_RE.sub("", text).split())


def _heading_at(lines: list[str], i: int, markup: Markup, in_block: bool) -> tuple[int, str, int] | None:
    """If a heading starts at line ``i``: (level key, text, lines consumed)."""
    line = lines[i]
    nxt = lines[i + 1] if i + 1 < len(lines) else ""
    if markup == "markdown":
        match = _ATX_RE.match(line)
        if match:
            return len(match.group(1)), _clean_heading(match.group(2)), 1
        # Setext: one text line underlined with === or ---, not inside a paragraph.
        setext = _SETEXT_RE.match(nxt)
        if not in_block and line.strip() and setext and not line.lstrip().startswith(("-", "*", "|", ">")):
            return (1 if setext.group(1).startswith("=") else 2), _clean_heading(line), 2
    elif markup == "rst":
        # Over- and underlined: ===\nTitle\n===
        overline = line.strip()
        if (
            _RST_ADORNMENT_RE.match(line)
            and i + 2 < len(lines)
            and lines[i + 2].strip() == overline
            and nxt.strip()
            and len(overline) >= len(nxt.strip())
        ):
            return ord(overline[0]) + 1000, _clean_heading(nxt), 3
        # Underlined only: Title\n=====
        underline = nxt.strip()
        if (
            not in_block
            and line.strip()
            and _RST_ADORNMENT_RE.match(nxt)
            and len(underline) >= len(line.strip())
        ):
            return ord(underline[0]), _clean_heading(line), 2
    return None


def _iter_headings(lines: list[str], markup: Markup) -> Iterator[tuple[int, str]]:
    for item in _walk(lines, markup):
        if isinstance(item, tuple):
            yield item


def _walk(lines: list[str], markup: Markup) -> Iterator[tuple[int, str] | str]:
    """Yield headings as ``(level key, text)`` and paragraphs as strings, in document order."""
    if markup == "markdown":
        _, lines = _split_front_matter(lines)
    block: list[str] = []
    fence = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if fence:
            block.append(line)
            if line.strip().startswith(fence):
                fence = ""
                yield "\n".join(block).strip()
                block = []
            i += 1
            continue
        if markup == "markdown" and (fence_match := _FENCE_RE.match(line)):
            if block:
                yield "\n".join(block).strip()
            block = [line]
            fence = fence_match.group(1)
            i += 1
            continue
        heading = None if markup == "text" else _heading_at(lines, i, markup, bool(block))
        if heading is not None:
            if block:
                yield "\n".join(block).strip()
                block = []
            level, heading_text, consumed = heading
            if heading_text:
                yield level, heading_text
            i += consumed
            continue
        if markup == "markdown" and not block and _THEMATIC_BREAK_RE.match(line):
            i += 1
            continue
        if line.strip():
            block.append(line.rstrip())
        elif block:
            yield "\n".join(block).strip()
            block = []
        i += 1
    if block:
        yield "\n".join(block).strip()


def _sections(lines: list[str], markup: Markup) -> Iterator[tuple[list[str], list[str]]]:
    """Group paragraphs under their heading path; sections without text are skipped."""
    # rst levels are assigned in order of first appearance of each adornment style.
    rst_levels: dict[int, int] = {}
    stack: list[tuple[int, str]] = []
    blocks: list[str] = []
    for item in _walk(lines, markup):
        if isinstance(item, str):
            blocks.append(item)
            continue
        if blocks:
            yield [text for _, text in stack], blocks
            blocks = []
        key, heading_text = item
        level = rst_levels.setdefault(key, len(rst_levels) + 1) if markup == "rst" else key
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, heading_text))
    if blocks:
        yield [text for _, text in stack], blocks


def _pack(blocks: list[str], *, min_words: int, max_words: int) -> list[str]:
    """Merge short paragraphs and cut long ones so most chunks land between the two limits."""
    pieces: list[tuple[str, int]] = []  # each counted once: counting is most of the splitting's time
    for block in blocks:
        words = count_words(block)
        if words > max_words:
            pieces.extend((piece, count_words(piece)) for piece in _split_long(block, max_words))
        else:
            pieces.append((block, words))
    chunks: list[list[str]] = []
    sizes: list[int] = []
    for piece, words in pieces:
        if chunks and sizes[-1] < min_words and sizes[-1] + words <= max_words:
            chunks[-1].append(piece)
            sizes[-1] += words
        else:
            chunks.append([piece])
            sizes.append(words)
    # A short tail joins the chunk before it when that still fits.
    if len(chunks) > 1 and sizes[-1] < min_words and sizes[-2] + sizes[-1] <= max_words:
        chunks[-2].extend(chunks.pop())
    return ["\n\n".join(chunk) for chunk in chunks]


def _split_long(block: str, max_words: int) -> list[str]:
    """Cut one long paragraph at sentence ends into pieces of similar size, none above ``max_words``."""
    total = count_words(block)
    target = math.ceil(total / math.ceil(total / max_words))
    sentences: list[str] = []
    for sentence in split_sentences(block):
        if count_words(sentence) > max_words:
            sentences.extend(_split_words(sentence, max_words))
        else:
            sentences.append(sentence)
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for sentence in sentences:
        words = count_words(sentence)
        if current and (size >= target or size + words > max_words):
            pieces.append(_join_sentences(current))
            current, size = [], 0
        current.append(sentence)
        size += words
    if current:
        pieces.append(_join_sentences(current))
    return pieces


def _join_sentences(sentences: list[str]) -> str:
    out = sentences[0]
    for sentence in sentences[1:]:
        # CJK sentences are written without a space after the full stop.
        out += sentence if out[-1] in "。！？" else " " + sentence
    return out


def _split_words(sentence: str, max_words: int) -> list[str]:
    """Last resort for a "sentence" longer than ``max_words``: cut between words, keeping the spacing."""
    spans = [m.span() for m in _WORD_RE.finditer(sentence)]
    return [
        sentence[spans[i][0] : spans[min(i + max_words, len(spans)) - 1][1]]
        for i in range(0, len(spans), max_words)
    ]
