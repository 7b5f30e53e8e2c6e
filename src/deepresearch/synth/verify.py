"""Verification traces (``synth verify``): a paragraph fact-checked step by step, kept as one ReAct
trajectory of our agent.

The paper trains reflection and verification on traces that break a paragraph into checkable
points, plan what to check in which order, verify each with search, re-plan as evidence arrives and
report a conclusion per point. Each step here is one model call with our prompts (JSON):

- **Extract** the verification points (times, places, subjects, figures, causal claims) as
  independent checkable statements; none → dropped ``no_points``.
- **Plan** for each point whether it needs checking, what kind of source settles it, its search
  queries, and the points it depends on; points are verified in dependency order.
- **Verify** in rounds: a round searches (``ctx.search``, at most two queries per point) for every
  point whose dependencies are settled, then concludes each point (support, refute or doubtful)
  citing the hits it used by number.
- **Replan** after each round: a summary of what is known, and for each remaining point either its
  (possibly revised) queries or, when the evidence at hand already settles it, its conclusion, so the
  redundant search is dropped. At most ``max_rounds`` rounds; points still open then → dropped
  ``rounds_exhausted``.
- **Report** each point's conclusion with its evidence URLs.

A judge call checks that each (point, conclusion, evidence) triple is consistent; one inconsistency
drops the trace (``inconsistent``). A reply that stays unusable drops it as ``bad_reply``; an input
``judgement`` (the paragraph's known verdict) that the trace contradicts drops it as
``judgement_mismatch``. A kept trace is linearised into the messages our agent would have produced:
our system prompt, the paragraph as the user's request, assistant turns that reason and call
``batch_web_surfer`` (``batch_search``), tool messages formatted by that tool itself (so the
``cite_index`` keys are the source registry's), and a final ``<answer>`` citing those keys.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deepresearch.agent.prompts import system_prompt
from deepresearch.config import Settings
from deepresearch.errors import ConfigError
from deepresearch.search import SearchHit
from deepresearch.sources import SourceRegistry, normalize_url
from deepresearch.synth.context import open_context
from deepresearch.synth.engine import Outcome, Summary, Tally, load_items, run_items
from deepresearch.synth.model import BadReply, Language, Model, language_of, prompt
from deepresearch.tools.base import ToolContext
from deepresearch.tools.web import WebArgs, batch_search, web_tool

CONCLUSIONS = ("support", "refute", "doubtful")
KINDS = ("time", "place", "subject", "figure", "causal", "other")
MAX_POINTS = 12
"""Points kept from the extraction (a paragraph rarely has more worth checking)."""
QUERIES_PER_POINT = 2
SEARCH_LIMIT = 5
POINTS_PER_ROUND = 10
"""``batch_web_surfer`` takes at most 20 queries a call: ten points of two queries each."""
SHOWN_CONTENT_CHARS = 700
"""Characters of a hit's text shown to the verify and judge calls."""
TOOL_NAME = "batch_web_surfer"

logger = logging.getLogger(__name__)


def _object(required: list[str], **properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required}


