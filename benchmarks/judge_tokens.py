"""Judge tokens per report on DeepResearch Bench: our RACE call against the official grader's.

    .venv/bin/python benchmarks/judge_tokens.py

No benchmark data can be downloaded here, so the task is synthetic but shaped like the real file
(25 criteria per task over the four dimensions, as 2,517 criteria over 100 tasks average; criterion
names of ~7 words and explanations of ~30), with target and reference articles of 2k, 6k and 12k
tokens. Both sides get the same (already cleaned) target and reference; tokens are o200k_base.

- **Ours**: the prompt ``judge.race.render_race_prompt`` builds, counted exactly; the completion is a
  full reply in the format our prompt asks for (criterion number and two scores per criterion).
- **Official** (``deepresearch_bench_race.py`` of the benchmark's repository): its English merged
  template's fixed text is 776 tokens (measured once from ``prompt/score_prompt_en.py``; the text is
  not copied here), plus the task prompt, both articles, and the criteria as the script formats them
  (``json.dumps({dim: [{criterion, explanation}]}, indent=2)``, counted exactly). Its reply repeats each
  criterion's text and adds an ``analysis``; we assume 50 words of analysis per criterion, which is
  short for the models it is run with, so the official figure is a lower bound. Before scoring, the
  official pipeline also has an LLM clean the target article (the article in, the cleaned article
  out; its template is not counted, again a lower bound); we clean by rule. ``--skip_cleaning``
  removes that call, so both official figures are printed.

Prints one line per article size and a last line ``ratio_vs_official=X`` (ours / official without
the cleaning call, total tokens, at 6k-token articles).
"""

from __future__ import annotations

import json
import random

from deepresearch.judge.drb import DrbCriterion, DrbTask
from deepresearch.judge.race import race_prompt_tokens
from deepresearch.llm.tokens import count_tokens

OFFICIAL_TEMPLATE_TOKENS = 776
"""The fixed text of the official English merged scoring prompt (placeholders empty), o200k_base."""
ANALYSIS_WORDS = 50
CRITERIA_PER_DIMENSION = {"comprehensiveness": 7, "insight": 7, "instruction_following": 5, "readability": 6}
_VOCABULARY = (
    "market policy supply demand cost battery storage grid analysis evidence trend risk forecast capacity "
    "investment regulation region growth technology adoption scenario estimate report data source "
    "comparison impact sector price efficiency deployment constraint outlook structure"
)
WORDS = _VOCABULARY.split()


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def article(rng: random.Random, tokens: int) -> str:
    """Paragraphs of prose-like text of about ``tokens`` tokens."""
    paragraphs: list[str] = []
    while count_tokens("\n\n".join(paragraphs)) < tokens:
        paragraphs.append(words(rng, 120).capitalize() + ".")
    return "\n\n".join(paragraphs)


def synthetic_task(rng: random.Random) -> DrbTask:
    criteria = {
        dimension: [
            DrbCriterion(criterion=words(rng, 7).capitalize(), explanation=words(rng, 30), weight=1 / n)
            for _ in range(n)
        ]
        for dimension, n in CRITERIA_PER_DIMENSION.items()
    }
    return DrbTask(
        task_id="1",
        prompt="Assess " + words(rng, 40) + "?",
        dimension_weight={dimension: 0.25 for dimension in criteria},
        criteria=criteria,
    )


def ours(task: DrbTask, target: str, reference: str) -> tuple[int, int]:
    prompt = race_prompt_tokens(task, target, reference, language="en")
    reply = {
        dimension: [{"criterion": n, "article_1": 6.5, "article_2": 7.0} for n in range(1, len(items) + 1)]
        for dimension, items in task.criteria.items()
    }
    return prompt, count_tokens(json.dumps(reply))


def official(task: DrbTask, target: str, reference: str, rng: random.Random) -> tuple[int, int, int]:
    """(prompt, completion, cleaning call) tokens of the official grader for one task."""
    criteria_list = json.dumps(
        {
            dimension: [{"criterion": c.criterion, "explanation": c.explanation} for c in items]
            for dimension, items in task.criteria.items()
        },
        ensure_ascii=False,
        indent=2,
    )
    prompt = OFFICIAL_TEMPLATE_TOKENS + sum(
        count_tokens(text) for text in (task.prompt, target, reference, criteria_list)
    )
    reply = {
        dimension: [
            {
                "criterion": c.criterion,
                "analysis": words(rng, ANALYSIS_WORDS),
                "article_1_score": 6.5,
                "article_2_score": 7.0,
            }
            for c in items
        ]
        for dimension, items in task.criteria.items()
    }
    completion = count_tokens(json.dumps(reply, ensure_ascii=False, indent=4))
    cleaning = 2 * count_tokens(target)
    return prompt, completion, cleaning


def main() -> None:
    rng = random.Random(20261202)
    task = synthetic_task(rng)
    ratio_at_6k = 0.0
    print("article tokens | ours in/out/total | official in/out/total | +cleaning | ours/official")
    print("(ours/official: without the official cleaning call, then with it)")
    for size in (2_000, 6_000, 12_000):
        target, reference = article(rng, size), article(rng, size)
        our_in, our_out = ours(task, target, reference)
        off_in, off_out, cleaning = official(task, target, reference, rng)
        our_total, off_total = our_in + our_out, off_in + off_out
        ratio, ratio_cleaning = our_total / off_total, our_total / (off_total + cleaning)
        if size == 6_000:
            ratio_at_6k = ratio
        print(
            f"{size:>14} | {our_in}/{our_out}/{our_total} | {off_in}/{off_out}/{off_total} | "
            f"{off_total + cleaning} | {ratio:.3f}, {ratio_cleaning:.3f}"
        )
    print(f"ratio_vs_official={ratio_at_6k:.3f}")


if __name__ == "__main__":
    main()
