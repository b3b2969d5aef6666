"""Stable-Baselines3 helpers: shaped vector envs, true-return logging, evaluation on the task.

Scores always come from ``info["env_reward"]`` (the task's own reward), never the shaped one.

>>> from stable_baselines3 import PPO
>>> venv = make_vec_env("Align/KeyDoor-5x5-v0", n_envs=4, shaping="pbrs(potential=reference)", gamma=0.99)
>>> model = PPO("MlpPolicy", venv, gamma=0.99, n_steps=64, verbose=0)
>>> _ = model.learn(256, callback=RewardTermsCallback())
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

import align_gym  # noqa: F401  (registers the Align/ ids)

from ..wrappers.registry import ShapingSpec, shape_vec_env
from ..wrappers.terms import EPISODE_SUMMARY


def make_vec_env(
    env_id: str | Callable[[], gym.Env],
    n_envs: int = 8,
    shaping: str | ShapingSpec | None = None,
    *,
    gamma: float | None = None,
    seed: int = 0,
    vec_env_cls: type[VecEnv] = DummyVecEnv,
    env_kwargs: dict[str, Any] | None = None,
) -> VecEnv:
    """An SB3 VecEnv of ``n_envs`` copies of ``env_id`` with ``shaping`` applied once per vector step.

    ``shaping`` is a spec (``"pbrs(potential=reference)"``; ``None`` means ``"none"``) and
    ``gamma`` must be the discount the agent uses: pass the same value to both.
    Every step's info keeps ``env_reward``, ``reward_terms`` and, at episode end, ``episode_summary``.
    """
    venv = sb3_make_vec_env(env_id, n_envs=n_envs, seed=seed, vec_env_cls=vec_env_cls, env_kwargs=env_kwargs)
    return shape_vec_env(venv, shaping or "none", gamma=gamma)


class RewardTermsCallback(BaseCallback):
    """Logs the true return, success rate, shaped return and every reward term to SB3's logger
    (means over the last ``window`` episodes, under ``align/``)."""

    def __init__(self, window: int = 100, verbose: int = 0):
        super().__init__(verbose)
        self.episodes: deque[dict[str, Any]] = deque(maxlen=window)

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            if EPISODE_SUMMARY in info:
                self.episodes.append(info[EPISODE_SUMMARY])
        return True

    def _on_rollout_end(self) -> None:
        if not self.episodes:
            return
        self.logger.record("align/true_return", float(np.mean([e["true_return"] for e in self.episodes])))
        self.logger.record("align/shaped_return", float(np.mean([e["shaped_return"] for e in self.episodes])))
        successes = [e["success"] for e in self.episodes if e["success"] is not None]
        if successes:
            self.logger.record("align/success_rate", float(np.mean(successes)))
        for name in sorted({n for e in self.episodes for n in e["terms"]}):
            self.logger.record(f"align/term_{name}", float(np.mean([e["terms"].get(name, 0.0) for e in self.episodes])))


@dataclass
class Evaluation:
    """Scores of a policy on the unshaped task."""

    mean_return: float
    std_return: float
    success_rate: float
    mean_length: float


def evaluate(model: BaseAlgorithm, env_id: str, n_episodes: int = 10, seed: int = 10_000,
             deterministic: bool = True, env_kwargs: dict[str, Any] | None = None) -> Evaluation:
    """Run ``n_episodes`` on fresh, unshaped copies of ``env_id`` and score them by the task reward.

    The episodes run side by side (one batched policy call per step), episode ``k`` seeded with
    ``seed + k``. Action masks are passed where the env offers ``action_masks()``
    (sb3-contrib's MaskablePPO).
    """
    envs = [gym.make(env_id, **(env_kwargs or {})) for _ in range(n_episodes)]
    obs = [env.reset(seed=seed + k)[0] for k, env in enumerate(envs)]
    returns, lengths = np.zeros(n_episodes), np.zeros(n_episodes, dtype=int)
    successes = np.zeros(n_episodes, dtype=bool)
    running = list(range(n_episodes))
    # Masks go to agents that take them (MaskablePPO); plain SB3 agents ignore the env's masks.
    masked = hasattr(envs[0].unwrapped, "action_masks") and "action_masks" in inspect.signature(model.predict).parameters
    while running:
        kwargs = {"action_masks": np.stack([envs[k].unwrapped.action_masks() for k in running])} if masked else {}
        actions, _ = model.predict(np.stack([obs[k] for k in running]), deterministic=deterministic, **kwargs)
        still_running = []
        for k, action in zip(running, actions):
            obs[k], reward, terminated, truncated, info = envs[k].step(action)
            returns[k] += float(reward)
            lengths[k] += 1
            if terminated or truncated:
                successes[k] = bool(info.get("success", False))
            else:
                still_running.append(k)
        running = still_running
    for env in envs:
        env.close()
    return Evaluation(float(returns.mean()), float(returns.std()), float(successes.mean()), float(lengths.mean()))


class TaskEvalCallback(BaseCallback):
    """Every ``eval_every`` env steps, scores the policy on the unshaped task and keeps a row
    (``step``, true return mean and std, success rate) in ``self.rows``; ``on_row`` sees each."""

    def __init__(self, env_id: str, eval_every: int, n_episodes: int = 10, seed: int = 10_000,
                 on_row: Callable[[dict[str, Any]], None] | None = None, env_kwargs: dict[str, Any] | None = None):
        super().__init__(0)
        self.env_id, self.eval_every, self.n_episodes, self.seed = env_id, eval_every, n_episodes, seed
        self.on_row, self.env_kwargs = on_row, env_kwargs
        self.rows: list[dict[str, Any]] = []
        self._next_eval = 0

    def _on_training_start(self) -> None:
        self._evaluate()

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next_eval:
            self._evaluate()
        return True

    def _on_training_end(self) -> None:
        if not self.rows or self.rows[-1]["step"] != self.num_timesteps:
            self._evaluate()

    def _evaluate(self) -> None:
        result = evaluate(self.model, self.env_id, self.n_episodes, self.seed, env_kwargs=self.env_kwargs)
        row = {"step": int(self.num_timesteps), "return_mean": result.mean_return,
               "return_std": result.std_return, "success_rate": result.success_rate}
        self.rows.append(row)
        if self.on_row is not None:
            self.on_row(row)
        self._next_eval = self.num_timesteps + self.eval_every