def _list(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


_TEXT: dict[str, Any] = {"type": "string"}
_INT: dict[str, Any] = {"type": "integer"}
_BOOL: dict[str, Any] = {"type": "boolean"}
_CONCLUSION: dict[str, Any] = {"type": "string", "enum": list(CONCLUSIONS)}

EXTRACT_SCHEMA = _object(
    ["points"],
    points=_list(
        _object(["statement", "kind"], statement=_TEXT, kind={"type": "string", "enum": list(KINDS)})
    ),
)
PLAN_SCHEMA = _object(
    ["plan"],
    plan=_list(
        _object(
            ["point", "check", "source_type", "depends_on", "queries"],
            point=_INT,
            check=_BOOL,
            source_type=_TEXT,
            depends_on=_list(_INT),
            queries=_list(_TEXT),
            reason=_TEXT,
        )
    ),
)
CONCLUDE_SCHEMA = _object(
    ["conclusion", "evidence", "explanation"], conclusion=_CONCLUSION, evidence=_list(_INT), explanation=_TEXT
)
REPLAN_SCHEMA = _object(
    ["summary", "remaining"],
    summary=_TEXT,
    remaining=_list(
        _object(
            ["point", "action"],
            point=_INT,
            action={"type": "string", "enum": ["search", "settled"]},
            queries=_list(_TEXT),
            conclusion=_CONCLUSION,
            evidence=_list(_INT),
            explanation=_TEXT,
        )
    ),
)
JUDGE_SCHEMA = _object(
    ["checks"],
    checks=_list(_object(["point", "consistent", "reason"], point=_INT, consistent=_BOOL, reason=_TEXT)),
)

_JUDGEMENTS = {
    "support": "support",
    "supported": "support",
    "true": "support",
    "correct": "support",
    "refute": "refute",
    "refuted": "refute",
    "false": "refute",
    "incorrect": "refute",
    "wrong": "refute",
    "doubtful": "doubtful",
    "uncertain": "doubtful",
}


class Dropped(Exception):
    """The trace cannot be kept; ``reason`` is the ledger's slug."""

    def __init__(self, reason: str, **detail: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


@dataclass
class Point:
    """One checkable statement and what became of it."""

    id: int
    statement: str
    kind: str
    check: bool = True
    source_type: str = ""
    reason: str = ""
    depends_on: list[int] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    conclusion: str | None = None
    evidence: list[int] = field(default_factory=list)
    """Numbers (1-based) in the trace's evidence list."""
    explanation: str = ""
    settled_by_replan: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "point": self.id,
            "statement": self.statement,
            "kind": self.kind,
            "check": self.check,
            "source_type": self.source_type,
            "reason": self.reason,
            "depends_on": self.depends_on,
            "queries": self.queries,
            "conclusion": self.conclusion,
            "evidence": self.evidence,
            "explanation": self.explanation,
            "settled_by_replan": self.settled_by_replan,
        }


@dataclass
class Evidence:
    """Every hit the trace saw, numbered once (by normalised URL) across all rounds."""

    hits: list[SearchHit] = field(default_factory=list)
    _numbers: dict[str, int] = field(default_factory=dict)

    def add(self, hit: SearchHit) -> int:
        norm = normalize_url(hit.url)
        if norm not in self._numbers:
            self.hits.append(hit)
            self._numbers[norm] = len(self.hits)
        return self._numbers[norm]

    def shown(self, numbers: Sequence[int]) -> list[dict[str, Any]]:
        """The hits with these numbers as the prompts show them."""
        return [
            {
                "n": n,
                "title": self.hits[n - 1].title,
                "url": self.hits[n - 1].url,
                "text": _head(self.hits[n - 1].snippet or self.hits[n - 1].content),
            }
            for n in numbers
        ]


@dataclass
class Round:
    """One verify round: the searches it made and the points it concluded, then the replan."""

    queries: list[str]
    results: dict[str, list[SearchHit]]
    verified: list[int]
    settled: list[int] = field(default_factory=list)
    """Points the replan after this round concluded from evidence already at hand."""
    summary: str = ""


@dataclass
class Trace:
    paragraph: str
    language: Language
    points: list[Point]
    order: list[int]
    rounds: list[Round]
    evidence: Evidence

    def point(self, point_id: int) -> Point:
        return next(p for p in self.points if p.id == point_id)

    @property
    def checked(self) -> list[Point]:
        return [self.point(i) for i in self.order]


# ---- the steps (each one model call) -------------------------------------------------------------


async def extract(model: Model, paragraph: str, language: Language) -> list[Point]:
    data = await model.json(
        prompt("verify_extract", language, paragraph=paragraph), EXTRACT_SCHEMA, check=_check_extract
    )
    points = [
        Point(id=i, statement=str(p["statement"]).strip(), kind=str(p.get("kind") or "other"))
        for i, p in enumerate(data["points"][:MAX_POINTS], start=1)
    ]
    if not points:
        raise Dropped("no_points")
    return points


def _check_extract(data: dict[str, Any]) -> list[str]:
    points = data.get("points")
    if not isinstance(points, list):
        return ['"points" must be a list']
    return [
        f"point {i} needs a non-empty statement"
        for i, p in enumerate(points, start=1)
        if not isinstance(p, dict) or not str(p.get("statement") or "").strip()
    ]


async def plan(model: Model, paragraph: str, points: list[Point], language: Language) -> list[int]:
    """Fill each point's plan; return the ids to check, dependencies first."""
    ids = {p.id for p in points}
    data = await model.json(
        prompt("verify_plan", language, paragraph=paragraph, points=[p.to_dict() for p in points]),
        PLAN_SCHEMA,
        check=lambda d: _check_plan(d, ids),
    )
    listed: list[int] = []
    for entry in data["plan"]:
        point = next(p for p in points if p.id == int(entry["point"]))
        point.check = bool(entry.get("check"))
        point.source_type = str(entry.get("source_type") or "")
        point.reason = str(entry.get("reason") or "")
        point.depends_on = [d for d in _ints(entry.get("depends_on")) if d in ids and d != point.id]
        point.queries = _queries(entry.get("queries"))
        listed.append(point.id)
    order = dependency_order([p for i in listed for p in points if p.id == i and p.check])
    if not order:
        raise Dropped("no_points", why="nothing needs checking")
    return order


def _check_plan(data: dict[str, Any], ids: set[int]) -> list[str]:
    entries = data.get("plan")
    if not isinstance(entries, list):
        return ['"plan" must be a list']
    problems: list[str] = []
    seen: set[int] = set()
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("point"), int | str):
            problems.append("every plan entry needs a point number")
            continue
        try:
            number = int(entry["point"])
        except ValueError:
            problems.append(f"point {entry['point']!r} is not a number")
            continue
        if number not in ids:
            problems.append(f"there is no point {number}")
        elif number in seen:
            problems.append(f"point {number} is planned twice")
        elif entry.get("check") and not _queries(entry.get("queries")):
            problems.append(f"point {number} is to be checked but has no search query")
        seen.add(number)
    problems += [f"point {i} is missing from the plan" for i in sorted(ids - seen)]
    return problems


