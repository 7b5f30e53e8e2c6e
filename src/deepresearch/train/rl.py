"""`train rl`: agentic RL on one machine — TRL's GRPO whose rollouts are our own agent, rewarded by the judge.

A rollout is ``deepresearch.research.research`` — the same loop, tools, context policy and stops as
``deepresearch research`` — talking to the policy through ``policy.PolicyServer``, which keeps the exact
tokens the policy saw and wrote and marks the environment's tokens (tool results, turn ends) so they
stay out of the loss (TRL's ``env_mask``). Each rollout is a real run directory under
``<output_dir>/rollouts/step-NNNNN/``; searches go through a cache file shared by every rollout
(``search_cache``), so identical queries are answered once and rollouts compare like with like; the
agent's budgets (``rollout_max_steps``, ``rollout_max_tokens``) bound each rollout.

The reward is terminal and comes only from the Checklist judge's strict mapping
(``deepresearch.judge.reward``): a judge failure counts against the report (``on_failure="worst"``), and a
rollout that wrote no report gets the task's floor (every flaw present, nothing satisfied), so failing
never pays better than trying. GRPO's group baseline replaces PPO's critic here; with γ = λ = 1 and one
terminal reward the two estimators differ only in the baseline (``advantages.py`` has both, tested).

Per step, ``metrics.jsonl`` gets TRL's log (``reward``, ``reward_std``, ``loss``, ``kl``…) and
``rollouts.jsonl`` one line per rollout (task, run directory, reward, its group advantage, tokens
generated, calls).
"""

from __future__ import annotations

import asyncio
import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr

from deepresearch.config import Settings
from deepresearch.errors import ConfigError
from deepresearch.judge.rubrics import Task
from deepresearch.train.advantages import group_advantages
from deepresearch.train.recipe import TrainRecipe, read_recipe
from deepresearch.train.tiny import resolve_model
from deepresearch.train.trainer import (
    load_model,
    lora_config,
    metrics_callback,
    read_metrics,
    trainer_arguments,
)

logger = logging.getLogger(__name__)


class RlRecipe(TrainRecipe):
    """What `train rl` trains, on which tasks, with which rollouts; one TOML file, unknown keys refused."""

    tasks: Path
    """Rubric tasks (JSONL, as `judge grade` reads them): each task's prompt is the rollout's question."""
    index: Path | None = None
    """The local index the rollouts search (default: the configured one)."""
    search: str | None = None
    """Search backend for rollouts (default: the configured one)."""
    max_steps: int = Field(default=100, ge=1)
    learning_rate: float = Field(default=1e-6, gt=0.0)
    num_generations: int = Field(default=4, ge=2)
    """Rollouts per task and step: GRPO's group (the baseline is the group's mean reward)."""
    tasks_per_step: int = Field(default=1, ge=1)
    beta: float = Field(default=0.0, ge=0.0)
    """KL penalty to the initial policy (0: none, and no reference model is kept)."""
    temperature: float = Field(default=1.0, ge=0.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    max_length: int = Field(default=32768, ge=64)
    """Tokens the policy may see in one rollout (prompt, its own turns and tool results)."""
    max_new_tokens: int = Field(default=4096, ge=1)
    """Tokens per reply."""
    rollout_max_steps: int = Field(default=30, ge=1)
    rollout_max_tokens: int | None = Field(default=None, ge=1)
    """The agent's token budget for a rollout (all calls); unset: only ``max_length`` bounds it."""
    concurrency: int = Field(default=4, ge=1)
    """Rollouts run at once (their tool calls overlap; generation is one at a time)."""


def load_rl_recipe(path: Path, overrides: dict[str, Any] | None = None) -> RlRecipe:
    """The recipe in ``path`` with the CLI's ``overrides`` (None values ignored) laid over it."""
    return read_recipe(path, RlRecipe, overrides)


def load_rl_tasks(path: Path) -> list[Task]:
    """The tasks of ``path``; each needs a prompt and a positive rubric (else there is no reward scale)."""
    from deepresearch.judge.loaders import load_tasks

    loaded = load_tasks(path)
    if loaded.errors:
        raise ConfigError(f"{path}: " + "; ".join(str(error) for error in loaded.errors[:3]))
    tasks = [task for task in loaded.tasks if task.prompt.strip() and task.positive_weight > 0]
    if not tasks:
        raise ConfigError(f"{path}: no task with a prompt and a positive rubric to train on")
    return tasks


def floor_reward(task: Task) -> float:
    """The least reward the strict mapping can give ``task``: every flaw present, nothing satisfied."""
    negative = sum(rubric.weight for rubric in task.rubrics if rubric.weight < 0)
    return negative / task.positive_weight


@dataclass
class Rollout:
    """One finished rollout, as `rollouts.jsonl` records it."""

    step: int
    task: Task
    run_dir: Path
    report: str | None
    status: str
    generated: int
    calls: int
    segments: int
    overflowed: bool
    reward: float | None = None
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "task_id": self.task.task_id,
            "run_dir": str(self.run_dir),
            "status": self.status,
            "reward": self.reward,
            "generated_tokens": self.generated,
            "calls": self.calls,
            "segments": self.segments,
            "overflowed": self.overflowed,
            "report_chars": len(self.report or ""),
            **({"error": self.error} if self.error else {}),
        }


