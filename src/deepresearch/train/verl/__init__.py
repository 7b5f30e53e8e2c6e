"""The verl recipe for agentic RL on a Ray cluster: PPO with a critic, GAE with γ = λ = 1, multi-turn
rollouts that call our own tools, and a terminal reward from our judge's strict mapping.

verl trains; this package only gives it what it cannot know: the dataset (``prepare.py``: rubric
tasks → verl's parquet rows, with our system prompt), the config (``ppo.yaml``, composed over verl's
own ``ppo_trainer``), the tool config (``tools.yaml`` naming ``tools.py``'s classes) and the reward
function (``reward.py``). verl pins transformers below what our ``train`` extra uses, so it lives in a
venv of its own (``.ci/verl-env``); every module here except ``tools.py`` imports without verl, so
the dataset and the reward are built and tested in the main environment.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

CONFIG_NAME = "ppo"
"""The Hydra config name of the recipe (``ppo.yaml`` beside this module)."""


def recipe_file(name: str) -> Path:
    """A file shipped with the recipe (``ppo.yaml``, ``tools.yaml``)."""
    return Path(str(resources.files(__name__).joinpath(name)))
