"""One shaping core, three adapters: the batch and reward-module protocol, and the gymnasium adapter.

A reward module computes shaping terms for a batch of transitions
(``module.reward(batch) -> np.ndarray[n]``). The adapters — :class:`ShapingWrapper` here,
:class:`~align_gym.wrappers.vector.ShapingVectorWrapper` for gymnasium vector envs and
:class:`~align_gym.wrappers.sb3.ShapingVecEnvWrapper` for Stable-Baselines3 — turn env steps into
batches, call the module once per (vector) step and keep the reward-terms contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from .terms import ENV_REWARD, EPISODE_SUMMARY, REWARD_TERMS, EpisodeTracker, record_terms


@dataclass
class TransitionBatch:
    """``n`` transitions, one per row. ``states``/``next_states`` are ``info["state"]`` dicts
    (empty dicts for envs without one); ``next_obs`` is the true final observation at an
    episode's end, never the reset one. Fields are sequences of length ``n`` (numpy arrays from
    the vector adapters, plain lists from the single-env one, where numpy would cost more than
    the step)."""

    obs: Sequence[Any]
    actions: Sequence[Any]
    next_obs: Sequence[Any]
    captions: list[str]
    states: list[dict[str, Any]]
    next_states: list[dict[str, Any]]
    env_rewards: Sequence[float]
    terminated: Sequence[bool]
    truncated: Sequence[bool]
    episode_ids: Sequence[int]

    def __len__(self) -> int:
        return len(self.env_rewards)


@runtime_checkable
class RewardModule(Protocol):
    """A shaping term computed batch-first. ``invariant`` says whether it provably keeps the
    optimal policy (potential-based shaping does; intrinsic bonuses do not)."""

    name: str
    invariant: bool

    def reward(self, batch: TransitionBatch) -> np.ndarray: ...


class ShapingWrapper(gym.Wrapper):
    """Adds ``module``'s term to each step's reward and keeps the reward-terms contract.

    With ``module=None`` it only records ``info["env_reward"]``, ``info["reward_terms"]`` and the
    episode summary: the "no shaping" baseline, reported the same way as every method.

    >>> import gymnasium as gym
    >>> env = ShapingWrapper(gym.make("CartPole-v1"), module=None)
    >>> _ = env.reset(seed=0)
    >>> _, reward, *_, info = env.step(0)
    >>> reward == info["env_reward"]
    True
    """

    def __init__(self, env: gym.Env, module: RewardModule | None):
        super().__init__(env)
        self.module = module
        self._name = None if module is None else module.name
        self._tracker = EpisodeTracker(1)
        self._obs: Any = None
        self._state: dict[str, Any] = {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._obs, self._state = obs, info.get("state", {})
        self._tracker.restart(0)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        state = info.get("state", {})
        term = 0.0
        if self.module is not None:
            batch = TransitionBatch(
                obs=[self._obs], actions=[action], next_obs=[obs], captions=[info.get("caption", "")],
                states=[self._state], next_states=[state], env_rewards=[info.get(ENV_REWARD, reward)],
                terminated=[terminated], truncated=[truncated], episode_ids=[self._tracker.episode_ids[0]],
            )
            term = float(self.module.reward(batch)[0])
        shaped = record_terms(info, reward, self._name, term)
        self._tracker.add(0, info[ENV_REWARD], shaped, info[REWARD_TERMS])
        self._obs, self._state = obs, state
        if terminated or truncated:
            info[EPISODE_SUMMARY] = self._tracker.finish(0, info.get("success")).as_dict()
        return obs, shaped, terminated, truncated, info
