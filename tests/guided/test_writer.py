"""Reading the model's plan and building the report from kept and quoted sections."""

from __future__ import annotations

import json

from deepresearch.guided.writer import Section, assemble, fallback_plan, read_plan, read_point

QUESTION = "How do I build a PostgreSQL index without blocking writes?"
TITLES = ["PostgreSQL 15 > CREATE INDEX > Parameters > Building Indexes Concurrently"]


def plan(*sections: tuple[str, str]) -> str:
    return json.dumps({"sections": [{"heading": h, "query": q} for h, q in sections]})


def test_a_plan_keeps_new_on_subject_headings_with_clean_queries() -> None:
    reply = plan(
        ("Building indexes concurrently", "CREATE INDEX (name, column) AS {database} CONCURRENTLY"),
        ("Building indexes concurrently", "the same heading again"),
        ("Section 1", "index"),  # generic
        ("How do I build a PostgreSQL index without blocking writes", "index"),  # the question again
        ("Gardening tips", "roses"),  # off the subject
        ("Writes during REINDEX", "reindex locks writes"),
    )
    assert read_plan(reply, QUESTION, 3, TITLES) == [
        Section("Building indexes concurrently", "CREATE INDEX name column database CONCURRENTLY"),
        Section("Writes during REINDEX", "reindex locks writes"),
    ]
    assert read_plan("not json at all", QUESTION, 3, TITLES) == []


def test_the_fallback_plan_names_sections_after_the_pages_found() -> None:
    found = fallback_plan([*TITLES, "PostgreSQL 15 > REINDEX > Examples"], QUESTION, 2)
    assert [s.heading for s in found] == ["Parameters: Building Indexes Concurrently", "REINDEX: Examples"]
    assert all(QUESTION in s.query for s in found)


def test_a_point_loses_the_labels_a_small_model_copies() -> None:
    reply = json.dumps(
        {"sentence": "[PostgreSQL 15 > REINDEX] ### Rebuild indexes without blocking writes. }"}
    )
    assert read_point(reply) == "Rebuild indexes without blocking writes."


def test_the_report_marks_quoted_sections_and_passages() -> None:
    sections = [
        {
            "heading": "Overview",
            "kept": "model",
            "paragraphs": [{"text": "It works \\cite{web_a}.", "keys": []}],
        },
        {
            "heading": "Mixed",
            "kept": "model",
            "paragraphs": [{"text": "Quoted text.", "keys": ["web_b"], "quoted": True}],
        },
        {"heading": "Quoted", "kept": "quoted", "paragraphs": [{"text": "All quoted.", "keys": ["web_c"]}]},
        {"heading": "Skipped", "kept": "none", "paragraphs": []},
    ]
    report = assemble(QUESTION, sections, "en")
    assert report.startswith(f"# {QUESTION}\n\n## Overview\n\nIt works \\cite{{web_a}}.")
    assert "## Mixed\n\n> Quoted text. \\cite{web_b}" in report
    assert "## Quoted\n\n*Quoted from the sources.*\n\n> All quoted. \\cite{web_c}" in report
    assert "Skipped" not in report