@dataclass
class Rollouts:
    """Runs our agent against the policy server for every prompt of a step (TRL's ``rollout_func``)."""

    server: Any
    settings: Settings
    recipe: RlRecipe
    tasks: dict[str, Task]
    out: Path
    finished: list[Rollout] = field(default_factory=list)
    """This step's rollouts, in prompt order, until the reward function has scored them."""
    total: int = 0
    reported: int = 0
    """Rollouts run, and those that wrote a report (a run where none did has taught nothing)."""

    def __call__(self, prompts: Sequence[Any], trainer: Any) -> dict[str, Any]:
        step = int(trainer.state.global_step) + 1
        self.finished = asyncio.run(self._run_all([str(prompt) for prompt in prompts], step))
        self.total += len(self.finished)
        self.reported += sum(1 for rollout in self.finished if (rollout.report or "").strip())
        prompt_ids, completion_ids, env_mask = [], [], []
        for rollout in self.finished:
            trajectory = self.server.trajectory(rollout.run_dir.name)
            self.server.forget(rollout.run_dir.name)
            if not trajectory.prompt_ids:
                raise RuntimeError(
                    f"rollout {rollout.run_dir} never reached the policy "
                    f"({rollout.error or rollout.status}); see its run directory"
                )
            completion, mask = trajectory.completion_ids, trajectory.env_mask
            if not completion:  # refused before it generated anything: one masked token keeps shapes
                completion, mask = [self.server.tokenizer.eos_token_id], [0]
            prompt_ids.append(trajectory.prompt_ids)
            completion_ids.append(completion)
            env_mask.append(mask)
            rollout.generated, rollout.calls = trajectory.generated, trajectory.calls
            rollout.segments, rollout.overflowed = trajectory.segments, trajectory.overflowed
        return {
            "prompt_ids": prompt_ids,
            "completion_ids": completion_ids,
            "logprobs": None,
            "env_mask": env_mask,
            "rollout_index": list(range(len(self.finished))),
        }

    async def _run_all(self, prompts: list[str], step: int) -> list[Rollout]:
        gate = asyncio.Semaphore(self.recipe.concurrency)
        folder = self.out / "rollouts" / f"step-{step:05d}"

        async def one(index: int, prompt: str) -> Rollout:
            async with gate:
                return await self._run_one(prompt, folder / f"r{index:03d}", step)

        return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts))))

    async def _run_one(self, prompt: str, run_dir: Path, step: int) -> Rollout:
        from deepresearch.research import research
        from deepresearch.runs import RunDir

        task = self._task(prompt)
        settings = self.settings.model_copy(
            update={"base_url": self.server.base_url(run_dir.name), "out": run_dir}
        )
        status, error = "failed", ""
        try:
            result = await research(task.prompt, settings)
            status = result.status
        except Exception as exc:  # the policy's fault (an overlong context) or the tools': no report
            error = f"{type(exc).__name__}: {exc}"
            logger.info("rollout %s ended without a report: %s", run_dir, error)
        report = RunDir.open(run_dir).report() if run_dir.exists() else None
        return Rollout(step, task, run_dir, report, status, 0, 0, 0, False, error=error)

    def _task(self, prompt: str) -> Task:
        task = self.tasks.get(prompt)
        if task is None:
            raise RuntimeError(f"a prompt that is not a task's: {prompt[:80]!r}")
        return task


