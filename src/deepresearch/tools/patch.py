"""Find the fragment the model wants to change in a long text, and replace it.

The ``file`` tool's ``patch`` action lets the model edit a long report by sending only the fragment to
change (``old``, with a little context as an anchor) and its replacement (``new``), instead of writing
the whole file again. The model quotes from memory, so ``old`` may differ from the file in whitespace
or by a typo. This module decides where the fragment is, as a pure function over strings, or refuses
with feedback the model can act on. Stages run strictest first, and the first that decides wins:

1. **exact** — ``old`` occurs once. Several occurrences are an error naming their lines.
2. **whitespace** — every run of whitespace (spaces, tabs, line breaks, CRLF, indentation) counts as
   one space on both sides; again one occurrence, or an error naming the lines.
3. **fuzzy** — windows of whole lines, and for a one-line fragment stretches inside a long line (a
   Markdown paragraph is often one line), scored with ``difflib.SequenceMatcher``. The best must reach
   ``FUZZY_THRESHOLD`` and beat the best candidate that does not overlap it by ``FUZZY_MARGIN``;
   otherwise the error shows the closest region(s) and their similarity so the model can retry.

Scoring every window of a 1 MB report exactly would be quadratic, so a cheap token-overlap score over
prefix sums ranks all windows first and only the top few, plus windows anchored on lines that match
exactly, are scored with ``SequenceMatcher``.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from itertools import islice, pairwise
from typing import Literal

from deepresearch.errors import ToolError

MatchKind = Literal["exact", "whitespace", "fuzzy"]

FUZZY_THRESHOLD = 0.85
"""Least ``SequenceMatcher.ratio`` a fuzzy match needs. The ratio is about 1 - edits/length: two typos
in a 60-character line still score ~0.97, while a paraphrase of a sentence, or a neighbouring sentence
on the same topic, scores 0.5-0.8. Below 0.85 we would rather ask the model to quote again than
replace the wrong text."""
FUZZY_MARGIN = 0.05
"""How far the best fuzzy match must lead the best non-overlapping one. Two copies of a paragraph that
differ by a word or two are within ~0.03 of each other, so the model must add context to choose."""
MAX_FUZZY_CHARS = 20_000
"""Longest ``old`` (whitespace collapsed) matched fuzzily; longer fragments must match exactly."""

_CANDIDATES = 24  # line windows scored exactly, after the token prefilter
_ANCHOR_WINDOWS = 48  # extra windows around lines of ``old`` that occur verbatim (and rarely) in the text
_ANCHOR_MAX_HITS = 3  # a line that occurs more often than this is no anchor
_SLACK = 2  # windows of len(old lines) ± this many lines
_INLINE_CANDIDATES = 16  # stretches inside long lines scored exactly, for a one-line fragment
_CHAR_LEVEL_MAX = 2_000  # longer fragments are compared token by token, not character by character
_MAX_LISTED = 10  # line numbers listed for a duplicate fragment
_EXCERPT_LINES = 8
_EXCERPT_CHARS = 700

_NONSPACE = re.compile(r"\S+")
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")  # a CJK character, or a run of other word characters
_UNIT = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]")  # ... or one punctuation mark


@dataclass(frozen=True, slots=True)
class PatchOutcome:
    """The patched text and how ``old`` was found. Line numbers are 1-based and inclusive."""

    text: str
    matched_by: MatchKind
    similarity: float
    """1.0 for exact and whitespace matches; the ``SequenceMatcher`` ratio for a fuzzy one."""
    start_line: int
    end_line: int
    """The replaced region in the original text."""
    new_start_line: int
    new_end_line: int
    """Where the replacement sits in the new text."""
    replaced: str
    """The original text that was replaced (for feedback on a fuzzy match)."""


@dataclass(frozen=True, slots=True)
class _Candidate:
    start: int
    end: int
    similarity: float


def apply_patch(text: str, old: str, new: str) -> PatchOutcome:
    """Replace the one place in ``text`` that ``old`` designates with ``new``; raise ``ToolError``
    when there is no such place or more than one."""
    if not old.strip():
        raise ToolError(
            "patch needs `old`: the fragment to replace, quoted with a little surrounding "
            "context; to add text to a file use write or append"
        )
    new = _with_line_endings(new, _dominant_eol(text))
    span = _exact(text, old)
    if span is not None:
        return _outcome(text, span, new, "exact")
    span = _whitespace(text, old)
    if span is not None:
        return _outcome(text, span, _fit(new, old, text[span.start : span.end]), "whitespace")
    span = _fuzzy(text, old)
    return _outcome(text, span, _fit(new, old, text[span.start : span.end]), "fuzzy")


# -- stage 1: exact ----------------------------------------------------------------------------------


def _exact(text: str, old: str) -> _Candidate | None:
    hits = _find_all(text, old)
    if not hits:
        return None
    if len(hits) > 1:
        raise ToolError(_duplicates_message("`old` occurs", [_line_at(text, p) for p in hits]))
    return _Candidate(hits[0], hits[0] + len(old), 1.0)


def _find_all(haystack: str, needle: str) -> list[int]:
    """Start offsets of ``needle`` (overlapping ones too), stopping after ``_MAX_LISTED + 1``."""
    hits: list[int] = []
    pos = haystack.find(needle)
    while pos >= 0 and len(hits) <= _MAX_LISTED:
        hits.append(pos)
        pos = haystack.find(needle, pos + 1)
    return hits


# -- stage 2: whitespace-insensitive ---------------------------------------------------------------


def _whitespace(text: str, old: str) -> _Candidate | None:
    wanted = " ".join(old.split())
    flat = " ".join(text.split())  # ``str.split`` and ``\S`` agree on what whitespace is
    hits = _find_all(flat, wanted)
    if not hits:
        return None

    def to_text(pos: int) -> int:
        """The offset in ``text`` of the non-space character at ``pos`` in ``flat``."""
        index = flat.count(" ", 0, pos)  # tokens before it, each followed by one space
        token = next(islice(_NONSPACE.finditer(text), index, None))
        return token.start() + pos - (flat.rfind(" ", 0, pos) + 1)

    if len(hits) > 1:
        lines = [_line_at(text, to_text(p)) for p in hits]
        raise ToolError(_duplicates_message("ignoring whitespace, `old` matches", lines))
    return _Candidate(to_text(hits[0]), to_text(hits[0] + len(wanted) - 1) + 1, 1.0)


# -- stage 3: fuzzy ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Proposal:
    """A region worth scoring exactly: its prefilter score, its span and the text compared to ``old``."""

    priority: float
    start: int
    end: int
    piece: str
    inline: bool = False


class _Lines:
    """The text split into lines, with offsets, and the whitespace-collapsed form and tokens of each
    content (non-blank) line."""

    def __init__(self, text: str) -> None:
        self.raw = text.split("\n")
        self.starts: list[int] = []
        at = 0
        for line in self.raw:
            self.starts.append(at)
            at += len(line) + 1
        self.content = [i for i, line in enumerate(self.raw) if line.strip()]
        self.norm = [" ".join(self.raw[i].split()) for i in self.content]
        self.tokens = [_TOKEN.findall(norm) for norm in self.norm]

    def span(self, first: int, last: int) -> tuple[int, int]:
        """Offsets from the first non-blank character of content line ``first`` to the last of ``last``."""
        a, b = self.raw[self.content[first]], self.raw[self.content[last]]
        start = self.starts[self.content[first]] + len(a) - len(a.lstrip())
        return start, self.starts[self.content[last]] + len(b.rstrip())


class _Vocabulary:
    """The tokens and adjacent token pairs of ``old``: a typo spoils one token and two pairs, while
    unrelated text shares common tokens but few pairs."""

    def __init__(self, tokens: list[str]) -> None:
        self.size = len(tokens)
        self.words = set(tokens)
        self.pairs = set(pairwise(tokens))

    def weights(self, tokens: list[str]) -> list[int]:
        """Per token: 1 if ``old`` has it, 1 more if ``old`` has it followed by the next token."""
        words, pairs = self.words, self.pairs
        out = [1 if t in words else 0 for t in tokens]
        for k, pair in enumerate(pairwise(tokens)):
            if pair in pairs:
                out[k] += 1
        return out


def _fuzzy(text: str, old: str) -> _Candidate:
    old_lines = [" ".join(line.split()) for line in old.split("\n") if line.strip()]
    wanted = "\n".join(old_lines)
    if len(wanted) > MAX_FUZZY_CHARS:
        raise ToolError(
            f"`old` was not found exactly, and at {len(wanted)} characters it is too long to "
            "match approximately; quote a shorter fragment exactly as it is in the file"
        )
    lines = _Lines(text)
    vocabulary = _Vocabulary(_TOKEN.findall(wanted))
    proposals = _window_proposals(lines, old_lines, vocabulary)
    if len(old_lines) == 1:
        proposals += _inline_proposals(lines, wanted, vocabulary)
    candidates = _score(proposals, wanted, text)
    if not candidates:
        raise ToolError(
            "`old` was not found, and nothing in the file resembles it; read the file "
            "again and quote the fragment as it is"
        )

    ranked = sorted(candidates, key=lambda c: c.similarity, reverse=True)
    best = ranked[0]
    rival = next((c for c in ranked[1:] if c.end <= best.start or c.start >= best.end), None)
    if best.similarity < FUZZY_THRESHOLD:
        raise ToolError(
            f"`old` was not found. The closest region ({_where(text, best)}, similarity "
            f"{best.similarity:.2f}, below the {FUZZY_THRESHOLD} needed) is:\n{_excerpt(text, best)}\n"
            "Quote `old` as it is in the file (read it again if unsure) and retry."
        )
    if rival is not None and best.similarity - rival.similarity < FUZZY_MARGIN:
        raise ToolError(
            "`old` was not found exactly and matches two places about equally well:\n"
            f"{_where(text, best)}, similarity {best.similarity:.2f}:\n{_excerpt(text, best)}\n"
            f"{_where(text, rival)}, similarity {rival.similarity:.2f}:\n{_excerpt(text, rival)}\n"
            "Add surrounding context to `old` so that it designates one place."
        )
    return best


def _window_proposals(lines: _Lines, old_lines: list[str], vocabulary: _Vocabulary) -> list[_Proposal]:
    """Windows of whole lines: the best by token overlap (a Dice coefficient over prefix sums, O(1)
    per window), plus windows around lines of ``old`` that occur verbatim and rarely in the text."""
    total = len(lines.content)
    n = len(old_lines)
    counts = [w for w in range(max(1, n - _SLACK), n + _SLACK + 1) if w <= total]
    hit_sum, size_sum = [0], [0]
    for tokens in lines.tokens:
        hit_sum.append(hit_sum[-1] + sum(vocabulary.weights(tokens)))
        size_sum.append(size_sum[-1] + 2 * len(tokens))
    old_size = 2 * vocabulary.size

    def dice(first: int, w: int) -> float:
        hits = min(hit_sum[first + w] - hit_sum[first], old_size)
        return 2 * hits / ((size_sum[first + w] - size_sum[first] + old_size) or 1)

    ranked = heapq.nlargest(
        _CANDIDATES,
        ((dice(first, w), -abs(w - n), first, w) for w in counts for first in range(total - w + 1)),
    )
    chosen = {(first, w) for _, _, first, w in ranked}
    where: dict[str, list[int]] = {}
    for i, norm in enumerate(lines.norm):
        where.setdefault(norm, []).append(i)
    anchored: set[tuple[int, int]] = set()
    for j, line in enumerate(old_lines):
        found = where.get(line, [])
        if len(found) > _ANCHOR_MAX_HITS:
            continue
        for i in found:
            for w in counts:
                for first in range(i - j - _SLACK, i - j + _SLACK + 1):
                    if 0 <= first <= total - w and len(anchored) < _ANCHOR_WINDOWS:
                        anchored.add((first, w))
    out = []
    for first, w in chosen | anchored:
        start, end = lines.span(first, first + w - 1)
        out.append(_Proposal(dice(first, w), start, end, "\n".join(lines.norm[first : first + w])))
    return out


def _inline_proposals(lines: _Lines, wanted: str, vocabulary: _Vocabulary) -> list[_Proposal]:
    """Stretches of long lines (a paragraph is often one line) that may hold a one-line ``old``: in
    each line, the run of ``len(old tokens)`` tokens with the most weight, and the best run that does
    not overlap it (so that a phrase repeated within one paragraph is seen as ambiguous)."""
    size, k = len(wanted), max(1, vocabulary.size)
    found: list[_Proposal] = []
    for i, norm in enumerate(lines.norm):
        if len(norm) <= size * 1.2 or not vocabulary.words.intersection(lines.tokens[i]):
            continue
        raw = lines.raw[lines.content[i]]
        base = lines.starts[lines.content[i]]
        matches = list(_TOKEN.finditer(raw))
        weights = vocabulary.weights([m.group() for m in matches])
        runs = [sum(weights[:k])]
        for t in range(1, len(weights) - k + 1):
            runs.append(runs[-1] + weights[t + k - 1] - weights[t - 1])
        top = max(range(len(runs)), key=runs.__getitem__)
        others = [t for t in range(len(runs)) if abs(t - top) >= k and runs[t]]
        for t in [top, *([max(others, key=runs.__getitem__)] if others else [])]:
            begin = matches[t].start()
            end = len(raw[: begin + size].rstrip())
            found.append(_Proposal(runs[t] / (2 * k), base + begin, base + end, raw[begin:end], inline=True))
    return heapq.nlargest(_INLINE_CANDIDATES, found, key=lambda p: p.priority)


def _score(proposals: list[_Proposal], wanted: str, text: str) -> list[_Candidate]:
    """Exact similarity of the proposals, most promising first. A proposal whose upper bound
    (``real_quick_ratio``, ``quick_ratio``) cannot come within ``FUZZY_MARGIN`` of the best so far can
    be neither the match nor its rival, so it is skipped. Long fragments compare token by token,
    short ones character by character (finer for typos, quadratic in length)."""
    split = _split_units if len(wanted) > _CHAR_LEVEL_MAX else _chars
    matcher: SequenceMatcher[str] = SequenceMatcher(None, autojunk=False)
    matcher.set_seq2(split(wanted))
    found: list[_Candidate] = []
    floor, best = 0.0, None
    seen: set[tuple[int, int]] = set()
    for p in sorted(proposals, key=lambda p: p.priority, reverse=True):
        if (p.start, p.end) in seen:
            continue
        seen.add((p.start, p.end))
        matcher.set_seq1(split(p.piece))
        if matcher.real_quick_ratio() < floor - FUZZY_MARGIN or matcher.quick_ratio() < floor - FUZZY_MARGIN:
            continue
        candidate = _Candidate(p.start, p.end, matcher.ratio())
        found.append(candidate)
        if candidate.similarity > floor:
            floor, best = candidate.similarity, (candidate, p.inline)
    if best is not None and best[1]:
        found.append(_refine_end(best[0], text, matcher, split))
    return found


def _refine_end(
    found: _Candidate, text: str, matcher: SequenceMatcher[str], split: Callable[[str], Sequence[str]]
) -> _Candidate:
    """An inline match was cut at ``len(old)`` characters; a typo may shift its true end a little."""
    line_end = text.find("\n", found.end)
    line_end = len(text) if line_end < 0 else line_end
    slack = max(2, (found.end - found.start) // 20)
    best = found
    for end in range(max(found.start + 1, found.end - slack), min(found.end + slack, line_end) + 1):
        matcher.set_seq1(split(text[found.start : end].rstrip()))
        ratio = matcher.ratio()
        if ratio > best.similarity:
            best = _Candidate(found.start, found.start + len(text[found.start : end].rstrip()), ratio)
    return best


def _chars(text: str) -> str:
    return text


def _split_units(text: str) -> list[str]:
    return _UNIT.findall(text)


# -- the replacement ---------------------------------------------------------------------------------


def _fit(new: str, old: str, region: str) -> str:
    """``new`` adapted to a region matched loosely: the region excludes the whitespace around it, so
    the same whitespace comes off ``new`` where ``old`` had it; and when the lines of ``old`` and the
    region differ in indentation by one consistent prefix, the lines of ``new`` get the same shift."""
    if old[:1].isspace():
        new = new.lstrip()
    if old[-1:].isspace():
        new = new.rstrip()
    old_lines = old.strip().split("\n")
    region_lines = region.split("\n")
    if len(old_lines) != len(region_lines) or len(old_lines) < 2:
        return new
    shifts: set[tuple[str, str]] = set()
    for theirs, ours in zip(region_lines[1:], old_lines[1:], strict=True):
        if theirs.strip() and ours.strip():
            have, had = _indent(theirs), _indent(ours)
            if have.endswith(had):
                shifts.add(("add", have[: len(have) - len(had)]))
            elif had.endswith(have):
                shifts.add(("remove", had[: len(had) - len(have)]))
            else:
                return new
    if len(shifts) != 1:
        return new
    how, prefix = shifts.pop()
    if not prefix:
        return new
    out = new.split("\n")
    for k in range(1, len(out)):
        if not out[k].strip():
            continue
        if how == "add":
            out[k] = prefix + out[k]
        elif out[k].startswith(prefix):
            out[k] = out[k][len(prefix) :]
    return "\n".join(out)


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _outcome(text: str, span: _Candidate, new: str, how: MatchKind) -> PatchOutcome:
    start, end = span.start, span.end
    if not new:  # deleting all a line holds takes its line break too
        line_start = text.rfind("\n", 0, start) + 1
        tail = end - 1 if text.endswith("\n", start, end) else end
        line_end = text.find("\n", tail)
        line_end = len(text) if line_end < 0 else line_end
        if not text[line_start:start].strip() and not text[tail:line_end].strip():
            start, end = line_start, min(line_end + 1, len(text))
    first = _line_at(text, start)
    patched = text[:start] + new + text[end:]
    return PatchOutcome(
        text=patched,
        matched_by=how,
        similarity=round(span.similarity, 4),
        start_line=first,
        end_line=first + text.count("\n", start, max(start, end - 1)),
        new_start_line=first,
        new_end_line=first + new.count("\n", 0, max(0, len(new) - 1)),
        replaced=text[start:end],
    )


# -- helpers -----------------------------------------------------------------------------------------


def _dominant_eol(text: str) -> str:
    crlf = text.count("\r\n")
    return "\r\n" if crlf > text.count("\n") - crlf else "\n"


def _with_line_endings(new: str, eol: str) -> str:
    new = new.replace("\r\n", "\n")
    return new.replace("\n", eol) if eol != "\n" else new


def _line_at(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _duplicates_message(what: str, lines: list[int]) -> str:
    shown = ", ".join(str(n) for n in lines[:_MAX_LISTED])
    many = f"more than {_MAX_LISTED} times" if len(lines) > _MAX_LISTED else f"{len(lines)} times"
    return (
        f"{what} {many} (starting on lines {shown}); include more surrounding context in `old` "
        "so that it matches exactly one place"
    )


def _where(text: str, span: _Candidate) -> str:
    first = _line_at(text, span.start)
    last = _line_at(text, max(span.start, span.end - 1))
    lines = f"line {first}" if first == last else f"lines {first}-{last}"
    return f"{lines}, character offset {span.start}"


def _excerpt(text: str, span: _Candidate) -> str:
    """The candidate's text with line numbers, clipped for the model."""
    piece = text[span.start : span.end]
    first = _line_at(text, span.start)
    rows = piece.split("\n")
    out: list[str] = []
    used = 0
    for k, row in enumerate(rows[:_EXCERPT_LINES]):
        row = row.rstrip("\r")
        room = _EXCERPT_CHARS - used
        if room <= 0:
            break
        clipped = row if len(row) <= room else row[:room] + " …"
        used += len(clipped)
        out.append(f"  {first + k}| {clipped}")
    if len(rows) > len(out):
        out.append(f"  … ({len(rows) - len(out)} more lines)")
    return "\n".join(out)
