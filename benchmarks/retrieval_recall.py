"""Does the local index put the page that answers a question near the top?

A labelled question set over the Debian documentation corpus (``deepresearch index fetch debian-docs``:
the Python, PostgreSQL and Linux kernel manuals and the Debian Administrator's Handbook), one JSON
object per line in ``benchmarks/data/debian_docs_questions.jsonl``::

    {"id": "pg-index-concurrently", "question": "How do I build …?", "answers": ["https://…/sql-createindex.html"]}

An answer URL without a ``#fragment`` names a page, and any section of that page counts; one with a
fragment names that section only. Per ranking it prints recall@1, @3 and @10 (a labelled page among
the first k hits), MRR (1/rank of the first such hit, 0 past the limit), and how often the first
three hits hold the same URL twice or the same page twice.

Rows: ``current`` is ``LocalIndex`` as every search gets it; ``+ authority`` adds the shipped
authority re-ranking, which is what the agent sees (``search.backends.open_search``). With
``--baseline``, two rankings run beside it in the same process, on the same index and questions:
``plain bm25`` (equal column weights, no per-document cap, no page diversity) and ``previous`` (the
ranking before headings were weighted and hits deduplicated: heading weight 0.5, up to 3 passages
per document, no page diversity).

    .venv/bin/python benchmarks/retrieval_recall.py [--index PATH] [--baseline] [--verbose]
        [--heading-weight W] [--distinct-pages N]

The index is opened read-only in effect (searches only). It takes a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from deepresearch.search import SearchHit
from deepresearch.search.authority import AuthorityList, rerank
from deepresearch.search.local import LocalIndex, Ranking, default_index_path

QUESTIONS = Path(__file__).resolve().parent / "data" / "debian_docs_questions.jsonl"
LIMIT = 10
OLD_QUERIES = {"question_words": False, "compounds": False}
"""Queries as they were built before: stopwords only, no joined compounds."""


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    question: str
    answers: tuple[str, ...]
    split: str


@dataclass(slots=True)
class Score:
    """Totals over the question set for one ranking."""

    name: str
    at1: int = 0
    at3: int = 0
    at10: int = 0
    reciprocal_ranks: float = 0.0
    same_url_top3: int = 0
    same_page_top3: int = 0
    questions: int = 0

    def add(self, rank: int | None, hits: list[SearchHit]) -> None:
        self.questions += 1
        if rank is not None:
            self.at1 += rank <= 1
            self.at3 += rank <= 3
            self.at10 += rank <= 10
            self.reciprocal_ranks += 1.0 / rank
        top = [hit.url for hit in hits[:3]]
        self.same_url_top3 += len(set(top)) < len(top)
        pages = [url.partition("#")[0] for url in top]
        self.same_page_top3 += len(set(pages)) < len(pages)

    def row(self) -> str:
        n = max(self.questions, 1)
        return (
            f"{self.name:<40} {self.at1 / n:6.3f} {self.at3 / n:6.3f} {self.at10 / n:6.3f}"
            f" {self.reciprocal_ranks / n:6.3f} {self.same_url_top3:>9} {self.same_page_top3:>10}"
        )


def load_questions(path: Path) -> list[Question]:
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        answers = record.get("answers")
        if not isinstance(answers, list) or not answers:
            raise SystemExit(f"{path}:{number}: 'answers' must be a non-empty list of URLs")
        split = str(record.get("split", "tuned"))
        questions.append(
            Question(str(record["id"]), str(record["question"]), tuple(map(str, answers)), split)
        )
    return questions


def first_answer(hits: list[SearchHit], answers: tuple[str, ...]) -> int | None:
    """1-based position of the first hit that a labelled answer covers, or ``None``."""
    for position, hit in enumerate(hits, start=1):
        page = hit.url.partition("#")[0]
        if any(hit.url == answer if "#" in answer else page == answer for answer in answers):
            return position
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--index", type=Path, default=default_index_path())
    parser.add_argument("--questions", type=Path, default=QUESTIONS)
    parser.add_argument("--baseline", action="store_true", help="also run plain BM25 and the old ranking")
    parser.add_argument("--heading-weight", type=float, help="override for the current ranking")
    parser.add_argument("--distinct-pages", type=int, help="override for the current ranking")
    parser.add_argument("--verbose", action="store_true", help="the answer's position per question")
    args = parser.parse_args()
    if not args.index.is_file():
        raise SystemExit(f"no index at {args.index}: run `deepresearch index fetch debian-docs` first")

    current = Ranking()
    if args.heading_weight is not None:
        current = dataclasses.replace(current, heading_weight=args.heading_weight)
    if args.distinct_pages is not None:
        current = dataclasses.replace(current, distinct_pages=args.distinct_pages)
    rankings: dict[str, Ranking] = {}
    if args.baseline:
        rankings["plain bm25 (1/1, no dedup)"] = Ranking(
            heading_weight=1.0, per_document=None, distinct_pages=0, **OLD_QUERIES
        )
        rankings["previous (0.5/1, 3 per doc)"] = Ranking(
            heading_weight=0.5, per_document=3, distinct_pages=0, **OLD_QUERIES
        )
    rankings[f"current ({current.heading_weight:g}/1, 1 per doc, {current.distinct_pages} pages)"] = current

    questions = load_questions(args.questions)
    splits = sorted({question.split for question in questions})
    authority = AuthorityList.load()
    scores: dict[str, list[Score]] = {split: [] for split in splits}
    positions: dict[str, list[int | None]] = {}
    for name, ranking in rankings.items():
        plain = {split: Score(name) for split in splits}
        ranked = {split: Score("  + authority (as the agent sees)") for split in splits}
        with LocalIndex(args.index, ranking=ranking) as index:
            for question in questions:
                hits = asyncio.run(index.search(question.question, limit=LIMIT))
                rank = first_answer(hits, question.answers)
                plain[question.split].add(rank, hits)
                positions.setdefault(question.id, []).append(rank)
                reranked = rerank(hits, authority)
                ranked[question.split].add(first_answer(reranked, question.answers), reranked)
        for split in splits:
            scores[split] += [plain[split], ranked[split]]

    print(f"index {args.index}, first {LIMIT} hits")
    for split in splits:
        count = sum(question.split == split for question in questions)
        print(f"\n{split}: {count} questions")
        print(
            f"{'ranking':<40} {'R@1':>6} {'R@3':>6} {'R@10':>6} {'MRR':>6} {'URL x2@3':>9} {'page x2@3':>10}"
        )
        for score in scores[split]:
            print(score.row())
    if args.verbose:
        print("\nposition of the first answer per question (" + " | ".join(rankings) + "):")
        for question in questions:
            cells = " ".join(f"{'-' if p is None else p:>3}" for p in positions[question.id])
            print(f"  {cells}  {question.id}: {question.question}")


if __name__ == "__main__":
    main()
