"""verl's custom reward function: the final report of a rollout graded against its task's rubrics.

verl calls ``compute_score(data_source, solution_str, ground_truth, extra_info)`` once per rollout
(``reward.custom_reward_function`` in ``ppo.yaml``; its naive reward manager runs a sync function in a
thread pool). ``solution_str`` is the whole decoded response — every assistant turn and every tool
result, with the chat template's special tokens dropped — and the reward is terminal: the report in
the last assistant turn, graded by ``deepresearch.judge.reward`` with the strict mapping.

``ground_truth`` carries the task's rubrics as JSON and ``extra_info`` its id and question
(``prepare.py`` writes both). A judge failure never raises a reward: failed rubrics take the worst
verdict (``on_failure="worst"``), and a rollout that ends without a report (its last turn is a tool
call, or it is empty) gets that same worst case without asking the judge. The judge's endpoint comes
from ``Settings`` (``judge_model``, ``judge_base_url``, ``judge_api_key``: ``DEEPRESEARCH_JUDGE_*`` in
the workers' environment); one client is built per process and reused, as ``reward_sync`` requires.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from deepresearch.config import Settings, load_settings
from deepresearch.errors import ConfigError
from deepresearch.judge.grader import Judge
from deepresearch.judge.records import JudgeRecord
from deepresearch.judge.reward import reward_sync, strict_reward
from deepresearch.judge.rubrics import Rubric
from deepresearch.report import extract_answer

_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|\Z)", re.S | re.I)
_TOOL_RESPONSE_END = "</tool_response>"
_TOOL_CALL = "<tool_call>"
_ROLE_LINE = re.compile(r"\A\s*(?:assistant|user|tool)\s*\n")
"""A role name the template wrote after a dropped ``<|im_start|>`` (decoded with special tokens skipped)."""


def final_report(solution: str) -> str:
    """The report in the last assistant turn of a decoded rollout, or ``""`` when it has none.

    The last turn is what follows the last tool result. Its ``<answer>`` span is the report (the
    system prompt asks for one); without one, the turn's text without its reasoning is, as the agent
    loop accepts it. A last turn that calls a tool was cut off (turn or length budget): no report.
    """
    cut = solution.rfind(_TOOL_RESPONSE_END)
    last = solution[cut + len(_TOOL_RESPONSE_END) :] if cut >= 0 else solution
    answers = _ANSWER.findall(last)
    if answers:
        return str(answers[-1]).strip()
    if _TOOL_CALL in last:
        return ""
    return extract_answer(_ROLE_LINE.sub("", last))


def parse_rubrics(ground_truth: str | list[Any]) -> list[Rubric]:
    """The rubrics ``prepare.py`` stored as ``reward_model.ground_truth`` (a JSON list)."""
    items = json.loads(ground_truth) if isinstance(ground_truth, str) else ground_truth
    if not isinstance(items, list) or not items:
        raise ConfigError("ground_truth must be a non-empty JSON list of rubrics")
    rubrics = [Rubric.model_validate(item) for item in items]
    if not any(rubric.weight > 0 for rubric in rubrics):
        raise ConfigError("ground_truth has no rubric with a positive weight: there is no reward scale")
    return rubrics


def worst_reward(rubrics: list[Rubric], task_id: str, why: str) -> float:
    """The reward of a report every rubric failed on: what a rollout without a report earns."""
    records = [
        JudgeRecord(
            task_id=task_id,
            criterion=r.criterion,
            weight=r.weight,
            role=r.role or "explicit",
            fatal=r.fatal,
            failed=True,
            error=why,
        )
        for r in rubrics
    ]
    return strict_reward(records, on_failure="worst")


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: str,
    extra_info: dict[str, Any] | None = None,
    **_: Any,
) -> float:
    """verl's reward for one rollout: the strict reward of its final report (see the module docstring)."""
    info = extra_info or {}
    rubrics = parse_rubrics(ground_truth)
    task_id = str(info.get("task_id") or data_source or "reward")
    report = final_report(solution_str)
    if not report:
        return worst_reward(rubrics, task_id, "the rollout ended without a report")
    return reward_sync(
        report,
        rubrics,
        rollout_judge(),
        task_prompt=str(info.get("question") or ""),
        task_id=task_id,
        on_failure="worst",
    )


_JUDGE_LOCK = threading.Lock()
_JUDGE: dict[str, Judge] = {}
"""The process's one judge, under ``"judge"``."""


def rollout_judge() -> Judge:
    """The process's one judge, from ``Settings`` (environment and config file), built on first use.

    verl's reward manager calls ``compute_score`` from a thread pool; the lock keeps two first calls
    from building two clients."""
    with _JUDGE_LOCK:
        if "judge" not in _JUDGE:
            _JUDGE["judge"] = build_judge(load_settings())
        return _JUDGE["judge"]


def drop_rollout_judge() -> Judge | None:
    """Forget the process's judge, so that the next reward builds one from the settings as they are
    then; returns it, for the caller to close its client."""
    with _JUDGE_LOCK:
        return _JUDGE.pop("judge", None)


def build_judge(settings: Settings) -> Judge:
    """A judge on the ``judge_*`` endpoint of ``settings`` (falling back to the agent's)."""
    from deepresearch.judge.commands import judge_client

    return Judge(judge_client(settings))
