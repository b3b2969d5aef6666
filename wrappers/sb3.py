"""The Stable-Baselines3 adapter of the shaping core (see :mod:`align_gym.wrappers.core`).

SB3 vector envs reset a finished sub-env inside ``step`` and return the reset observation; the true
final observation arrives in ``infos[i]["terminal_observation"]`` and the reset info in the base
VecEnv's ``reset_infos[i]`` (SB3's own wrappers keep theirs empty, so it is read from
``venv.unwrapped``, and this wrapper keeps its own current for the layers above it). Truncation is
flagged by ``infos[i]["TimeLimit.truncated"]``. This module imports SB3 (and torch): import it
where it is used; ``align_gym.wrappers`` loads it only when one of its names is asked for.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from .core import ModuleDriver, TransitionBatch
from .potential import make_potential_reward
from .terms import ENV_REWARD, EPISODE_SUMMARY, EpisodeTracker
from .vector import copy_obs, obs_rows


class ShapingVecEnvWrapper(VecEnvWrapper):
    """Adds ``module``'s term to an SB3 VecEnv's rewards, one module call per vector step.

    Stacks with other shaping layers and over SB3's ``VecMonitor``; put ``VecNormalize`` on top,
    so that potentials read raw observations (``get_original_reward()`` then returns the shaped
    reward). A learning module is updated at each rollout's end for on-policy agents when
    :class:`~align_gym.agents.RewardTermsCallback` is passed to ``learn``, and every
    ``module.update_every`` transitions otherwise.

    >>> from stable_baselines3.common.env_util import make_vec_env
    >>> venv = ShapingVecEnvWrapper(make_vec_env("CartPole-v1", n_envs=2), module=None)
    >>> _ = venv.reset()
    >>> _, rewards, _, infos = venv.step(np.array([0, 1]))
    >>> bool(rewards[0] == infos[0]["env_reward"])
    True
    """

    def __init__(self, venv: VecEnv, module: Any):
        super().__init__(venv)
        self.driver = ModuleDriver(module)
        n = venv.num_envs
        self._tracker = EpisodeTracker(n)
        self._obs: Any = None
        self._states: list[dict[str, Any]] = [{} for _ in range(n)]
        self._actions: Any = None

    @property
    def module(self) -> Any:
        return self.driver.module

    def close(self) -> None:
        self.driver.close()
        self.venv.close()

    def _reset_infos(self) -> list[dict[str, Any]]:
        # The base VecEnv keeps them; SB3's wrappers (VecMonitor, VecNormalize) keep theirs empty.
        infos = list(getattr(self.venv.unwrapped, "reset_infos", None) or [{}] * self.num_envs)
        self.reset_infos = infos
        return infos

    def reset(self):
        obs = self.venv.reset()
        self._obs = obs_rows(copy_obs(obs), self.num_envs)
        reset_infos = self._reset_infos()
        self._states = [info.get("state", {}) for info in reset_infos]
        for i in range(self.num_envs):
            self._tracker.restart(i)
        self._start_episodes(range(self.num_envs), obs, reset_infos)
        return obs

    def _start_episodes(self, indices: Any, obs: Any, reset_infos: list[dict[str, Any]]) -> None:
        indices = list(indices)
        if self.driver.hears_starts and indices:
            rows = obs_rows(obs, self.num_envs)
            self.driver.start_episodes(self._tracker.episode_ids[indices].copy(), [rows[i] for i in indices],
                                       [reset_infos[i].get("caption", "") for i in indices],
                                       [self._states[i] for i in indices],
                                       **{f: [reset_infos[i].get(key, "") for i in indices]
                                          for f, key in self.driver.extra_texts.items()})

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions
        self.venv.step_async(actions)

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        n = self.num_envs
        term = self._module_terms(obs, dones, infos, rewards) if self.driver.module is not None else np.zeros(n)
        shaped = np.array([self._tracker.record(i, infos[i], rewards[i], self.driver.name, term[i]) for i in range(n)],
                          dtype=np.float32)
        ended = np.flatnonzero(dones)
        for i in ended:
            infos[i][EPISODE_SUMMARY] = self._tracker.finish(i, infos[i].get("success")).as_dict()
        if self.driver.module is not None:
            # What the next step's transitions start from: the reset state where an episode ended.
            reset_infos = self._reset_infos() if len(ended) else None
            self._states = [reset_infos[i].get("state", {}) if dones[i] else infos[i].get("state", {})
                            for i in range(n)]  # a new list: the batch logged above keeps the old one
            if len(ended):
                self._start_episodes(ended, obs, reset_infos)
        return obs, shaped, dones, infos

    def _module_terms(self, obs: Any, dones: np.ndarray, infos: list[dict[str, Any]], rewards: np.ndarray) -> np.ndarray:
        """The module's term for each sub-env's transition (the true final observation where an
        episode ended); keeps this step's observations for the next one."""
        n = self.num_envs
        truncated = np.array([bool(info.get("TimeLimit.truncated", False)) for info in infos])
        terminated = np.asarray(dones, dtype=bool) & ~truncated
        rows = obs_rows(copy_obs(obs), n)  # a copy: modules may keep the rows in their logs
        batch = TransitionBatch(
            obs=self._obs, actions=list(self._actions),
            next_obs=[infos[i]["terminal_observation"] if dones[i] else rows[i] for i in range(n)],
            captions=[info.get("caption", "") for info in infos], states=self._states,
            next_states=[info.get("state", {}) for info in infos],
            env_rewards=np.array([info.get(ENV_REWARD, rewards[i]) for i, info in enumerate(infos)], dtype=np.float64),
            terminated=terminated, truncated=truncated, episode_ids=self._tracker.episode_ids.copy(),
            **{f: [info.get(key, "") for info in infos] for f, key in self.driver.extra_texts.items()},
        )
        self._obs = rows
        return np.asarray(self.driver.reward(batch), dtype=np.float64)


class PotentialShapingVecEnv(ShapingVecEnvWrapper):
    """Potential-based shaping of an SB3 VecEnv (see :class:`~align_gym.wrappers.PotentialShaping`).

    >>> from stable_baselines3.common.env_util import make_vec_env
    >>> venv = PotentialShapingVecEnv(make_vec_env("CartPole-v1", n_envs=2), potential=lambda o: -abs(o[2]), gamma=0.99)
    """

    def __init__(self, venv: VecEnv, potential, gamma: float, scale: float = 1.0, name: str = "pbrs",
                 source: str | None = None, on_nonfinite: str = "raise"):
        super().__init__(venv, make_potential_reward(venv, potential, gamma, scale, name, source, on_nonfinite))
