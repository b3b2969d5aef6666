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

from .core import ModuleDriver, TransitionBatch
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
    if key not in infos or (f"_{key}" in infos and not infos[f"_{key}"][index]):
        return default
    value = infos[key]
    if isinstance(value, dict):
        return {k: info_item(value, k, index) for k in value if not k.startswith("_")}
    return _python(value[index])


def obs_rows(obs: Any, n: int) -> list[Any]:
    """Each sub-env's observation (a dict per sub-env for dict observation spaces)."""
    if isinstance(obs, dict):
        return [{key: value[i] for key, value in obs.items()} for i in range(n)]
    return list(obs)


def copy_obs(obs: Any) -> Any:
    if isinstance(obs, dict):
        return {key: np.copy(value) for key, value in obs.items()}
    return obs.copy() if isinstance(obs, np.ndarray) else list(obs)


def info_column(infos: dict[str, Any], key: str, n: int, default: Any = None, masked: bool = True) -> list[Any]:
    """Every sub-env's value of ``key`` (``default`` where a sub-env has none), nested dicts
    rebuilt per sub-env: a column at a time, since per-item lookups cost more than the env step."""
    if key not in infos:
        return [default] * n
    value = infos[key]
    if isinstance(value, dict):
        names = [k for k in value if not k.startswith("_")]
        # A sub-env that gave the dict gave all its keys: the outer mask covers the inner ones.
        columns = [info_column(value, k, n, masked=False) for k in names]
        out = [dict(zip(names, row)) for row in zip(*columns)] if names else [{} for _ in range(n)]
    elif isinstance(value, np.ndarray) and value.ndim == 1:
        out = value.tolist()  # plain Python scalars, as a single env gives them
    else:
        out = list(value)
    mask = infos.get(f"_{key}") if masked else None
    if mask is not None and not mask.all():
        out = [v if present else default for v, present in zip(out, mask)]
    return out


