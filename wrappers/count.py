"""Count-based exploration bonus: ``1 / sqrt(N(x))`` for the thing ``x`` the agent just reached.

The classic count bonus (Strehl and Littman 2008; Bellemare et al. 2016 for its pseudo-count
form): ``N(x)`` counts the visits of ``x`` including this one, so a first visit pays 1, the fourth
pays 1/2. ``x`` is the next state's symbolic ``info["state"]`` (``key="state"``), a hash of the
next observation (``key="obs"``), or the caption (``key="caption"``). State fields in ``ignore``
(by default ``steps``, the episode's step counter, which would make every state new) are left out. On tasks with few distinct
captions, such as KeyDoor (about 18 in all), caption counts vanish within an episode: count on the
state there. ``scope="global"`` counts over the whole run, ``scope="episode"`` within each episode
(reset at its start).

Counts grow online, in ``reward``, as the paper's tabular bonus does: nothing is learned at
updates. The counts are the module's state (``state_dict``).

>>> from align_gym.wrappers.core import TransitionBatch
>>> bonus = CountBonus(key="caption")
>>> batch = TransitionBatch([0] * 4, [0] * 4, [0] * 4, ["a", "a", "b", "a"], [{}] * 4, [{}] * 4,
...                         [0.0] * 4, [False] * 4, [False] * 4, [0] * 4)
>>> [round(float(b), 3) for b in bonus.reward(batch)]
[1.0, 0.707, 1.0, 0.577]
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from .core import EpisodeStarts, RewardModule, TransitionBatch

KEYS = ("state", "obs", "caption")
SCOPES = ("global", "episode")


def state_key(state: dict[str, Any], ignore: tuple[str, ...] = ()) -> tuple:
    return tuple(sorted((k, v) for k, v in state.items() if k not in ignore))


def obs_key(obs: Any) -> str:
    if isinstance(obs, dict):
        return hashlib.sha1(b"".join(np.ascontiguousarray(obs[k]).tobytes() for k in sorted(obs))).hexdigest()
    return hashlib.sha1(np.ascontiguousarray(obs).tobytes()).hexdigest()


class EpisodeCounts:
    """How many times each episode has met each key so far, the current step included; an
    episode's counts go when it ends (Motif and ONI divide by ``N_ep(c)^beta`` with these)."""

    def __init__(self) -> None:
        self._counts: dict[int, dict[Any, int]] = {}

    def start(self, episode_ids: Any) -> None:
        for episode in episode_ids:
            self._counts[int(episode)] = {}

    def count(self, keys: list[Any], batch: TransitionBatch) -> np.ndarray:
        """``N_ep(key)`` for each row of ``batch``, counting this step in."""
        out = np.empty(len(keys))
        for i, (key, episode) in enumerate(zip(keys, batch.episode_ids)):
            counts = self._counts.setdefault(int(episode), {})
            counts[key] = out[i] = counts.get(key, 0) + 1
            if batch.terminated[i] or batch.truncated[i]:
                self._counts.pop(int(episode), None)  # the episode is over
        return out


class CountBonus(RewardModule):
    """``1/sqrt(N(x))`` of the next state, observation hash or caption; see the module docstring."""

    invariant = False

    def __init__(self, key: str = "state", scope: str = "global", name: str = "count",
                 ignore: tuple[str, ...] | list[str] = ("steps",)):
        if key not in KEYS:
            raise ValueError(f"key must be one of {KEYS}, got {key!r}")
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        self.key, self.scope, self.name, self.ignore = key, scope, name, tuple(ignore)
        self.needs = frozenset({{"state": "next_states", "obs": "next_obs", "caption": "captions"}[key],
                                "episode_ids", "terminated", "truncated"})
        self.counts: dict[Any, int] = {}  # global scope
        self._episode_counts = EpisodeCounts()  # episode scope

    def _keys(self, batch: TransitionBatch) -> list[Any]:
        if self.key == "state":
            return [state_key(s, self.ignore) for s in batch.next_states]
        if self.key == "obs":
            return [obs_key(o) for o in batch.next_obs]
        return list(batch.captions)

    def reward(self, batch: TransitionBatch) -> np.ndarray:
        keys = self._keys(batch)
        if self.scope == "episode":
            return 1.0 / np.sqrt(self._episode_counts.count(keys, batch))
        out = np.empty(len(keys))
        for i, x in enumerate(keys):
            self.counts[x] = self.counts.get(x, 0) + 1
            out[i] = 1.0 / np.sqrt(self.counts[x])
        return out

    def start_episodes(self, starts: EpisodeStarts) -> None:
        self._episode_counts.start(starts.episode_ids)

    def state_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counts = dict(state["counts"])


def make_count(env: Any, gamma: float, coef: float = 0.1, key: str = "state", scope: str = "global",
               decay: float = 0.0, normalize: bool = False, name: str = "count",
               ignore: tuple[str, ...] | list[str] = ("steps",)):
    """The ``count`` shaping: a :class:`CountBonus` as an intrinsic term of weight ``coef``."""
    from .intrinsic import make_intrinsic

    return make_intrinsic(CountBonus(key, scope, name, ignore), coef, decay, normalize, name)
