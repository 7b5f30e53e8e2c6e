"""Knowledge graphs from triples files, for ``synth kg``: one reader for small hand-written graphs and
for Wikidata5m-sized ones.

Accepted inputs (``read_graph``):

- **TSV** ``subject TAB relation TAB object``, each an id (``Q42``, ``P31``) or a label. Lines
  starting with ``#`` are comments; a first other line ``subject TAB relation TAB object`` is a header.
- **JSONL** ``{"subject", "relation", "object"}`` with optional ``subject_label``, ``relation_label``
  and ``object_label`` (chosen by the ``.jsonl``/``.json`` suffix).
- **Labels** from separate alias files, Wikidata5m's ``wikidata5m_entity.txt`` and
  ``wikidata5m_relation.txt``: ``id TAB alias1 TAB alias2 …``, the first alias is the label. Without
  them (and without JSONL labels) an id is its own label, which is what a labelled TSV wants.

The reader is tolerant and streams: a malformed line is reported as ``path:line: reason`` in
``Graph.problems`` and the rest loads; lines are read one at a time into compact arrays of integer ids
(never a list of lines or of triple objects), the adjacency is built from those arrays in compressed
sparse rows, and label files keep only the labels of ids the graph has. A whole Wikidata5m still
needs a few GiB, most of it for the id → number dict.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from deepresearch.errors import ConfigError

MAX_PROBLEMS = 100
"""Problems listed by line; past this many only ``problem_count`` grows."""
_TYPECODE = "i"
"""C int (4 bytes): node, relation and edge numbers below 2**31 — a Wikidata5m (21M triples) in ~0.4 GiB."""
_HEADER = ("subject", "relation", "object")
_JSON_SUFFIXES = (".jsonl", ".json", ".ndjson")


@dataclass(frozen=True, slots=True)
class Edge:
    """One triple as node and relation numbers of a ``Graph``."""

    subject: int
    relation: int
    object: int

    def other(self, node: int) -> int:
        """The end of the edge that is not ``node``."""
        return self.object if self.subject == node else self.subject


@dataclass
class Graph:
    """Nodes and relations numbered in order of first appearance, edges in file order, and for each
    node the edges that touch it (either direction)."""

    node_ids: list[str] = field(default_factory=list)
    relation_ids: list[str] = field(default_factory=list)
    node_labels: dict[int, str] = field(default_factory=dict)
    relation_labels: dict[int, str] = field(default_factory=dict)
    labelled: bool = False
    """Labels came from somewhere (a labels file or JSONL labels), so an unlabelled id is a gap."""
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    _subjects: array[int] = field(default_factory=lambda: array(_TYPECODE))
    _relations: array[int] = field(default_factory=lambda: array(_TYPECODE))
    _objects: array[int] = field(default_factory=lambda: array(_TYPECODE))
    _offsets: array[int] = field(default_factory=lambda: array(_TYPECODE, [0]))
    _incident: array[int] = field(default_factory=lambda: array(_TYPECODE))

    @property
    def node_count(self) -> int:
        return len(self.node_ids)

    @property
    def edge_count(self) -> int:
        return len(self._subjects)

    def edge(self, number: int) -> Edge:
        return Edge(self._subjects[number], self._relations[number], self._objects[number])

    def degree(self, node: int) -> int:
        """Edges touching ``node``, in either direction (a repeated triple counts each time)."""
        return self._offsets[node + 1] - self._offsets[node]

    def edges_of(self, node: int) -> Iterator[Edge]:
        """The edges touching ``node``, in file order."""
        for position in range(self._offsets[node], self._offsets[node + 1]):
            yield self.edge(self._incident[position])

    def label(self, node: int) -> str:
        """The node's label, or its id when it has none."""
        return self.node_labels.get(node) or self.node_ids[node]

    def has_label(self, node: int) -> bool:
        """False for an id the labels do not name (its "label" would be ``Q…``)."""
        return not self.labelled or node in self.node_labels

    def relation_label(self, relation: int) -> str:
        return self.relation_labels.get(relation) or self.relation_ids[relation]

    def report(self, where: str, reason: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(f"{where}: {reason}")


class _Builder:
    """Numbers ids as they come and appends edges to the graph's arrays."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.nodes: dict[str, int] = {}
        self.relations: dict[str, int] = {}

    def add(self, subject: str, relation: str, obj: str) -> tuple[int, int, int]:
        s, r, o = self._node(subject), self._relation(relation), self._node(obj)
        self.graph._subjects.append(s)
        self.graph._relations.append(r)
        self.graph._objects.append(o)
        return s, r, o

    def _node(self, key: str) -> int:
        number = self.nodes.get(key)
        if number is None:
            number = self.nodes[key] = len(self.graph.node_ids)
            self.graph.node_ids.append(key)
        return number

    def _relation(self, key: str) -> int:
        number = self.relations.get(key)
        if number is None:
            number = self.relations[key] = len(self.graph.relation_ids)
            self.graph.relation_ids.append(key)
        return number


def read_graph(
    triples: Path, *, entity_labels: Path | None = None, relation_labels: Path | None = None
) -> Graph:
    """The graph of a triples file (TSV or JSONL by suffix) with labels from the optional alias files;
    see the module docstring."""
    graph = Graph()
    builder = _Builder(graph)
    if triples.suffix.lower() in _JSON_SUFFIXES:
        _read_jsonl(triples, builder)
    else:
        _read_tsv(triples, builder)
    if entity_labels is not None:
        graph.labelled = True
        _read_labels(entity_labels, builder.nodes, graph.node_labels, graph)
    if relation_labels is not None:
        _read_labels(relation_labels, builder.relations, graph.relation_labels, graph)
    _index(graph)
    return graph


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        handle = path.open(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\r\n")
            if line.strip() and not line.lstrip().startswith("#"):
                yield number, line


def _read_tsv(path: Path, builder: _Builder) -> None:
    first = True
    for number, line in _lines(path):
        fields = [part.strip() for part in line.split("\t")]
        if first and tuple(f.lower() for f in fields) == _HEADER:
            first = False
            continue
        first = False
        problem = _triple_problem(fields)
        if problem:
            builder.graph.report(f"{path}:{number}", problem)
            continue
        builder.add(*fields)


def _read_jsonl(path: Path, builder: _Builder) -> None:
    graph = builder.graph
    for number, line in _lines(path):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            graph.report(f"{path}:{number}", f"not JSON ({exc.msg})")
            continue
        if not isinstance(value, dict):
            graph.report(f"{path}:{number}", "not a JSON object")
            continue
        fields = [value.get(key) for key in _HEADER]
        if not all(isinstance(f, str | int) for f in fields):
            graph.report(f"{path}:{number}", 'needs "subject", "relation" and "object" (strings)')
            continue
        texts = [str(f).strip() for f in fields]
        problem = _triple_problem(texts)
        if problem:
            graph.report(f"{path}:{number}", problem)
            continue
        s, r, o = builder.add(*texts)
        for key, number_of, labels in (
            ("subject_label", s, graph.node_labels),
            ("relation_label", r, graph.relation_labels),
            ("object_label", o, graph.node_labels),
        ):
            label = value.get(key)
            if isinstance(label, str) and label.strip():
                labels.setdefault(number_of, label.strip())
                if key != "relation_label":
                    graph.labelled = True


def _triple_problem(fields: list[str]) -> str | None:
    if len(fields) != 3:
        return f"expected 3 tab-separated fields (subject, relation, object), found {len(fields)}"
    if not all(fields):
        return "an empty subject, relation or object"
    return None


def _read_labels(path: Path, known: dict[str, int], labels: dict[int, str], graph: Graph) -> None:
    """Keep the first alias of each id the graph has; ids it lacks are skipped unread."""
    for number, line in _lines(path):
        key, _, rest = line.partition("\t")
        target = known.get(key.strip())
        if target is None or target in labels:
            continue
        label = rest.split("\t", 1)[0].strip()
        if not label:
            graph.report(f"{path}:{number}", "an id without a label")
            continue
        labels[target] = label


def _index(graph: Graph) -> None:
    """Compressed sparse rows: ``_incident[_offsets[n]:_offsets[n + 1]]`` are node n's edges."""
    degrees = array(_TYPECODE, bytes(array(_TYPECODE).itemsize * graph.node_count))
    for s, o in zip(graph._subjects, graph._objects, strict=True):
        degrees[s] += 1
        if o != s:
            degrees[o] += 1
    offsets = array(_TYPECODE, [0])
    for degree in degrees:
        offsets.append(offsets[-1] + degree)
    incident = array(_TYPECODE, bytes(array(_TYPECODE).itemsize * offsets[-1]))
    fill = array(_TYPECODE, offsets[:-1])
    for number, (s, o) in enumerate(zip(graph._subjects, graph._objects, strict=True)):
        incident[fill[s]] = number
        fill[s] += 1
        if o != s:
            incident[fill[o]] = number
            fill[o] += 1
    graph._offsets = offsets
    graph._incident = incident