def dependency_order(points: list[Point]) -> list[int]:
    """The points' ids in plan order, each after the points it depends on (a cycle keeps plan order)."""
    ids = {p.id for p in points}
    done: list[int] = []
    waiting = list(points)
    while waiting:
        ready = next(
            (p for p in waiting if all(d in done or d not in ids for d in p.depends_on)),
            waiting[0],
        )
        done.append(ready.id)
        waiting.remove(ready)
    return done


async def verify_round(
    model: Model, search: Any, trace: Trace, pending: list[int], language: Language
) -> Round:
    """Search for the points that are ready (their dependencies concluded) and conclude each."""
    concluded = {p.id for p in trace.points if p.conclusion is not None}
    ready = [
        i for i in pending if all(d in concluded or d not in trace.order for d in trace.point(i).depends_on)
    ]
    wave = (ready or pending[:1])[:POINTS_PER_ROUND]
    queries = list(dict.fromkeys(q for i in wave for q in trace.point(i).queries[:QUERIES_PER_POINT]))
    found = await asyncio.gather(*(search.search(q, limit=SEARCH_LIMIT) for q in queries))
    results = {q: list(hits) for q, hits in zip(queries, found, strict=True)}
    for point_id in wave:
        point = trace.point(point_id)
        hits = [h for q in point.queries[:QUERIES_PER_POINT] for h in results.get(q, []) if h.url]
        numbers = list(dict.fromkeys(trace.evidence.add(h) for h in hits))
        await conclude(model, trace, point, numbers, language)
    return Round(queries=queries, results=results, verified=wave)


async def conclude(model: Model, trace: Trace, point: Point, numbers: list[int], language: Language) -> None:
    known = [trace.point(d).to_dict() for d in point.depends_on if trace.point(d).conclusion]
    data = await model.json(
        prompt(
            "verify_check",
            language,
            paragraph=trace.paragraph,
            point=point.to_dict(),
            known=known,
            hits=trace.evidence.shown(numbers),
        ),
        CONCLUDE_SCHEMA,
        check=lambda d: _check_conclusion(d, set(numbers)),
    )
    _settle(point, data)


