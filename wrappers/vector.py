"""The gymnasium vector adapter of the shaping core (see :mod:`align_gym.wrappers.core`).

Gymnasium's default next-step autoreset returns, on the step after an episode ends, the reset
observation with reward 0 and the action ignored. That step is not a transition: this adapter
gives it no term and does not pass it to the module. Same-step autoreset (final observation in
``info["final_obs"]``) is handled too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper

from .core import RewardModule, TransitionBatch
from .potential import make_potential_reward
from .terms import (
    ENV_REWARD,
    EPISODE_SUMMARY,
    REWARD_TERMS,
    EpisodeTracker,
    summaries_to_arrays,
    with_term,
)


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def info_item(infos: dict[str, Any], key: str, index: int, default: Any = None) -> Any:
    """Sub-env ``index``'s value of ``key`` in a vector env's info dict (nested dicts rebuilt)."""
    if key not in infos or not infos.get(f"_{key}", np.ones(index + 1, bool))[index]:
        return default
    value = infos[key]
    if isinstance(value, dict):
        return {k: info_item(value, k, index) for k in value if not k.startswith("_")}
    return _python(value[index])


class ShapingVectorWrapper(VectorWrapper):
    """Adds ``module``'s term to a vector env's rewards, one module call per vector step.

    >>> import gymnasium as gym
    >>> envs = ShapingVectorWrapper(gym.make_vec("CartPole-v1", num_envs=2), module=None)
    >>> _ = envs.reset(seed=0)
    >>> _, rewards, *_, infos = envs.step(envs.action_space.sample())
    >>> bool((rewards == infos["env_reward"]).all())
    True
    """

    def __init__(self, env: VectorEnv, module: RewardModule | None):
        super().__init__(env)
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ValueError(f"ShapingVectorWrapper supports next-step and same-step autoreset, not {mode}")
        self.same_step = mode == AutoresetMode.SAME_STEP
        self.module = module
        n = env.num_envs
        self._tracker = EpisodeTracker(n)
        self._needs_reset = np.zeros(n, dtype=bool)
        self._obs: Any = None
        self._states: list[dict[str, Any]] = [{} for _ in range(n)]

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        obs, infos = self.env.reset(seed=seed, options=options)
        n = self.num_envs
        self._obs = obs.copy() if isinstance(obs, np.ndarray) else list(obs)
        self._states = [info_item(infos, "state", i, {}) for i in range(n)]
        self._needs_reset[:] = False
        for i in range(n):
            self._tracker.restart(i)
        return obs, infos

    def step(self, actions):
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        n = self.num_envs
        done = np.asarray(terminated | truncated, dtype=bool)
        env_rewards = np.asarray(infos.get(ENV_REWARD, rewards), dtype=np.float64)
        real = np.flatnonzero(~self._needs_reset)  # next-step autoreset: the reset step is no transition
        # Where a transition's own info lives: same-step autoreset moves it to info["final_info"].
        step_infos = [infos["final_info"] if self.same_step and done[i] else infos for i in range(n)]
        next_states = [info_item(step_infos[i], "state", i, {}) for i in range(n)]

        term = np.zeros(n)
        if self.module is not None and len(real):
            batch = TransitionBatch(
                obs=[self._obs[i] for i in real], actions=[actions[i] for i in real],
                next_obs=[infos["final_obs"][i] if self.same_step and done[i] else obs[i] for i in real],
                captions=[info_item(step_infos[i], "caption", i, "") for i in real],
                states=[self._states[i] for i in real], next_states=[next_states[i] for i in real],
                env_rewards=env_rewards[real], terminated=np.asarray(terminated)[real],
                truncated=np.asarray(truncated)[real], episode_ids=self._tracker.episode_ids[real].copy(),
            )
            term[real] = self.module.reward(batch)
        shaped = np.asarray(rewards, dtype=np.float64) + term
        infos[ENV_REWARD] = env_rewards
        terms = with_term(infos.get(REWARD_TERMS), None if self.module is None else self.module.name, term)
        infos[REWARD_TERMS] = terms

        summaries: list = [None] * n
        for i in real:
            self._tracker.add(i, env_rewards[i], shaped[i], {k: v[i] for k, v in terms.items()})
            if done[i]:
                summaries[i] = self._tracker.finish(i, info_item(step_infos[i], "success", i))
        if any(s is not None for s in summaries):
            infos[EPISODE_SUMMARY], infos[f"_{EPISODE_SUMMARY}"] = summaries_to_arrays(summaries)

        # What the next step's transitions start from (finish() already gave ended envs a new
        # episode id; with next-step autoreset the reset step itself is skipped above).
        self._obs = obs.copy() if isinstance(obs, np.ndarray) else list(obs)
        self._states = [next_states[i] if not (self.same_step and done[i]) else info_item(infos, "state", i, {})
                        for i in range(n)]
        self._needs_reset = np.zeros(n, dtype=bool) if self.same_step else done
        return obs, shaped, terminated, truncated, infos


class PotentialShapingVector(ShapingVectorWrapper):
    """Potential-based shaping of a gymnasium vector env (see :class:`~align_gym.wrappers.PotentialShaping`).

    >>> import gymnasium as gym
    >>> envs = gym.make_vec("CartPole-v1", num_envs=2)
    >>> envs = PotentialShapingVector(envs, potential=lambda obs: -abs(obs[2]), gamma=0.99)
    """

    def __init__(self, env: VectorEnv, potential, gamma: float, scale: float = 1.0, name: str = "pbrs",
                 source: str | None = None):
        super().__init__(env, make_potential_reward(env, potential, gamma, scale, name, source))
