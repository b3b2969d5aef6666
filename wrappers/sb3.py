"""The Stable-Baselines3 adapter of the shaping core (see :mod:`align_gym.wrappers.core`).

SB3 vector envs reset a finished sub-env inside ``step`` and return the reset observation; the true
final observation arrives in ``infos[i]["terminal_observation"]`` and the reset info in
``venv.reset_infos[i]``. Truncation is flagged by ``infos[i]["TimeLimit.truncated"]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from .core import RewardModule, TransitionBatch
from .potential import make_potential_reward
from .terms import ENV_REWARD, EPISODE_SUMMARY, EpisodeTracker, record_terms


class ShapingVecEnvWrapper(VecEnvWrapper):
    """Adds ``module``'s term to an SB3 VecEnv's rewards, one module call per vector step.

    >>> from stable_baselines3.common.env_util import make_vec_env
    >>> venv = ShapingVecEnvWrapper(make_vec_env("CartPole-v1", n_envs=2), module=None)
    >>> _ = venv.reset()
    >>> _, rewards, _, infos = venv.step(np.array([0, 1]))
    >>> bool(rewards[0] == infos[0]["env_reward"])
    True
    """

    def __init__(self, venv: VecEnv, module: RewardModule | None):
        super().__init__(venv)
        self.module = module
        n = venv.num_envs
        self._name = None if module is None else module.name
        self._tracker = EpisodeTracker(n)
        self._obs: Any = None
        self._states: list[dict[str, Any]] = [{} for _ in range(n)]
        self._actions: Any = None

    def _reset_states(self) -> list[dict[str, Any]]:
        reset_infos = getattr(self.venv, "reset_infos", None) or [{}] * self.num_envs
        return [dict(info).get("state", {}) for info in reset_infos]

    def reset(self):
        obs = self.venv.reset()
        self._obs = _copy(obs)
        self._states = self._reset_states()
        for i in range(self.num_envs):
            self._tracker.restart(i)
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions
        self.venv.step_async(actions)

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        n = self.num_envs
        truncated = np.array([bool(info.get("TimeLimit.truncated", False)) for info in infos])
        terminated = np.asarray(dones, dtype=bool) & ~truncated
        next_obs = [infos[i]["terminal_observation"] if dones[i] else _row(obs, i) for i in range(n)]
        env_rewards = np.array([info.get(ENV_REWARD, rewards[i]) for i, info in enumerate(infos)], dtype=np.float64)
        term = np.zeros(n)
        if self.module is not None:
            batch = TransitionBatch(
                obs=[_row(self._obs, i) for i in range(n)], actions=list(self._actions), next_obs=next_obs,
                captions=[info.get("caption", "") for info in infos], states=self._states,
                next_states=[info.get("state", {}) for info in infos], env_rewards=env_rewards,
                terminated=terminated, truncated=truncated, episode_ids=self._tracker.episode_ids.copy(),
            )
            term = np.asarray(self.module.reward(batch), dtype=np.float64)
        shaped = np.array([record_terms(infos[i], rewards[i], self._name, term[i]) for i in range(n)], dtype=np.float32)

        reset_states = self._reset_states() if dones.any() else None
        for i in range(n):
            self._tracker.add(i, infos[i][ENV_REWARD], shaped[i], infos[i]["reward_terms"])
            if dones[i]:
                infos[i][EPISODE_SUMMARY] = self._tracker.finish(i, infos[i].get("success")).as_dict()
                self._states[i] = reset_states[i]
            else:
                self._states[i] = infos[i].get("state", {})
        self._obs = _copy(obs)
        return obs, shaped, dones, infos


def _row(obs: Any, index: int) -> Any:
    if isinstance(obs, dict):
        return {k: v[index] for k, v in obs.items()}
    return obs[index]


def _copy(obs: Any) -> Any:
    if isinstance(obs, dict):
        return {k: np.copy(v) for k, v in obs.items()}
    return np.copy(obs)


class PotentialShapingVecEnv(ShapingVecEnvWrapper):
    """Potential-based shaping of an SB3 VecEnv (see :class:`~align_gym.wrappers.PotentialShaping`).

    >>> from stable_baselines3.common.env_util import make_vec_env
    >>> venv = PotentialShapingVecEnv(make_vec_env("CartPole-v1", n_envs=2), potential=lambda o: -abs(o[2]), gamma=0.99)
    """

    def __init__(self, venv: VecEnv, potential, gamma: float, scale: float = 1.0, name: str = "pbrs",
                 source: str | None = None):
        super().__init__(venv, make_potential_reward(venv, potential, gamma, scale, name, source))
