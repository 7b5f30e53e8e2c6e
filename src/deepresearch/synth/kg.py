"""``synth kg``: deep-search questions from a knowledge graph whose every edge the search backend
confirms.

Per seed (one item, id ``kg-<node id>``):

1. **Seeds** are labelled, non-generic nodes of degree 3–10 (``SEED_DEGREE``), the first ``limit`` of
   them in an order shuffled by ``random.Random(seed)``, so a rerun with the same ``--seed`` and
   ``--limit`` gets the same items (which is what lets it skip the decided ones).
   A label is *generic* (``is_generic``) when, normalised, it is shorter than three characters (two
   for Chinese), all digits, a date or a year, or a class word of ``GENERIC_LABELS`` ("human",
   "country", "file", "人类"…): a question can hardly be anchored on those.
2. **Subgraph**: breadth-first from the seed to at most ``max_nodes`` nodes; a node of degree above
   ``max_degree`` joins as a leaf and is not expanded (hubs such as "human" would swallow the walk).
   Fewer than ``min_nodes`` nodes: dropped ``too_small`` before any search.
3. **Verification**: every edge (the breadth-first tree first, at most ``max(MAX_EDGES, 2 *
   max_nodes)``) is searched as "subject relation object" through the configured backend and kept only
   when one hit's title, snippet or text mentions both the subject and the object label (normalised:
   case, punctuation, a plural ``s``). The supporting span, URL and title go with the edge as its
   evidence. Fewer than ``MIN_VERIFIED_EDGES`` verified: ``unverified``; nothing at two hops or more
   from the seed over verified edges: ``too_small``.
4. **Question**: the model gets the verified facts (``PROMPT_FACTS`` at most) and a suggested path
   to a node ``SUGGESTED_HOPS`` away (or as far as the subgraph goes) and writes an obfuscated
   multi-hop question (intermediate entities described by their relations, never named) and its answer
   as JSON (the schema lists the allowed answers, so a server that honours it, and ``--model local``,
   can only pick one). The answer must be the label of a node at least two verified hops from the
   seed, the question must end with a question mark and must not contain the answer; after one retry
   a reply that still leaks is dropped ``answer_leaked``, any other unusable one ``bad_reply``.

The record: ``{task_id, question, answer, seed, hops, edges: [{subject, relation, object, evidence}],
language}``; ``hops`` is the answer's distance from the seed over verified edges.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import unicodedata
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from deepresearch.config import Settings
from deepresearch.errors import ConfigError
from deepresearch.search import SearchHit
from deepresearch.synth.context import SynthContext, open_context
from deepresearch.synth.engine import Outcome, Summary, Tally, run_items
from deepresearch.synth.model import BadReply, Language, language_of, prompt, require
from deepresearch.synth.triples import Edge, Graph, read_graph

logger = logging.getLogger(__name__)

SEED_DEGREE = (3, 10)
"""Degrees a seed may have: enough to branch, too few to be a hub."""
MIN_VERIFIED_EDGES = 3
MIN_HOPS = 2
SUGGESTED_HOPS = 3
"""How far from the seed the suggested answer lies (or less when the subgraph is shallower): a longer
chain is more than a question can describe without naming what it hides."""
MAX_EDGES = 80
"""Edges searched per seed (at least ``2 * max_nodes``): each is one search."""
SEARCH_LIMIT = 5
SEARCHES_AT_ONCE = 4
"""Searches in flight for one seed (the engine bounds the seeds)."""
EVIDENCE_PER_EDGE = 2
SPAN_CONTEXT = 80
"""Characters kept around the two mentions in an evidence span."""
PROMPT_FACTS = 24
"""Facts listed in the question prompt (the suggested path always among them)."""
PROMPT_EVIDENCE_CHARS = 240
QUESTION_MAX_CHARS = 600
LANGUAGES = ("auto", "en", "zh")
GENERIC_LABELS = frozenset(
    {
        "human", "person", "people", "man", "woman", "male", "female", "country", "city", "town",
        "village", "state", "place", "organization", "organisation", "company", "business", "film",
        "album", "song", "book", "language", "english", "year", "date", "time", "thing", "entity",
        "object", "class", "type", "category", "concept", "file", "files", "program", "software",
        "system", "data", "package", "packages", "tool", "user", "users", "name", "number", "value",
        "list", "item", "unknown", "none", "other", "人", "人类", "男性", "女性", "国家", "城市",
        "地方", "公司", "组织", "电影", "专辑", "歌曲", "书", "语言", "年份", "日期", "时间",
        "事物", "实体", "类别", "概念", "文件", "软件", "程序", "系统", "数据", "用户", "名字", "未知",
    }
)  # fmt: skip
"""Class words a question cannot be anchored on (compared after ``normalise``)."""
LEAKED = "the question names the answer word for word; describe it through its relations instead"

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?"
    r"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_DATE = re.compile(
    rf"^(?:\d{{1,2}} {_MONTH}(?: \d{{2,4}})?|{_MONTH}(?: \d{{1,2}})?(?: \d{{2,4}})?"
    r"|\d{1,4}年(?:\d{1,2}月)?(?:\d{1,2}日)?|\d{1,2}月(?:\d{1,2}日)?)$"
)
"""A date or a month, after ``normalise`` ("12 march 2001", "march 2001", "2001年3月"); digits alone
are generic anyway."""


def example_triples_path() -> Path:
    """The small Debian documentation graph that ships with the package (``synth kg``'s example)."""
    return Path(str(files("deepresearch.synth") / "data" / "debian_triples.tsv"))


async def synth_kg(
    settings: Settings,
    *,
    triples: Path,
    out: Path,
    entity_labels: Path | None = None,
    relation_labels: Path | None = None,
    limit: int = 20,
    seed: int = 0,
    min_nodes: int = 10,
    max_nodes: int = 40,
    max_degree: int = 1000,
    language: str = "auto",
    concurrency: int = 4,
    progress: bool = True,
) -> Summary:
    """Questions from up to ``limit`` seeds of the graph in ``triples`` into ``out`` (module docstring)."""
    _check_options(limit=limit, min_nodes=min_nodes, max_nodes=max_nodes, max_degree=max_degree)
    if language not in LANGUAGES:
        raise ConfigError(f"language must be one of {', '.join(LANGUAGES)}, not {language!r}")
    graph = await asyncio.to_thread(
        read_graph, triples, entity_labels=entity_labels, relation_labels=relation_labels
    )
    if graph.problem_count:
        logger.warning(
            "%s: %d malformed lines skipped, first: %s", triples, graph.problem_count, graph.problems[0]
        )
    seeds = seed_nodes(graph, limit=limit, seed=seed)
    if not seeds:
        raise ConfigError(
            f"{triples} has no seed: no labelled, non-generic entity of degree "
            f"{SEED_DEGREE[0]}–{SEED_DEGREE[1]} among {graph.node_count} nodes"
        )
    items = [{"id": f"kg-{graph.node_ids[node]}", "node": node} for node in seeds]
    plan = _Plan(graph, min_nodes, max_nodes, max_degree, language)
    async with open_context(settings, out) as ctx:

        async def step(item: dict[str, Any], tally: Tally) -> Outcome:
            return await synthesise(ctx, plan, int(item["node"]), str(item["id"]), tally)

        return await run_items(
            items, step, out, concurrency=concurrency, label="synth kg", progress=progress, total=len(items)
        )


def _check_options(*, limit: int, min_nodes: int, max_nodes: int, max_degree: int) -> None:
    if limit < 1:
        raise ConfigError(f"limit must be at least 1, not {limit}")
    if min_nodes < 2 or max_nodes < min_nodes:
        raise ConfigError(f"need 2 <= min_nodes <= max_nodes, got {min_nodes} and {max_nodes}")
    if max_degree < SEED_DEGREE[1]:
        raise ConfigError(f"max_degree must be at least {SEED_DEGREE[1]}, not {max_degree}")


@dataclass(frozen=True)
class _Plan:
    graph: Graph
    min_nodes: int
    max_nodes: int
    max_degree: int
    language: str


@dataclass
class Fact:
    """A verified edge: its nodes (for distances) and what the record shows."""

    edge: Edge
    subject: str
    relation: str
    object: str
    evidence: list[dict[str, str]]

    def to_record(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "relation": self.relation,
            "object": self.object,
            "evidence": self.evidence,
        }


async def synthesise(ctx: SynthContext, plan: _Plan, seed: int, task_id: str, tally: Tally) -> Outcome:
    """One seed through subgraph, verification and question (module docstring)."""
    graph = plan.graph
    nodes, edges = expand(graph, seed, max_nodes=plan.max_nodes, max_degree=plan.max_degree)
    if len(nodes) < plan.min_nodes:
        return Outcome.drop("too_small", nodes=len(nodes), min_nodes=plan.min_nodes)
    edges = edges[: max(MAX_EDGES, 2 * plan.max_nodes)]
    facts = await verify(ctx.search, graph, edges)
    detail: dict[str, Any] = {"nodes": len(nodes), "edges": len(edges), "verified": len(facts)}
    if len(facts) < MIN_VERIFIED_EDGES:
        return Outcome.drop("unverified", **detail)
    distance, parent = distances(seed, [fact.edge for fact in facts])
    reachable = [fact for fact in facts if fact.edge.subject in distance and fact.edge.object in distance]
    far: dict[str, int] = {}
    for node, hops in distance.items():
        if hops >= MIN_HOPS:
            far.setdefault(graph.label(node), hops)  # breadth-first: the first is the nearest
    if not far:
        return Outcome.drop("too_small", hops=max(distance.values()), **detail)
    depth = min(max(distance.values()), SUGGESTED_HOPS)
    target = next(node for node, hops in distance.items() if hops == depth)  # the first reached
    language = _language(plan.language, graph, distance)
    text = prompt(
        "kg_question",
        language,
        seed=graph.label(seed),
        facts=[_brief(fact) for fact in _shown(_path(target, parent, reachable), reachable)],
        path=[_brief(fact) for fact in _path(target, parent, reachable)],
        target=graph.label(target),
        candidates=sorted(far, key=lambda label: (-far[label], label)),
    )
    try:
        reply = await ctx.model(tally).json(text, _schema(far), check=lambda data: _problems(data, far))
    except BadReply as exc:
        return Outcome.drop("answer_leaked" if str(exc) == LEAKED else "bad_reply", error=str(exc), **detail)
    answer = _match(str(reply["answer"]), far) or str(reply["answer"])  # the check made it a label
    record = {
        "task_id": task_id,
        "question": str(reply["question"]).strip(),
        "answer": answer,
        "seed": graph.label(seed),
        "hops": far[answer],
        "edges": [fact.to_record() for fact in reachable],
        "language": language,
    }
    return Outcome.keep(record, hops=far[answer], **detail)


# --- seeds and subgraphs ---------------------------------------------------------------------------


def normalise(text: str) -> str:
    """Case-folded, NFKC, every run of non-alphanumerics one space: how labels are compared."""
    return _normalise_with_offsets(text)[0]


def is_generic(label: str) -> bool:
    """A label too vague to anchor a question on (module docstring)."""
    plain = normalise(label)
    compact = plain.replace(" ", "")
    shortest = 2 if _CJK.search(compact) else 3
    return len(compact) < shortest or compact.isdigit() or bool(_DATE.match(plain)) or plain in GENERIC_LABELS


def seed_nodes(graph: Graph, *, limit: int, seed: int) -> list[int]:
    """Up to ``limit`` seeds in an order drawn with ``seed`` from the nodes that qualify (module
    docstring). Labels are judged only as the order reaches them: on a Wikidata5m-sized graph that is
    a few thousand labels, not millions."""
    low, high = SEED_DEGREE
    candidates = [
        node
        for node in range(graph.node_count)
        if low <= graph.degree(node) <= high and graph.has_label(node)
    ]
    random.Random(seed).shuffle(candidates)
    chosen: list[int] = []
    for node in candidates:
        if len(chosen) == limit:
            break
        if not is_generic(graph.label(node)):
            chosen.append(node)
    return chosen


def expand(graph: Graph, seed: int, *, max_nodes: int, max_degree: int) -> tuple[list[int], list[Edge]]:
    """Breadth-first from ``seed``: the nodes in the order reached, and the edges among them (the tree
    edges first, then the others, each in the order found). Hubs above ``max_degree`` are leaves."""
    nodes, seen = [seed], {seed}
    queue = deque([seed])
    tree: list[Edge] = []
    cross: list[Edge] = []
    keys: set[tuple[int, int, int]] = set()
    while queue:
        node = queue.popleft()
        if node != seed and graph.degree(node) > max_degree:
            continue
        for edge in graph.edges_of(node):
            other = edge.other(node)
            key = (edge.subject, edge.relation, edge.object)
            if other == node or key in keys:
                continue
            if other not in seen:
                if len(nodes) >= max_nodes:
                    continue
                seen.add(other)
                nodes.append(other)
                queue.append(other)
                tree.append(edge)
            else:
                cross.append(edge)
            keys.add(key)
    return nodes, tree + cross


def distances(seed: int, edges: Sequence[Edge]) -> tuple[dict[int, int], dict[int, Edge]]:
    """Hops from ``seed`` over ``edges`` (either direction) and the edge each node was reached by."""
    links: dict[int, list[Edge]] = {}
    for edge in edges:
        links.setdefault(edge.subject, []).append(edge)
        links.setdefault(edge.object, []).append(edge)
    distance, parent = {seed: 0}, {}
    queue = deque([seed])
    while queue:
        node = queue.popleft()
        for edge in links.get(node, []):
            other = edge.other(node)
            if other not in distance:
                distance[other] = distance[node] + 1
                parent[other] = edge
                queue.append(other)
    return distance, parent


def _path(target: int, parent: dict[int, Edge], facts: Sequence[Fact]) -> list[Fact]:
    by_edge = {fact.edge: fact for fact in facts}
    path: list[Fact] = []
    node = target
    while node in parent:
        path.append(by_edge[parent[node]])
        node = parent[node].other(node)
    return path[::-1]


def _shown(path: list[Fact], facts: list[Fact]) -> list[Fact]:
    """The facts the prompt lists: the suggested path, then the others, ``PROMPT_FACTS`` at most (a
    subgraph of 40 nodes has up to 80 facts, too many for a small model's context)."""
    others = [fact for fact in facts if fact not in path]
    return (path + others)[: max(PROMPT_FACTS, len(path))]


def _brief(fact: Fact) -> dict[str, Any]:
    """A fact for the prompt: its first evidence span only, cut to ``PROMPT_EVIDENCE_CHARS``."""
    record = fact.to_record()
    span = fact.evidence[0]["text"] if fact.evidence else ""
    if len(span) > PROMPT_EVIDENCE_CHARS:
        span = span[:PROMPT_EVIDENCE_CHARS].rsplit(" ", 1)[0] + " …"
    record["evidence"] = [{**fact.evidence[0], "text": span}] if fact.evidence else []
    return record


def _language(choice: str, graph: Graph, distance: dict[int, int]) -> Language:
    if choice in ("en", "zh"):
        return "zh" if choice == "zh" else "en"
    return language_of(" ".join(graph.label(node) for node in distance))


# --- verification by search ------------------------------------------------------------------------


async def verify(search: Any, graph: Graph, edges: Sequence[Edge]) -> list[Fact]:
    """The edges some search hit supports, each with its evidence, in the order given."""
    gate = asyncio.Semaphore(SEARCHES_AT_ONCE)

    async def check(edge: Edge) -> Fact | None:
        subject, relation = graph.label(edge.subject), graph.relation_label(edge.relation)
        obj = graph.label(edge.object)
        async with gate:
            hits = await search.search(f"{subject} {relation} {obj}", limit=SEARCH_LIMIT)
        evidence = [found for hit in hits if (found := support(hit, subject, obj)) is not None]
        if not evidence:
            return None
        return Fact(edge, subject, relation, obj, evidence[:EVIDENCE_PER_EDGE])

    checked = await asyncio.gather(*(check(edge) for edge in edges))
    return [fact for fact in checked if fact is not None]


def support(hit: SearchHit, subject: str, obj: str) -> dict[str, str] | None:
    """The evidence a hit gives for an edge (``url``, ``title``, ``text``: the span naming both ends),
    or ``None`` when no one field of it, or its title with its text, mentions both."""
    for text in (hit.content, hit.snippet, f"{hit.title}\n{hit.content or hit.snippet}"):
        span = _span(text, subject, obj)
        if span:
            return {"url": hit.url, "title": hit.title, "text": span}
    return None


def _span(text: str, first: str, second: str) -> str | None:
    plain, offsets = _normalise_with_offsets(text)
    places = [_find(plain, normalise(label)) for label in (first, second)]
    found = [place for place in places if place is not None]
    if len(found) < 2:
        return None
    bounds = sorted((offsets[start], offsets[end - 1] + 1) for start, end in found)
    start, end = bounds[0][0], max(bounds[0][1], bounds[1][1])
    if end - start <= 4 * SPAN_CONTEXT:
        return _window(text, start, end)
    return _window(text, *bounds[0]) + " … " + _window(text, *bounds[1])


def _window(text: str, start: int, end: int) -> str:
    begin, finish = max(0, start - SPAN_CONTEXT), min(len(text), end + SPAN_CONTEXT)
    if begin:
        space = text.find(" ", begin, start)
        begin = space + 1 if space != -1 else begin
    if finish < len(text):
        space = text.rfind(" ", end, finish)
        finish = space if space != -1 else finish
    return " ".join(text[begin:finish].split())


def _find(plain: str, label: str) -> tuple[int, int] | None:
    """Where ``label`` (normalised) occurs in ``plain`` as whole words (any run, for Chinese)."""
    if not label:
        return None
    if _CJK.search(label):
        at = plain.find(label)
        return (at, at + len(label)) if at != -1 else None
    match = re.search(rf"(?<![^ ]){re.escape(label)}(?:e?s)?(?![^ ])", plain)
    return match.span() if match else None


def _normalise_with_offsets(text: str) -> tuple[str, list[int]]:
    """``normalise(text)`` and, for each of its characters, the index in ``text`` it came from."""
    chars: list[str] = []
    offsets: list[int] = []
    for index, char in enumerate(text):
        for piece in unicodedata.normalize("NFKC", char).casefold():
            if piece.isalnum():
                chars.append(piece)
                offsets.append(index)
            elif chars and chars[-1] != " ":
                chars.append(" ")
                offsets.append(index)
    if chars and chars[-1] == " ":
        chars.pop()
        offsets.pop()
    return "".join(chars), offsets


# --- the question ----------------------------------------------------------------------------------


def _schema(far: dict[str, int]) -> dict[str, Any]:
    """The reply's shape, the answer one of the candidate labels: a server that honours the schema (and
    the grammar of ``--model local``) cannot answer anything else. The question is bounded because a
    small model that repeats itself under a grammar never closes the string (``llm/jsonmode.py``)."""
    return {
        "type": "object",
        "properties": {
            "question": {"type": "string", "maxLength": QUESTION_MAX_CHARS},
            "answer": {"type": "string", "enum": sorted(far)},
        },
        "required": ["question", "answer"],
        "additionalProperties": False,
    }


def _problems(data: dict[str, Any], far: dict[str, int]) -> list[str]:
    problems = require(data, question=str, answer=str)
    if problems:
        return problems
    answer = _match(str(data["answer"]), far)
    if answer is None:
        return ["the answer must be exactly one of these entities: " + "; ".join(sorted(far))]
    question = str(data["question"]).strip()
    if not question.endswith(("?", "？")):
        return ["the question must be one question that ends with a question mark"]
    if _find(normalise(question), normalise(answer)) is not None:
        return [LEAKED]
    return []


def _match(answer: str, labels: Iterable[str]) -> str | None:
    """The label ``answer`` names (compared normalised), or ``None``."""
    wanted = normalise(answer)
    return next((label for label in labels if normalise(label) == wanted), None)