def rollout_settings(settings: Settings, recipe: RlRecipe, server: Any) -> Settings:
    """The agent's settings in a rollout: the policy server as its model, the shared search cache,
    the recipe's budgets, and a context limit the policy's own ``max_length`` enforces instead."""
    update: dict[str, Any] = {
        "model": "policy",
        "api_key": SecretStr(server.api_key),
        "tool_mode": "native",
        "stream": False,
        "max_steps": recipe.rollout_max_steps,
        "max_total_tokens": recipe.rollout_max_tokens,
        "max_tokens": recipe.max_new_tokens,
        "search_cache": recipe.output_dir / "search-cache.sqlite",
        "context_upper": 1 << 40,  # compaction would break the token sequence; max_length ends the run
        "context_lower": 1 << 39,
    }
    if recipe.index is not None:
        update["index"] = recipe.index
    if recipe.search is not None:
        update["search"] = recipe.search
    chosen = settings.model_copy(update=update)
    if chosen.judge_base_url is None and chosen.base_url is None:
        raise ConfigError("the judge needs an endpoint: set --judge-base-url (and --judge-model)")
    return chosen


class JudgeReward:
    """TRL reward function: the strict reward of each rollout's report, graded concurrently."""

    __name__ = "judge_reward"

    def __init__(self, rollouts: Rollouts, judge: Any, log: Path, *, group_size: int) -> None:
        self.rollouts = rollouts
        self.group_size = group_size
        self.judge = judge
        self.log = log

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        from deepresearch.judge.reward import _run_in_background

        indices = kwargs.get("rollout_index") or list(range(len(prompts)))
        finished = [self.rollouts.finished[int(index)] for index in indices]
        rewards: list[float] = list(_run_in_background(self._grade_all(finished)))
        advantages = group_advantages(rewards, self.group_size) if len(rewards) % self.group_size == 0 else []
        with self.log.open("a", encoding="utf-8") as handle:
            for index, (rollout, value) in enumerate(zip(finished, rewards, strict=True)):
                rollout.reward = value
                line = rollout.to_dict() | ({"advantage": advantages[index]} if advantages else {})
                handle.write(json.dumps(line) + "\n")
        return list(rewards)

    async def _grade_all(self, finished: list[Rollout]) -> list[float]:
        return list(await asyncio.gather(*(self._grade(rollout) for rollout in finished)))

    async def _grade(self, rollout: Rollout) -> float:
        from deepresearch.judge.reward import reward
        from deepresearch.report import strip_references

        task = rollout.task
        body = strip_references(rollout.report or "").strip()
        if not body:
            return floor_reward(task)
        return await reward(
            body, task.rubrics, self.judge, task_prompt=task.prompt, task_id=task.task_id, on_failure="worst"
        )


@dataclass(frozen=True, slots=True)
class RlResult:
    output_dir: Path
    metrics_path: Path
    rollouts_path: Path
    steps: int
    rewards: list[float]
    """The mean reward of each logged step."""
    rollouts: int = 0
    reported: int = 0
    """Rollouts run, and those that wrote a report."""

    def describe(self) -> str:
        trend = ", ".join(f"{value:.3f}" for value in self.rewards[-5:]) or "none logged"
        return (
            f"{self.steps} steps, {self.reported} of {self.rollouts} rollouts wrote a report; mean reward "
            f"per step (last 5): {trend}; model in {self.output_dir}; metrics in {self.metrics_path}; "
            f"rollouts in {self.rollouts_path}"
        )


