"""One shaping core, three adapters: the batch, the reward-module lifecycle, and the gymnasium adapter.

A reward module computes its shaping term for a batch of transitions (``reward(batch)``), and
may learn: ``update(batch) -> dict[str, float]`` of training stats, a signal at episode starts
(``start_episodes(starts)``) and ``state_dict()`` / ``load_state_dict()``. The adapters —
:class:`ShapingWrapper` here, :class:`~align_gym.wrappers.vector.ShapingVectorWrapper` for
gymnasium vector envs and :class:`~align_gym.wrappers.sb3.ShapingVecEnvWrapper` for
Stable-Baselines3 — turn env steps into batches (one module call per vector step), keep the
reward-terms contract, and drive the lifecycle the same way through :class:`ModuleDriver`:

- every real transition, and only those (never the fake step of next-step autoreset; the true
  final observation at an episode's end), goes to ``reward`` and, for a learning module, to a
  transition log;
- ``update`` receives the log's transitions since the last update: after every
  ``module.update_every`` transitions in gymnasium loops (and in SB3 off-policy agents), or at
  each rollout's end for SB3 on-policy agents, driven by
  :class:`~align_gym.agents.RewardTermsCallback`, so the next rollout is scored by the updated
  module;
- ``start_episodes`` hears of every episode as it starts (its id, first observation, caption,
  state, task and surroundings), at ``reset`` and at each autoreset.

Modules without learning only implement ``name``, ``invariant`` and ``reward``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import gymnasium as gym
import numpy as np

from .terms import ENV_REWARD, EPISODE_SUMMARY, EpisodeTracker


def fill_texts(rows: Any, n: int) -> None:
    """Empty strings for the optional ``tasks`` and ``surroundings`` of ``n`` rows, where the
    caller left them out."""
    if n and not len(rows.tasks):
        rows.tasks = ("",) * n
    if n and not len(rows.surroundings):
        rows.surroundings = ("",) * n


@dataclass(slots=True)
class TransitionBatch:
    """``n`` transitions, one per row. ``states``/``next_states`` are ``info["state"]`` dicts
    (empty dicts for envs without one); ``next_obs`` is the true final observation at an
    episode's end, never the reset one. Fields are sequences of length ``n`` (numpy arrays from
    the vector adapters, plain lists from the single-env one, where numpy would cost more than
    the step). ``episode_ids`` are unique over an adapter's life: key per-episode state by them."""

    obs: Sequence[Any]
    actions: Sequence[Any]
    next_obs: Sequence[Any]
    captions: Sequence[str]
    states: Sequence[dict[str, Any]]
    next_states: Sequence[dict[str, Any]]
    env_rewards: Sequence[float]
    terminated: Sequence[bool]
    truncated: Sequence[bool]
    episode_ids: Sequence[int]
    tasks: Sequence[str] = ()
    surroundings: Sequence[str] = ()

    def __post_init__(self) -> None:
        fill_texts(self, len(self.env_rewards))

    def __len__(self) -> int:
        return len(self.env_rewards)

    @classmethod
    def concatenate(cls, batches: Sequence[TransitionBatch]) -> TransitionBatch:
        """One batch of the rows of ``batches``, in order: numeric fields as numpy arrays,
        observations, captions and states as lists."""
        out = {}
        for f in fields(cls):
            rows = [row for batch in batches for row in getattr(batch, f.name)]
            out[f.name] = np.asarray(rows) if f.name in _NUMERIC_FIELDS else rows
        return cls(**out)


_NUMERIC_FIELDS = frozenset({"env_rewards", "terminated", "truncated", "episode_ids"})
ALL_FIELDS = frozenset(f.name for f in fields(TransitionBatch))
#: The batch fields read from a step's info, and their keys there.
INFO_TEXTS = {"captions": "caption", "tasks": "task", "surroundings": "surroundings"}


@dataclass
class EpisodeStarts:
    """Episodes that just started: their ids, first observations, captions and states, and (empty
    strings where the env gives none) their tasks and surroundings."""

    episode_ids: Sequence[int]
    obs: Sequence[Any]
    captions: Sequence[str]
    states: Sequence[dict[str, Any]]
    tasks: Sequence[str] = ()
    surroundings: Sequence[str] = ()

    def __post_init__(self) -> None:
        fill_texts(self, len(self.episode_ids))


