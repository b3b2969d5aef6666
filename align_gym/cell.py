"""One training run ("cell"): an env, a shaping, an SB3 agent and a seed, scored on the task.

The agent trains on the shaped env and is evaluated every ``eval_every`` steps on the unshaped
task, by the task reward alone. The demo and the bench run cells; nothing here prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

ALGORITHMS = {"ppo": "stable_baselines3:PPO", "a2c": "stable_baselines3:A2C", "dqn": "stable_baselines3:DQN",
              "sac": "stable_baselines3:SAC", "maskable_ppo": "sb3_contrib:MaskablePPO"}


@dataclass
class Cell:
    """What one run trains: ``env_id`` with ``shaping`` by ``agent`` for ``steps`` env steps."""

    env_id: str
    shaping: str
    agent: str
    seed: int
    steps: int
    eval_every: int
    eval_episodes: int = 10
    n_envs: int = 8
    hyperparams: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_algorithm(name: str):
    if name not in ALGORITHMS:
        raise ValueError(f"unknown agent {name!r}; choose one of {', '.join(ALGORITHMS)}")
    module_name, _, class_name = ALGORITHMS[name].partition(":")
    try:
        module = __import__(module_name, fromlist=[class_name])
    except ImportError as error:
        raise ImportError(f"agent {name!r} needs {module_name}: pip install 'align-gym[contrib]'") from error
    return getattr(module, class_name)


def run_cell(cell: Cell, on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Train and evaluate one cell; returns its eval rows (also passed to ``on_row`` as they come)."""
    import torch

    from .agents.sb3 import RewardTermsCallback, TaskEvalCallback, make_vec_env

    torch.set_num_threads(1)  # cells run side by side, one core each
    hyper = dict(cell.hyperparams)
    gamma = hyper.setdefault("gamma", 0.99)  # one gamma for the agent and the shaping
    venv = make_vec_env(cell.env_id, n_envs=cell.n_envs, shaping=cell.shaping, gamma=gamma, seed=cell.seed)
    model = load_algorithm(cell.agent)("MlpPolicy", venv, seed=cell.seed, device="cpu", verbose=0, **hyper)
    terms = RewardTermsCallback()

    def add_training_stats(row: dict[str, Any]) -> None:
        episodes = list(terms.episodes)
        row["train_true_return"] = float(np.mean([e["true_return"] for e in episodes])) if episodes else None
        row["train_shaped_return"] = float(np.mean([e["shaped_return"] for e in episodes])) if episodes else None
        names = sorted({n for e in episodes for n in e["terms"]})
        row["train_terms"] = {n: float(np.mean([e["terms"].get(n, 0.0) for e in episodes])) for n in names}
        row.update({k: v for k, v in cell.as_dict().items() if k in ("env_id", "shaping", "agent", "seed")})
        if on_row is not None:
            on_row(row)

    evaluator = TaskEvalCallback(cell.env_id, cell.eval_every, cell.eval_episodes, seed=10_000 + 1000 * cell.seed,
                                 on_row=add_training_stats)
    model.learn(cell.steps, callback=[terms, evaluator])
    venv.close()
    return evaluator.rows