def _check_conclusion(data: dict[str, Any], numbers: set[int]) -> list[str]:
    problems = []
    if data.get("conclusion") not in CONCLUSIONS:
        problems.append(f'"conclusion" must be one of {", ".join(CONCLUSIONS)}')
    cited = data.get("evidence")
    if not isinstance(cited, list) or not all(isinstance(n, int) for n in cited):
        problems.append('"evidence" must be a list of result numbers')
    else:
        problems += [f"there is no result {n}" for n in cited if n not in numbers]
        if data.get("conclusion") in ("support", "refute") and not cited:
            problems.append("a support or refute conclusion must cite the results it rests on")
    if not str(data.get("explanation") or "").strip():
        problems.append('"explanation" is missing')
    return problems


def _settle(point: Point, data: dict[str, Any]) -> None:
    point.conclusion = str(data["conclusion"])
    point.evidence = list(dict.fromkeys(int(n) for n in data.get("evidence") or []))
    point.explanation = str(data.get("explanation") or "").strip()


async def replan(model: Model, trace: Trace, pending: list[int], language: Language) -> tuple[str, list[int]]:
    """Revise the remaining points after a round; return the summary and the points it settled."""
    numbers = set(range(1, len(trace.evidence.hits) + 1))
    data = await model.json(
        prompt(
            "verify_replan",
            language,
            paragraph=trace.paragraph,
            done=[p.to_dict() for p in trace.checked if p.conclusion],
            remaining=[trace.point(i).to_dict() for i in pending],
            hits=trace.evidence.shown(sorted(numbers)),
        ),
        REPLAN_SCHEMA,
        check=lambda d: _check_replan(d, set(pending), numbers),
    )
    settled: list[int] = []
    for entry in data["remaining"]:
        point = trace.point(int(entry["point"]))
        if entry.get("action") == "settled":
            _settle(point, entry)
            point.settled_by_replan = True
            settled.append(point.id)
        elif _queries(entry.get("queries")):
            point.queries = _queries(entry.get("queries"))
    return str(data.get("summary") or "").strip(), settled


def _check_replan(data: dict[str, Any], pending: set[int], numbers: set[int]) -> list[str]:
    if not str(data.get("summary") or "").strip():
        return ['"summary" is missing']
    entries = data.get("remaining")
    if not isinstance(entries, list):
        return ['"remaining" must be a list']
    problems: list[str] = []
    for entry in entries:
        number = entry.get("point") if isinstance(entry, dict) else None
        if not isinstance(number, int) or number not in pending:
            problems.append(f"{number!r} is not a remaining point")
        elif entry.get("action") == "settled":
            problems += [f"point {number}: {p}" for p in _check_conclusion(entry, numbers)]
        elif entry.get("action") != "search":
            problems.append(f'point {number}: "action" must be search or settled')
    return problems


async def judge(model: Model, trace: Trace, language: Language) -> list[dict[str, Any]]:
    """The judge's check of each concluded point; ``Dropped('inconsistent')`` when any fails."""
    triples = [
        {**p.to_dict(), "hits": trace.evidence.shown(p.evidence)} for p in trace.checked if p.conclusion
    ]
    ids = {t["point"] for t in triples}
    data = await model.json(
        prompt("verify_judge", language, paragraph=trace.paragraph, triples=triples),
        JUDGE_SCHEMA,
        check=lambda d: _check_judge(d, ids),
    )
    checks = [c for c in data["checks"] if isinstance(c, dict) and c.get("point") in ids]
    failed = [c for c in checks if c.get("consistent") is not True]
    if failed:
        raise Dropped(
            "inconsistent", points=[c["point"] for c in failed], reasons=[c.get("reason") for c in failed]
        )
    return checks


def _check_judge(data: dict[str, Any], ids: set[int]) -> list[str]:
    checks = data.get("checks")
    if not isinstance(checks, list):
        return ['"checks" must be a list']
    seen = {c.get("point") for c in checks if isinstance(c, dict) and isinstance(c.get("consistent"), bool)}
    return [f"point {i} has no check" for i in sorted(ids - seen)]