class ShapingVectorWrapper(VectorWrapper):
    """Adds ``module``'s term to a vector env's rewards, one module call per vector step.

    Only real transitions reach the module (with next-step autoreset, the step that returns the
    reset observation is none); a learning module is updated every ``module.update_every`` of them.

    >>> import gymnasium as gym
    >>> envs = ShapingVectorWrapper(gym.make_vec("CartPole-v1", num_envs=2), module=None)
    >>> _ = envs.reset(seed=0)
    >>> _, rewards, *_, infos = envs.step(envs.action_space.sample())
    >>> bool((rewards == infos["env_reward"]).all())
    True
    """

    def __init__(self, env: VectorEnv, module: Any):
        super().__init__(env)
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ValueError(f"ShapingVectorWrapper supports next-step and same-step autoreset, not {mode}")
        self.same_step = mode == AutoresetMode.SAME_STEP
        self.driver = ModuleDriver(module)
        n = env.num_envs
        self._tracker = EpisodeTracker(n)
        self._needs_reset = np.zeros(n, dtype=bool)
        self._obs: Any = None
        self._states: list[dict[str, Any]] = [{} for _ in range(n)]
        self._inner_names: list[str] = []  # the terms of the layers below, as they appear

    @property
    def module(self) -> Any:
        return self.driver.module

    def close(self, **kwargs: Any) -> None:
        self.driver.close()
        super().close(**kwargs)

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        obs, infos = self.env.reset(seed=seed, options=options)
        n = self.num_envs
        self._obs = obs_rows(copy_obs(obs), n)
        self._states = info_column(infos, "state", n, {}) if self.driver.needs_states else [{}] * n
        self._needs_reset[:] = False
        for i in range(n):
            self._tracker.restart(i)
        self._start_episodes(np.arange(n), obs, infos)
        return obs, infos

    def _start_episodes(self, indices: np.ndarray, obs: Any, infos: dict[str, Any]) -> None:
        """Tell the module of the episodes starting in sub-envs ``indices`` (reset obs and info)."""
        if self.driver.hears_starts and len(indices):
            captions = info_column(infos, "caption", self.num_envs, "") if self.driver.needs_captions else [""] * self.num_envs
            texts = {f: info_column(infos, key, self.num_envs, "") for f, key in self.driver.extra_texts.items()}
            rows = obs_rows(obs, self.num_envs)
            self.driver.start_episodes(self._tracker.episode_ids[indices].copy(), [rows[i] for i in indices],
                                       [captions[i] for i in indices], [self._states[i] for i in indices],
                                       **{f: [column[i] for i in indices] for f, column in texts.items()})

    def step(self, actions):
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        n = self.num_envs
        done = np.asarray(terminated | truncated, dtype=bool)
        env_rewards = np.asarray(infos.get(ENV_REWARD, rewards), dtype=np.float64)
        starting = self._needs_reset  # next-step autoreset: these steps are resets, not transitions
        real = np.flatnonzero(~starting)
        term = np.zeros(n)
        if self.driver.module is not None:
            term[real] = self._module_terms(obs, actions, terminated, truncated, infos, env_rewards, done, real)
        shaped = np.asarray(rewards, dtype=np.float64) + term
        infos[ENV_REWARD] = env_rewards
        # Inner layers' terms, without gymnasium's "_name" masks (a sub-env wrapper's terms arrive
        # merged by the vector env, one mask per term), and zeros for a term no sub-env reported
        # this step (every sub-env was resetting).
        inner = {k: v for k, v in infos.get(REWARD_TERMS, {}).items() if not k.startswith("_")}
        self._inner_names.extend(k for k in inner if k not in self._inner_names)
        inner = {k: inner[k] if k in inner else np.zeros(n) for k in self._inner_names}
        terms = infos[REWARD_TERMS] = with_term(inner, self.driver.name, term)
        infos.pop(f"_{REWARD_TERMS}", None)

        self._tracker.add_rows(real, env_rewards, shaped, terms)
        ended = np.flatnonzero(done & ~starting)
        if len(ended):
            summaries: list = [None] * n
            step_infos = infos["final_info"] if self.same_step else infos
            for i in ended:  # finish() also gives the sub-env a new episode id
                summaries[i] = self._tracker.finish(i, info_item(step_infos, "success", i))
            infos[EPISODE_SUMMARY], infos[f"_{EPISODE_SUMMARY}"] = summaries_to_arrays(summaries)
        self._start_episodes(np.flatnonzero(done if self.same_step else starting), obs, infos)
        self._needs_reset = np.zeros(n, dtype=bool) if self.same_step else done
        return obs, shaped, terminated, truncated, infos

    def _module_terms(self, obs, actions, terminated, truncated, infos, env_rewards, done, real) -> Any:
        """The module's terms for the real transitions of this step; keeps what the next step's
        transitions start from (the reset observation and state where an episode just reset)."""
        n = self.num_envs
        rows = obs_rows(copy_obs(obs), n)  # a copy: a vector env may reuse its buffer, and modules keep logs
        # Only what the module reads: rebuilding per-env dicts from the merged info costs.
        states = info_column(infos, "state", n, {}) if self.driver.needs_states else [{}] * n
        captions = info_column(infos, "caption", n, "") if self.driver.needs_captions else [""] * n
        texts = {f: info_column(infos, key, n, "") for f, key in self.driver.extra_texts.items()}
        # A transition's own info: same-step autoreset moves the ended ones' to info["final_info"]
        # (and their final observation to info["final_obs"]), leaving the reset info in its place.
        next_obs, next_states, next_captions = rows, states, captions
        final = np.flatnonzero(done) if self.same_step else []
        if len(final):
            final_info = infos["final_info"]
            final_states = info_column(final_info, "state", n, {}) if self.driver.needs_states else states
            final_captions = info_column(final_info, "caption", n, "") if self.driver.needs_captions else captions
            final_texts = {f: info_column(final_info, key, n, "") for f, key in self.driver.extra_texts.items()}
            next_obs, next_states, next_captions = list(rows), list(states), list(captions)
            texts = {f: list(column) for f, column in texts.items()}
            for i in final:
                next_obs[i], next_states[i], next_captions[i] = infos["final_obs"][i], final_states[i], final_captions[i]
                for f in texts:
                    texts[f][i] = final_texts[f][i]

        def take(values: Any) -> Any:  # the real transitions' rows (all of them, most steps)
            return values if len(real) == n else [values[i] for i in real]

        terms: Any = []
        if len(real):
            batch = TransitionBatch(
                obs=take(self._obs), actions=take(list(actions)), next_obs=take(next_obs), captions=take(next_captions),
                states=take(self._states), next_states=take(next_states), env_rewards=env_rewards[real],
                terminated=np.asarray(terminated)[real], truncated=np.asarray(truncated)[real],
                episode_ids=self._tracker.episode_ids[real], **{f: take(column) for f, column in texts.items()},
            )
            terms = self.driver.reward(batch)
        self._obs, self._states = rows, states
        return terms


class PotentialShapingVector(ShapingVectorWrapper):
    """Potential-based shaping of a gymnasium vector env (see :class:`~align_gym.wrappers.PotentialShaping`).

    >>> import gymnasium as gym
    >>> envs = gym.make_vec("CartPole-v1", num_envs=2)
    >>> envs = PotentialShapingVector(envs, potential=lambda obs: -abs(obs[2]), gamma=0.99)
    """

    def __init__(self, env: VectorEnv, potential, gamma: float, scale: float = 1.0, name: str = "pbrs",
                 source: str | None = None, on_nonfinite: str = "raise"):
        super().__init__(env, make_potential_reward(env, potential, gamma, scale, name, source, on_nonfinite))
