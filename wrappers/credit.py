"""Credit assignment for episodic rewards: return redistribution between env and agent.

With an episodic reward (:class:`~align_gym.wrappers.EpisodicReward`) the agent hears only the
episode's total, at its end. A redistribution method turns that total back into per-step rewards
``r_hat``: IRCR (:mod:`.ircr`) from the episode's return alone, RRD (:mod:`.rrd`) and LaRe
(:mod:`align_gym.llm_rewards.lare`) from a reward model trained so that the steps' rewards add up
to the return. Redistribution needs whole episodes, so it happens where whole episodes are known
(DESIGN.md, "Credit assignment"):

- **in the agent** (the default): :class:`Redistribution` records every transition as the env
  steps and pays nothing then; :func:`align_gym.agents.install_credit` hands it to the agent, which
  replaces the task reward by ``r_hat`` in an on-policy rollout before its advantages are computed,
  or in each minibatch an off-policy agent samples from its replay buffer. The bench installs it.
  The term the wrapper reports as the env steps is therefore 0; the agent's side writes each
  episode's relabelled term into its episode summary where it relabels (see
  :mod:`align_gym.agents.credit`), so summaries, ``align/term_<name>`` and the bench's term columns
  show what the agent trained on.
- **online** (a stated simplification, :class:`RewardRedistribution`, or ``online=true`` in a
  spec): the reward model's ``r_hat`` is paid as the step happens, through the term
  ``r_hat - env_reward``, so the agent trains on ``r_hat`` alone. The model keeps learning from the
  episodes as they end (every ``update_every`` transitions). IRCR cannot run online: its reward is
  the return of an episode that has not ended yet.

Either way the method's term is ``r_hat - env_reward`` (replacing the task reward, keeping any
other shaping layer's term), and it is not invariant: a learned redistribution can change what is
optimal. ``info["env_reward"]`` stays the task's, as always.

A method is an object with ``name``, ``needs_returns`` (whether ``r_hat`` needs the step's
episode to have ended), ``features(batch)`` (what it keeps of each transition),
``fit(store, rng)`` (one round of training on finished episodes) and
``rewards(features, step_returns, store)`` (``r_hat`` of each transition, given ``R/T`` of its
episode, NaN where that episode has not ended).

>>> import gymnasium as gym, align_gym
>>> from align_gym.wrappers.rrd import RRD
>>> env = gym.make("Align/KeyDoorSubgoals-Episodic-v0")
>>> env = RewardRedistribution(env, RRD(env.observation_space, env.action_space), update_every=256)
>>> _ = env.reset(seed=0)
>>> _, reward, *_, info = env.step(0)
>>> abs(reward - (info["env_reward"] + info["reward_terms"]["rrd"])) < 1e-6
True
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from gymnasium.utils import RecordConstructorArgs

from .core import RewardModule, ShapingWrapper, TransitionBatch


@dataclass
class Episode:
    """A finished episode as a method keeps it: one feature row per step, and its return."""

    features: np.ndarray
    ret: float

    @property
    def length(self) -> int:
        return len(self.features)


class EpisodeStore:
    """The latest finished episodes, first in first out, at most ``capacity`` transitions."""

    def __init__(self, capacity: int = 200_000):
        self.capacity = int(capacity)
        self.episodes: deque[Episode] = deque()
        self.transitions = 0

    def __len__(self) -> int:
        return len(self.episodes)

    def add(self, episode: Episode) -> None:
        self.episodes.append(episode)
        self.transitions += episode.length
        while self.transitions > self.capacity and len(self.episodes) > 1:
            self.transitions -= self.episodes.popleft().length

    def step_returns(self) -> np.ndarray:
        """``R / T`` of each stored episode."""
        return np.array([e.ret / e.length for e in self.episodes])

    def sample(self, rng: np.random.Generator, n_episodes: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """RRD's minibatch: ``n_episodes`` episodes drawn in proportion to their length, ``k`` of
        each one's steps (without replacement, unless the episode is shorter than ``k``). Returns
        the features ``(n, k, F)``, the returns ``(n,)`` and the lengths ``(n,)``."""
        lengths = np.array([e.length for e in self.episodes])
        chosen = rng.choice(len(lengths), size=n_episodes, p=lengths / lengths.sum())
        features = []
        for i in chosen:
            episode = self.episodes[i]
            steps = rng.choice(episode.length, size=k, replace=episode.length < k)
            features.append(episode.features[steps])
        return (np.stack(features).astype(np.float32), np.array([self.episodes[i].ret for i in chosen]),
                lengths[chosen])


class CreditMethod(Protocol):
    """What :class:`Redistribution` needs of a method (IRCR, RRD, LaRe)."""

    name: str
    needs_returns: bool

    def features(self, batch: TransitionBatch) -> np.ndarray: ...

    def fit(self, store: EpisodeStore, rng: np.random.Generator) -> dict[str, float]: ...

    def rewards(self, features: np.ndarray, step_returns: np.ndarray, store: EpisodeStore) -> np.ndarray: ...


@dataclass
class Step:
    """One vector step as the method saw it: what the agent-side relabelling reads."""

    features: np.ndarray
    env_rewards: np.ndarray
    episode_ids: np.ndarray
    done: np.ndarray


class Redistribution(RewardModule):
    """A redistribution method as a reward module; see the module docstring.

    It gathers every transition into per-episode features, and each finished episode (its return
    the sum of ``env_reward``) into an :class:`EpisodeStore` of ``capacity`` transitions. In the
    agent (``online=False``) it pays 0 as the env steps and waits for
    :func:`~align_gym.agents.install_credit`; its first step without one raises, so a method that
    needs the agent never silently trains nothing. Online it pays ``r_hat - env_reward`` and calls
    ``method.fit`` every ``update_every`` transitions, ``fit_rounds`` times. ``finished`` holds
    the episodes that ended on the last step, by id (what an agent reports their terms from).
    """

    invariant = False
    needs = frozenset({"obs", "actions", "next_obs", "states", "next_states", "env_rewards", "terminated",
                       "truncated", "episode_ids"})

    def __init__(self, method: CreditMethod, online: bool = False, capacity: int = 200_000,
                 update_every: int = 2048, fit_rounds: int = 32, seed: int = 0, name: str | None = None):
        if online and method.needs_returns:
            raise ValueError(f"{method.name} pays each step its episode's return, known only when the episode ends: "
                             "it relabels an agent's rollout or replay buffer and cannot run online")
        self.method, self.online, self.name = method, bool(online), name or method.name
        self.update_every, self.fit_rounds = int(update_every), int(fit_rounds)
        self.store = EpisodeStore(capacity)
        self.rng = np.random.default_rng(seed)
        self.relabeller: Any = None  # the agent-side object that records steps (set by install_credit)
        self.last_step: Step | None = None
        self.finished: dict[int, Episode] = {}  # the episodes that ended on the last step, by id
        self.stats: dict[str, float] = {}
        self._open: dict[int, tuple[list[np.ndarray], float]] = {}  # episode id -> (feature rows, return so far)
        self._step_returns: OrderedDict[int, float] = OrderedDict()  # finished episode id -> R / T

    def reward(self, batch: TransitionBatch) -> np.ndarray:
        features = np.asarray(self.method.features(batch), dtype=np.float32).reshape(len(batch), -1)
        env_rewards = np.asarray(batch.env_rewards, dtype=np.float64)
        ids = np.asarray(batch.episode_ids, dtype=np.int64)
        done = np.asarray(batch.terminated, dtype=bool) | np.asarray(batch.truncated, dtype=bool)
        self.finished = {}
        for i, episode in enumerate(ids.tolist()):
            rows, total = self._open.get(episode, ([], 0.0))
            rows.append(features[i])
            total += float(env_rewards[i])
            if done[i]:
                self._finish(episode, rows, total)
            else:
                self._open[episode] = (rows, total)
        self.last_step = Step(features, env_rewards, ids, done)
        if self.online:
            return self.r_hat(features, ids) - env_rewards
        if self.relabeller is None:
            raise RuntimeError(f"{self.name} redistributes the episodic return inside the agent: install it with "
                               "align_gym.agents.install_credit(model) before model.learn (the bench does), "
                               f"or pay it online with {self.name}(online=true) where the method allows")
        self.relabeller.record(self.last_step)
        return np.zeros(len(batch))

    def _finish(self, episode: int, rows: list[np.ndarray], total: float) -> None:
        self._open.pop(episode, None)
        self.finished[episode] = finished = Episode(np.stack(rows), total)
        self.store.add(finished)
        self._step_returns[episode] = total / len(rows)
        while len(self._step_returns) > 100_000:  # far more than any buffer relabels
            self._step_returns.popitem(last=False)

    def step_returns(self, episode_ids: np.ndarray) -> np.ndarray:
        """``R / T`` of each id's episode, NaN where it has not ended."""
        lookup = self._step_returns
        return np.array([lookup.get(int(i), np.nan) for i in np.ravel(episode_ids)]).reshape(np.shape(episode_ids))

    def r_hat(self, features: np.ndarray, episode_ids: np.ndarray) -> np.ndarray:
        """The redistributed reward of transitions (rows of ``features``) of episodes ``episode_ids``."""
        shape = np.shape(episode_ids)
        flat = features.reshape(int(np.prod(shape)), -1)
        out = self.method.rewards(flat, self.step_returns(episode_ids).ravel(), self.store)
        return np.asarray(out, dtype=np.float64).reshape(shape)

    def fit(self, rounds: int | None = None) -> dict[str, float]:
        """Train the method on the stored episodes, ``rounds`` times (default ``fit_rounds``);
        returns the last round's stats, with the store's size."""
        stats: dict[str, float] = {}
        if len(self.store):
            for _ in range(self.fit_rounds if rounds is None else rounds):
                stats = self.method.fit(self.store, self.rng) or {}
        self.stats = {**{k: float(v) for k, v in stats.items()}, "episodes": float(len(self.store))}
        return self.stats

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """Online only: learn from the episodes that ended since the last update."""
        return self.fit() if self.online else dict(self.stats)

    def close(self) -> None:
        """Let the method release what it holds (LaRe's sandbox worker)."""
        close = getattr(self.method, "close", None)
        if callable(close):
            close()

    def state_dict(self) -> dict[str, Any]:
        method = self.method.state_dict() if hasattr(self.method, "state_dict") else {}
        return {"method": method, "store": list(self.store.episodes), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if hasattr(self.method, "load_state_dict"):
            self.method.load_state_dict(state["method"])
        self.store = EpisodeStore(self.store.capacity)
        for episode in state["store"]:
            self.store.add(episode)
        self.rng.bit_generator.state = state["rng"]


class RewardRedistribution(ShapingWrapper, RecordConstructorArgs):
    """Pays a learned redistribution online: ``r_hat - env_reward`` under
    ``info["reward_terms"][method.name]``, so the agent is trained on ``r_hat``. A stated
    simplification of redistribution, which needs whole episodes (see the module docstring);
    the model learns every ``update_every`` transitions from the episodes that ended."""

    def __init__(self, env: Any, method: CreditMethod, update_every: int = 2048, fit_rounds: int = 32,
                 seed: int = 0, name: str | None = None):
        RecordConstructorArgs.__init__(self, update_every=update_every, fit_rounds=fit_rounds, seed=seed, name=name)
        ShapingWrapper.__init__(self, env, Redistribution(method, online=True, update_every=update_every,
                                                          fit_rounds=fit_rounds, seed=seed, name=name))


def waits_for_agent(module: Any) -> bool:
    """Whether ``module`` is a redistribution that an agent must relabel its rollouts or replay
    buffer for (``online=false``, the default)."""
    return isinstance(module, Redistribution) and not module.online


def redistribution_modules(env: Any) -> list[Redistribution]:
    """The :class:`Redistribution` modules in ``env``'s shaping stack that wait for an agent."""
    from .core import shaping_layers

    return [layer.module for layer in shaping_layers(env) if waits_for_agent(layer.module)]