async def build_trace(
    model: Model, search: Any, paragraph: str, language: Language, *, max_rounds: int
) -> Trace:
    """Extract → Plan → (Verify → Replan)* until every point to check is concluded."""
    points = await extract(model, paragraph, language)
    order = await plan(model, paragraph, points, language)
    trace = Trace(paragraph, language, points, order, [], Evidence())
    pending = list(order)
    while pending:
        if len(trace.rounds) >= max_rounds:
            raise Dropped("rounds_exhausted", open=pending)
        current = await verify_round(model, search, trace, pending, language)
        trace.rounds.append(current)
        pending = [i for i in pending if trace.point(i).conclusion is None]
        if pending:
            current.summary, current.settled = await replan(model, trace, pending, language)
            pending = [i for i in pending if i not in current.settled]
    return trace


# ---- the report and the trajectory (pure, apart from the tool's formatter) -----------------------


def verdict_of(points: Sequence[Point]) -> str:
    """The paragraph's verdict: refuted by any refuted point, doubtful by any doubtful one."""
    conclusions = {p.conclusion for p in points if p.check}
    return "refute" if "refute" in conclusions else "doubtful" if "doubtful" in conclusions else "support"


def normal_judgement(value: Any) -> str | None:
    """An input judgement as ``support``/``refute``/``doubtful``; ``None`` when it says none of these."""
    if isinstance(value, bool):
        return "support" if value else "refute"
    return _JUDGEMENTS.get(str(value or "").strip().lower())


def report_of(trace: Trace, keys: dict[int, str]) -> dict[str, Any]:
    return {
        "verdict": verdict_of(trace.points),
        "points": [
            {
                "point": p.id,
                "statement": p.statement,
                "conclusion": p.conclusion if p.check else "not_checked",
                "evidence": [trace.evidence.hits[n - 1].url for n in p.evidence],
                "keys": [keys[n] for n in p.evidence if n in keys],
                "explanation": p.explanation or p.reason,
            }
            for p in trace.points
        ],
    }


async def linearise(trace: Trace, today: str) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """The trace as our agent's messages, and the citation key of each evidence number."""
    language = trace.language
    registry = SourceRegistry()
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": system_prompt(language, today)},
        {"role": "user", "content": prompt("verify_task", language, paragraph=trace.paragraph)},
    ]
    keys: dict[int, str] = {}
    thought = prompt(
        "verify_thoughts",
        language,
        stage="start",
        points=[p.to_dict() for p in trace.points],
        order=trace.order,
        concluded=[],
        summary="",
        queries=trace.rounds[0].queries,
    )
    with tempfile.TemporaryDirectory(prefix="synth-verify-") as workspace:
        for number, current in enumerate(trace.rounds, start=1):
            call_id = f"call_verify_{number}"
            arguments = {
                "action": "batch_search",
                "queries": current.queries,
                "topk": SEARCH_LIMIT * len(current.queries),
            }
            messages.append(
                {
                    "role": "assistant",
                    "content": thought,
                    "tool_calls": [
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {
                                "name": TOOL_NAME,
                                "arguments": json.dumps(arguments, ensure_ascii=False),
                            },
                        }
                    ],
                }
            )
            text = await _tool_text(current, arguments, registry, Path(workspace), number)
            messages.append({"role": "tool", "tool_call_id": call_id, "content": text})
            for n, hit in enumerate(trace.evidence.hits, start=1):
                source = registry.lookup_url(hit.url)
                if source is not None:
                    keys.setdefault(n, source.key)
            following = trace.rounds[number] if number < len(trace.rounds) else None
            thought = prompt(
                "verify_thoughts",
                language,
                stage="round" if following else "final",
                points=[p.to_dict() for p in trace.points],
                order=trace.order,
                concluded=[_shown_point(trace.point(i), keys) for i in current.verified],
                settled=[_shown_point(trace.point(i), keys) for i in current.settled],
                summary=current.summary,
                queries=following.queries if following else [],
            )
    report = report_of(trace, keys)
    answer = prompt("verify_answer", language, verdict=report["verdict"], points=report["points"])
    messages.append({"role": "assistant", "content": f"{thought}\n\n<answer>\n{answer}\n</answer>"})
    return messages, keys