class RewardModule:
    """Base of reward modules: a shaping term computed batch-first, with an optional lifecycle.

    Subclasses set ``name`` and ``invariant`` (whether the term provably keeps the optimal
    policy: potential-based shaping does, intrinsic bonuses do not) and implement ``reward``.
    A module that learns overrides ``update`` (and ``state_dict``/``load_state_dict`` for what it
    learned) and may set ``update_every``. A module whose ``update`` has work only in some settings
    (a potential that counts non-finite values only when told to) sets ``learns = False`` on
    the instances without it, so that adapters keep no transition log for them. Any object with
    ``name``, ``invariant`` and ``reward`` works as a module; the rest is optional.
    """

    name: str = "module"
    invariant: bool = False
    update_every: int = 2048  # transitions between updates where no rollout end drives them
    # The TransitionBatch fields the module reads: adapters may leave the others as placeholders
    # (empty dicts and strings) where building them costs (captions and states of vector envs).
    needs: frozenset[str] = ALL_FIELDS

    def reward(self, batch: TransitionBatch) -> Sequence[float] | np.ndarray:
        """The term (already scaled) of each transition of ``batch``: ``len(batch)`` floats."""
        raise NotImplementedError

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """Learn from the transitions since the last update; return training stats to log."""
        return {}

    def start_episodes(self, starts: EpisodeStarts) -> None:
        """Hear of new episodes (reset per-episode state here)."""

    def close(self) -> None:
        """Release what the module holds (called when its env closes)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


def _overrides(module: Any, method: str) -> bool:
    """Whether ``module`` has ``method`` of its own (the base class's do nothing)."""
    own = getattr(type(module), method, None)
    return callable(own) and own is not getattr(RewardModule, method)


def module_learns(module: Any) -> bool:
    """Whether ``module`` has an ``update`` of its own (the base class's does nothing) and has
    not switched it off (``learns = False``): whether adapters log transitions for it and update it."""
    return _overrides(module, "update") and getattr(module, "learns", True) is not False


class ModuleDriver:
    """Drives one module for one adapter: its reward calls, transition log, update schedule and
    episode-start signals. ``on_rollout_end`` (set by the SB3 callback for on-policy agents) hands
    the schedule to the caller of :meth:`update`."""

    def __init__(self, module: Any):
        self.module = module
        self.name: str | None = None if module is None else module.name
        self.learns = module_learns(module)
        self.hears_starts = module is not None and _overrides(module, "start_episodes")
        self.update_every = int(getattr(module, "update_every", RewardModule.update_every))
        needs = frozenset(getattr(module, "needs", ALL_FIELDS)) if module is not None else frozenset()
        self.needs_states = bool(needs & {"states", "next_states"})
        self.needs_captions = "captions" in needs
        # The info texts the module reads besides captions (field -> info key).
        self.extra_texts = {f: key for f, key in INFO_TEXTS.items() if f in needs and f != "captions"}
        self.on_rollout_end = False
        self.last_stats: dict[str, float] = {}
        self.n_updates = 0
        self._log: list[TransitionBatch] = []
        self._logged = 0

    def reward(self, batch: TransitionBatch) -> Any:
        terms = self.module.reward(batch)
        if self.learns:
            self.log(batch)
        return terms

    def log(self, batch: TransitionBatch) -> None:
        """Keep ``batch`` for the next update, and run it when ``update_every`` is reached (unless
        rollout ends drive the updates)."""
        self._log.append(batch)
        self._logged += len(batch)
        if not self.on_rollout_end and self._logged >= self.update_every:
            self.update()

    def update(self) -> dict[str, float]:
        """Run the module's update on every transition logged since the last one (if any)."""
        if not self.learns or not self._log:
            return {}
        batch = TransitionBatch.concatenate(self._log)
        self._log, self._logged = [], 0
        self.last_stats = {key: float(value) for key, value in (self.module.update(batch) or {}).items()}
        self.n_updates += 1
        return self.last_stats

    def close(self) -> None:
        """Let the module release what it holds (an annotator's worker, a child process)."""
        close = getattr(self.module, "close", None)
        if callable(close):
            close()

    def start_episodes(self, ids: Sequence[int], obs: Sequence[Any], captions: Sequence[str],
                       states: Sequence[dict[str, Any]], **texts: Sequence[str]) -> None:
        """``texts``: the starts' ``tasks`` and ``surroundings`` where the module reads them."""
        if self.hears_starts and len(ids):
            self.module.start_episodes(EpisodeStarts(ids, obs, captions, states, **texts))


class ShapingWrapper(gym.Wrapper):
    """Adds ``module``'s term to each step's reward and keeps the reward-terms contract.

    With ``module=None`` it only records ``info["env_reward"]``, ``info["reward_terms"]`` and the
    episode summary: the "no shaping" baseline, reported the same way as every method. A learning
    module is updated every ``module.update_every`` transitions.

    >>> import gymnasium as gym
    >>> env = ShapingWrapper(gym.make("CartPole-v1"), module=None)
    >>> _ = env.reset(seed=0)
    >>> _, reward, *_, info = env.step(0)
    >>> reward == info["env_reward"]
    True
    """

    def __init__(self, env: gym.Env, module: Any):
        super().__init__(env)
        self.driver = ModuleDriver(module)
        self._tracker = EpisodeTracker(1)
        self._episode = 0  # the current episode's id, as a Python int
        self._obs: Any = None
        self._state: dict[str, Any] = {}

    @property
    def module(self) -> Any:
        return self.driver.module

    def close(self) -> None:
        self.driver.close()
        super().close()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self._obs, self._state = obs, info.get("state", {})
        self._tracker.restart(0)
        self._episode = int(self._tracker.episode_ids[0])
        self.driver.start_episodes([self._episode], [obs], [info.get("caption", "")], [self._state],
                                   **{f: [info.get(key, "")] for f, key in self.driver.extra_texts.items()})
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        state = info.get("state", {})
        term = 0.0
        driver = self.driver
        if driver.module is not None:
            # Rows as 1-tuples, the cheapest sequence to build: this runs once per env step.
            batch = TransitionBatch(
                (self._obs,), (action,), (obs,), (info.get("caption", "") if driver.needs_captions else "",),
                (self._state,), (state,), (info.get(ENV_REWARD, reward),), (terminated,), (truncated,), (self._episode,),
                *(((info.get("task", ""),), (info.get("surroundings", ""),)) if driver.extra_texts else ()),
            )
            term = float(driver.module.reward(batch)[0])
            if driver.learns:
                driver.log(batch)
        shaped = self._tracker.record(0, info, reward, driver.name, term)
        self._obs, self._state = obs, state
        if terminated or truncated:
            info[EPISODE_SUMMARY] = self._tracker.finish(0, info.get("success")).as_dict()
            self._episode = int(self._tracker.episode_ids[0])
        return obs, shaped, terminated, truncated, info


def shaping_layers(env: Any) -> list[Any]:
    """The shaping adapters in a stack of wrappers (gymnasium, vector or SB3), innermost first.

    >>> import gymnasium as gym
    >>> env = ShapingWrapper(ShapingWrapper(gym.make("CartPole-v1"), None), None)
    >>> len(shaping_layers(env))
    2
    """
    layers, current = [], env
    while hasattr(current, "__dict__"):
        # Read the instance's own attributes: SB3's wrappers forward unknown names to the env below.
        own = vars(current)
        if isinstance(own.get("driver"), ModuleDriver):
            layers.append(current)
        current = own.get("env", own.get("venv"))
    return layers[::-1]


def offline_steps(env: Any) -> int:
    """Env steps the reward modules of ``env``'s stack take before training (Motif's offline
    phase): the bench counts them against a cell's budget."""
    return sum(int(getattr(layer.module, "offline_steps", 0)) for layer in shaping_layers(env) if layer.module is not None)


def reward_module_states(env: Any) -> dict[str, Any]:
    """``state_dict()`` of every reward module in ``env``'s stack, by the module's name."""
    return {layer.driver.name: layer.module.state_dict() for layer in shaping_layers(env)
            if layer.module is not None and callable(getattr(layer.module, "state_dict", None))}


def load_reward_module_states(env: Any, states: dict[str, Any]) -> None:
    """Restore what :func:`reward_module_states` returned into the modules of ``env``'s stack;
    ValueError if the names do not match the stack's."""
    modules = {layer.driver.name: layer.module for layer in shaping_layers(env) if layer.module is not None}
    missing = sorted(set(states) - set(modules))
    if missing:
        raise ValueError(f"saved reward modules {missing} are not in this env's shaping stack {sorted(modules)}")
    for name, state in states.items():
        modules[name].load_state_dict(state)
