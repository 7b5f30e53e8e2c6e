"""The triples reader: labelled TSV, JSONL with labels, Wikidata5m's ids with alias files, malformed
lines reported by place while the rest loads, degrees and adjacency; and the shipped Debian example."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deepresearch.errors import ConfigError
from deepresearch.synth.kg import example_triples_path, seed_nodes
from deepresearch.synth.triples import Edge, Graph, read_graph


def node(graph: Graph, key: str) -> int:
    return graph.node_ids.index(key)


def neighbours(graph: Graph, key: str) -> list[str]:
    number = node(graph, key)
    return [graph.label(edge.other(number)) for edge in graph.edges_of(number)]


def test_labelled_tsv_with_header_comments_and_degrees(tmp_path: Path) -> None:
    path = tmp_path / "small.tsv"
    path.write_text(
        "# a comment line\n"
        "subject\trelation\tobject\n"
        "apt\treads\tsources.list\n"
        "apt\tcalls\tdpkg\n"
        "\n"
        "dpkg\tinstalls\t.deb\n"
        "aptitude\tcalls\tdpkg\r\n",
        encoding="utf-8",
    )
    graph = read_graph(path)
    assert graph.problems == [] and graph.problem_count == 0
    assert graph.node_ids == ["apt", "sources.list", "dpkg", ".deb", "aptitude"]
    assert graph.relation_ids == ["reads", "calls", "installs"]
    assert graph.edge_count == 4
    assert [graph.degree(n) for n in range(graph.node_count)] == [2, 1, 3, 1, 1]
    assert neighbours(graph, "dpkg") == ["apt", ".deb", "aptitude"]  # file order, both directions
    assert graph.edge(2) == Edge(node(graph, "dpkg"), 2, node(graph, ".deb"))
    assert graph.label(node(graph, "apt")) == "apt" and graph.has_label(node(graph, "apt"))
    assert graph.relation_label(1) == "calls"


def test_malformed_lines_are_reported_with_their_place_and_the_rest_loads(tmp_path: Path) -> None:
    path = tmp_path / "broken.tsv"
    path.write_text(
        "a\tknows\tb\nonly two\tfields\nb\tknows\tc\textra\nc\t\td\nc\tknows\td\n",
        encoding="utf-8",
    )
    graph = read_graph(path)
    assert graph.edge_count == 2
    assert graph.node_ids == ["a", "b", "c", "d"]
    assert graph.problem_count == 3
    assert (
        graph.problems[0] == f"{path}:2: expected 3 tab-separated fields (subject, relation, object), found 2"
    )
    assert graph.problems[1].startswith(f"{path}:3: expected 3") and "found 4" in graph.problems[1]
    assert graph.problems[2] == f"{path}:4: an empty subject, relation or object"


def test_jsonl_with_optional_labels(tmp_path: Path) -> None:
    path = tmp_path / "graph.jsonl"
    rows = [
        {
            "subject": "Q1",
            "relation": "P1",
            "object": "Q2",
            "subject_label": "Debian",
            "object_label": "dpkg",
        },
        {"subject": "Q2", "relation": "P2", "object": "Q3", "relation_label": "installs"},
        "not an object",
        {"subject": "Q3", "relation": "P2"},
    ]
    text = "\n".join(json.dumps(row) for row in rows) + "\n{not json\n"
    path.write_text(text, encoding="utf-8")
    graph = read_graph(path)
    assert graph.edge_count == 2
    assert [graph.label(n) for n in range(graph.node_count)] == ["Debian", "dpkg", "Q3"]
    assert graph.labelled and not graph.has_label(node(graph, "Q3"))
    assert graph.relation_label(0) == "P1" and graph.relation_label(1) == "installs"
    assert graph.problems == [
        f"{path}:3: not a JSON object",
        f'{path}:4: needs "subject", "relation" and "object" (strings)',
        f"{path}:5: not JSON (Expecting property name enclosed in double quotes)",
    ]


def test_wikidata5m_ids_with_alias_files(tmp_path: Path) -> None:
    triples = tmp_path / "wikidata5m_transductive_train.txt"
    triples.write_text("Q7\tP31\tQ5\nQ7\tP27\tQ30\nQ8\tP31\tQ5\nQ9\tP27\tQ30\n", encoding="utf-8")
    entities = tmp_path / "wikidata5m_entity.txt"
    entities.write_text(
        "Q5\thuman\thumans\tperson\n"
        "Q7\tAda Lovelace\tAugusta Ada King\n"
        "Q30\tUnited States of America\tUSA\n"
        "Q8\tAlan Turing\n"
        "Q404\tnot in the graph\n"
        "Q9\t\n",
        encoding="utf-8",
    )
    relations = tmp_path / "wikidata5m_relation.txt"
    relations.write_text("P31\tinstance of\tis a\nP27\tcountry of citizenship\n", encoding="utf-8")
    graph = read_graph(triples, entity_labels=entities, relation_labels=relations)
    assert graph.label(node(graph, "Q7")) == "Ada Lovelace"  # the first alias is the label
    assert graph.label(node(graph, "Q5")) == "human"
    assert graph.relation_label(0) == "instance of" and graph.relation_label(1) == "country of citizenship"
    assert graph.degree(node(graph, "Q5")) == 2 and graph.degree(node(graph, "Q30")) == 2
    assert "Q404" not in graph.node_ids and len(graph.node_labels) == 4  # only the graph's ids are kept
    assert not graph.has_label(node(graph, "Q9")) and graph.label(node(graph, "Q9")) == "Q9"
    assert graph.problems == [f"{entities}:6: an id without a label"]


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_graph(tmp_path / "nothing.tsv")
    triples = tmp_path / "t.tsv"
    triples.write_text("a\tb\tc\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"labels\.txt does not exist"):
        read_graph(triples, entity_labels=tmp_path / "labels.txt")


def test_the_shipped_debian_example_loads_cleanly_and_has_seeds() -> None:
    path = example_triples_path()
    assert path.is_file() and path.name == "debian_triples.tsv"
    graph = read_graph(path)
    assert graph.problems == [] and graph.problem_count == 0
    assert 60 <= graph.edge_count <= 150
    labels = {graph.label(n) for n in range(graph.node_count)}
    assert {"APT", "dpkg", "sources.list", ".deb", "debhelper", "debian/rules"} <= labels
    seeds = seed_nodes(graph, limit=1000, seed=0)
    assert len(seeds) >= 20
    assert all(3 <= graph.degree(seed) <= 10 for seed in seeds)