def _shown_point(point: Point, keys: dict[int, str]) -> dict[str, Any]:
    return {**point.to_dict(), "keys": [keys[n] for n in point.evidence if n in keys]}


class _Recorded:
    """A search backend that answers with the hits a round already got, so the tool's own formatter
    lays them out exactly as it would have in a live run."""

    name = "recorded"

    def __init__(self, results: dict[str, list[SearchHit]]) -> None:
        self._results = results

    async def search(self, query: str, *, limit: int = 10) -> list[SearchHit]:
        return self._results.get(query, [])[:limit]

    async def aclose(self) -> None:
        return None


async def _tool_text(
    current: Round, arguments: dict[str, Any], registry: SourceRegistry, workspace: Path, step: int
) -> str:
    context = ToolContext(
        workspace=workspace, sources=registry, state={}, step=step, search=_Recorded(current.results)
    )
    result = await batch_search(WebArgs.model_validate(arguments), context)
    return result.text


# ---- the pipeline ---------------------------------------------------------------------------------


async def verify_item(
    item: dict[str, Any], model: Model, search: Any, *, max_rounds: int, today: str
) -> Outcome:
    """One paragraph → one kept trajectory, or the reason it was dropped."""
    paragraph = str(item.get("paragraph") or "").strip()
    if not paragraph:
        return Outcome.drop("no_points", why="empty paragraph")
    language = language_of(paragraph)
    try:
        trace = await build_trace(model, search, paragraph, language, max_rounds=max_rounds)
        checks = await judge(model, trace, language)
    except Dropped as dropped:
        return Outcome.drop(dropped.reason, **dropped.detail)
    except BadReply as exc:
        return Outcome.drop("bad_reply", problem=str(exc))
    verdict = verdict_of(trace.points)
    expected = normal_judgement(item.get("judgement"))
    if expected is not None and expected != verdict:
        return Outcome.drop("judgement_mismatch", expected=item.get("judgement"), verdict=verdict)
    messages, keys = await linearise(trace, today)
    record = {
        "task_id": str(item["id"]),
        "paragraph": paragraph,
        "language": language,
        "points": [p.to_dict() for p in trace.points],
        "report": report_of(trace, keys),
        "judgement": item.get("judgement"),
        "judge": checks,
        "rounds": [
            {"queries": r.queries, "verified": r.verified, "settled": r.settled, "summary": r.summary}
            for r in trace.rounds
        ],
        "messages": messages,
        "tools": [web_tool().schema()],
    }
    return Outcome.keep(record, verdict=verdict, points=len(trace.points), rounds=len(trace.rounds))


async def synth_verify(
    settings: Settings,
    *,
    paragraphs: Path,
    out: Path,
    max_rounds: int = 3,
    concurrency: int = 4,
    progress: bool = True,
) -> Summary:
    """Fact-checking trajectories from a JSONL of ``{"id", "paragraph", "judgement"?}`` into ``out``."""
    if max_rounds < 1:
        raise ConfigError(f"max_rounds must be at least 1, not {max_rounds}")
    items, problems = load_items(paragraphs)
    for problem in problems:
        logger.warning("%s", problem)
    today = datetime.now(UTC).date().isoformat()
    async with open_context(settings, out) as ctx:

        async def step(item: dict[str, Any], tally: Tally) -> Outcome:
            return await verify_item(item, ctx.model(tally), ctx.search, max_rounds=max_rounds, today=today)

        return await run_items(
            items, step, out, concurrency=concurrency, label="verify", progress=progress, total=len(items)
        )


def _ints(value: Any) -> list[int]:
    """The whole numbers in a list a model wrote (``[1, "2", "x"]`` → ``[1, 2]``)."""
    items = value if isinstance(value, list) else []
    return [int(v) for v in items if isinstance(v, int) or (isinstance(v, str) and v.strip().isdigit())]


def _queries(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    return list(dict.fromkeys(str(q).strip() for q in value if str(q).strip()))[:QUERIES_PER_POINT]


def _head(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SHOWN_CONTENT_CHARS else flat[: SHOWN_CONTENT_CHARS - 1] + "…"
