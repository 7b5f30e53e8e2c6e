"""The Checklist-style Judger: rubric grading, ResearchRubrics scoring, and the strict RL reward.

    from deepresearch.judge import Judge, reward
    score = await reward(report, task.rubrics, Judge(client), task_prompt=task.prompt)

Names are imported on first use, so importing the package costs nothing.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deepresearch.judge.cache import JudgeCache
    from deepresearch.judge.grader import Judge
    from deepresearch.judge.loaders import load_reports, load_tasks
    from deepresearch.judge.records import JudgeRecord
    from deepresearch.judge.reward import reward, reward_sync
    from deepresearch.judge.rubrics import Rubric, Task
    from deepresearch.judge.scoring import benchmark_score, task_score

__all__ = [
    "Judge",
    "JudgeCache",
    "JudgeRecord",
    "Rubric",
    "Task",
    "benchmark_score",
    "load_reports",
    "load_tasks",
    "reward",
    "reward_sync",
    "task_score",
]

_WHERE = {
    "Judge": "grader",
    "JudgeCache": "cache",
    "JudgeRecord": "records",
    "Rubric": "rubrics",
    "Task": "rubrics",
    "benchmark_score": "scoring",
    "load_reports": "loaders",
    "load_tasks": "loaders",
    "reward": "reward",
    "reward_sync": "reward",
    "task_score": "scoring",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"deepresearch.judge.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'deepresearch.judge' has no attribute {name!r}")
