"""Episodic rewards: any env's reward withheld and paid as the episode's sum on its last step.

With :class:`EpisodicReward` the agent learns only each episode's total, at its end: the delayed
reward that credit assignment (IRCR, RRD, LaRe, CALM) turns back into per-step rewards. The task
is now the episodic one, so ``info["env_reward"]`` is the withheld reward (0 until the last step,
then the sum), and ``info["dense_reward"]`` keeps the original per-step reward for analysis. The
sum over an episode is unchanged, on termination and on truncation alike.

>>> import gymnasium as gym, align_gym
>>> env = EpisodicReward(gym.make("Align/KeyDoorSubgoals-v0"))
>>> _ = env.reset(seed=0)
>>> _, reward, *_, info = env.step(0)
>>> reward, info["env_reward"], info["dense_reward"]
(0.0, 0.0, 0.0)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium.utils import RecordConstructorArgs

from .terms import ENV_REWARD

DENSE_REWARD = "dense_reward"


class EpisodicReward(gym.Wrapper, RecordConstructorArgs):
    """Withholds every reward and pays the episode's sum on its last step; see the module docstring."""

    def __init__(self, env: gym.Env):
        RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self._withheld = 0.0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._withheld = 0.0
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._withheld += float(reward)
        paid = self._withheld if terminated or truncated else 0.0
        info[DENSE_REWARD] = float(reward)
        info[ENV_REWARD] = paid  # the episodic task's own reward: shaping layers above keep it
        return obs, paid, terminated, truncated, info


def episodic_task(env_id: str, **kwargs: Any) -> EpisodicReward:
    """The entry point of the registered episodic ids: ``env_id`` made with ``kwargs``, its reward
    withheld. (A function, not a wrapper class: gymnasium reads an entry point's ``metadata``, and a
    wrapper's belongs to the env it wraps.)"""
    return EpisodicReward(gym.make(env_id, **kwargs))


def _episodic_task_of(env_id: str, **kwargs: Any) -> str:
    from ..registration import ENV_TABLE

    entry, defaults = ENV_TABLE[env_id]
    module_name, _, class_name = entry.partition(":")
    base = getattr(__import__(module_name, fromlist=[class_name]), class_name)
    return base.task_of(**{**defaults, **kwargs}) + " Episodic: the reward comes as the episode's sum at its end."


episodic_task.task_of = _episodic_task_of  # type: ignore[attr-defined]  (what `align-gym list` reads)