def run_rl(recipe: RlRecipe, settings: Settings, *, console: bool = True) -> RlResult:
    """Train ``recipe`` with TRL's GRPO, rollouts by our agent, reward by the judge ``settings`` name."""
    import datasets
    from transformers import PrinterCallback
    from trl.trainer.grpo_config import GRPOConfig
    from trl.trainer.grpo_trainer import GRPOTrainer

    from deepresearch.judge.commands import judge_client
    from deepresearch.judge.grader import Judge
    from deepresearch.judge.reward import _run_in_background
    from deepresearch.train.format import load_tokenizer
    from deepresearch.train.policy import PolicyServer, model_generator

    tasks = load_rl_tasks(recipe.tasks)  # a bad task file fails before a model is built or loaded
    recipe = recipe.model_copy(update={"model": resolve_model(recipe.model, recipe.output_dir)})
    by_prompt = {task.prompt: task for task in tasks}
    if len(by_prompt) < len(tasks):
        raise ConfigError(f"{recipe.tasks}: two tasks share a prompt; rollouts are matched to tasks by it")
    tokenizer = load_tokenizer(recipe.tokenizer_path)
    out = Path(recipe.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics_path, rollouts_path = out / "metrics.jsonl", out / "rollouts.jsonl"
    metrics_path.write_text("", encoding="utf-8")
    rollouts_path.write_text("", encoding="utf-8")

    model = load_model(recipe.model, dtype=recipe.dtype, max_length=recipe.max_length)
    batch = recipe.num_generations * recipe.tasks_per_step
    args = GRPOConfig(
        **trainer_arguments(recipe, out),
        learning_rate=recipe.learning_rate,
        max_steps=recipe.max_steps,
        per_device_train_batch_size=batch,
        num_generations=recipe.num_generations,
        max_completion_length=recipe.max_length,
        beta=recipe.beta,
        temperature=recipe.temperature,
        top_p=recipe.top_p,
    )
    dataset = datasets.Dataset.from_list([{"prompt": task.prompt} for task in tasks])
    with PolicyServer(
        tokenizer,
        model_generator(model, tokenizer, temperature=recipe.temperature, top_p=recipe.top_p),
        max_length=recipe.max_length,
        max_new_tokens=recipe.max_new_tokens,
    ) as server:
        rollouts = Rollouts(server, rollout_settings(settings, recipe, server), recipe, by_prompt, out)
        client = judge_client(settings)
        judge = Judge(client)
        with warnings.catch_warnings():  # rollout_func is "experimental": known, and TRL is pinned
            warnings.filterwarnings("ignore", message=".*rollout_func.*experimental", category=UserWarning)
            trainer = GRPOTrainer(
                model=model,
                reward_funcs=[JudgeReward(rollouts, judge, rollouts_path, group_size=recipe.num_generations)],
                args=args,
                train_dataset=dataset,
                processing_class=tokenizer,
                peft_config=lora_config(recipe.lora),
                rollout_func=rollouts,
                callbacks=[metrics_callback(metrics_path, console)],
            )
        # the policy being trained (PEFT-wrapped when LoRA is on) is what the server samples from
        server.generate = model_generator(
            trainer.model, tokenizer, temperature=recipe.temperature, top_p=recipe.top_p
        )
        trainer.remove_callback(PrinterCallback)
        try:
            with warnings.catch_warnings():  # TRL 1.16 still calls transformers' old checkpointing names
                warnings.filterwarnings("ignore", message=".*will be removed in v6.*", category=FutureWarning)
                trainer.train()
        finally:  # the judge's connections live on the rewards' loop: closed there
            _run_in_background(client.aclose())
    if recipe.save:
        trainer.save_model(str(out))
        tokenizer.save_pretrained(str(out))
    rewards = [float(line["reward"]) for line in read_metrics(metrics_path) if "reward" in line]
    steps = int(trainer.state.global_step)
    return RlResult(out, metrics_path, rollouts_path, steps, rewards, rollouts.total, rollouts.reported)
