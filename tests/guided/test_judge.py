"""The checks a model-written section must pass before it is kept over the quoted passages."""

from __future__ import annotations

from deepresearch.guided.judge import Paragraph, verdict
from deepresearch.guided.select import windows

PASSAGES = windows(
    "web_a",
    "CREATE INDEX",
    "Creating an index on a large table can take a long time. By default writes are blocked until the "
    "index build is finished. With the CONCURRENTLY option PostgreSQL builds the index without taking "
    "locks that prevent concurrent inserts, updates or deletes on the table.",
) + windows("web_b", "REINDEX", "REINDEX rebuilds an index using the data stored in the index's table.")
QUESTION = "How do I build a PostgreSQL index without blocking writes?"


def judge(*texts: str, keys: list[str] | None = None) -> tuple[list[Paragraph], str | None]:
    return verdict(
        [Paragraph(t, keys or ["web_b"]) for t in texts],
        PASSAGES,
        heading="Building concurrently",
        question=QUESTION,
    )


def test_a_grounded_paragraph_is_kept_and_cites_what_supports_it() -> None:
    kept, why = judge(
        "With the CONCURRENTLY option PostgreSQL builds the index without locks that prevent inserts, "
        "updates or deletes, although creating it on a large table takes longer."
    )
    assert why is None
    assert kept[0].keys == ["web_a"]  # it cited web_b, whose passage does not support it


def test_the_failures_a_small_model_makes_are_refused() -> None:
    assert judge("Building concurrently")[1] == "too short (2 content words)"
    assert judge(
        "Writing is one of the most difficult things I have ever done, but writing is the only way to "
        "make amends, no matter how small it may seem to anyone."
    )[1].startswith("not grounded")
    loop = "It is a game changer for the index build. " * 6
    assert judge(loop)[1] == "repeats itself"
    same = "PostgreSQL builds the index without locks that prevent inserts on a large table concurrently."
    assert judge(same, same)[1] == "repeats itself"
    assert judge("<the whole report in Markdown> with index build locks and writes blocked")[1] == (
        "echoed the prompt"
    )
    assert judge("CREATE INDEX REINDEX building concurrently index create reindex")[1] in (
        "restates the titles",
        "copied the heading",
        "too short (7 content words)",
    )
