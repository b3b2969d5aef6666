"""The reward-terms contract: shaping never hides the task's own reward.

- ``info["env_reward"]`` is the task reward of the step; the first shaping layer records it and
  no later layer changes it.
- Each shaping layer adds ``info["reward_terms"][name]`` (already scaled) and returns the reward it
  received plus its term (:meth:`EpisodeTracker.record` for single envs, the vector adapter by arrays), so a stack of layers returns ``env_reward + sum(reward_terms.values())``.
- At an episode's end ``info["episode_summary"]`` holds the true return (sum of ``env_reward``),
  the shaped return, each term's sum, success and length. The outermost layer writes it last, so
  it sees every term of the stack.
- A redistribution relabelled inside the agent (``ircr``, ``rrd``, ``lare``; see
  :mod:`align_gym.wrappers.credit`) pays 0 as the env steps; its term is known only where the agent
  relabels. There the agent's side writes the relabelled sum into the same summary dict (its term
  and the shaped return), in place. Until then the summary lists the term's name under
  ``info["episode_summary"]["pending_terms"]`` (an on-policy episode waits for the end of its
  rollout); readers that average summaries as they arrive leave such summaries out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

ENV_REWARD = "env_reward"
REWARD_TERMS = "reward_terms"
EPISODE_SUMMARY = "episode_summary"
PENDING_TERMS = "pending_terms"  # in a summary: terms the agent has yet to fill in (see the module docstring)


@dataclass
class EpisodeSummary:
    """What one finished episode earned, by source. ``success`` is None where the env has none."""

    true_return: float = 0.0
    shaped_return: float = 0.0
    terms: dict[str, float] = field(default_factory=dict)
    success: bool | None = None
    length: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "true_return": self.true_return,
            "shaped_return": self.shaped_return,
            "terms": dict(self.terms),
            "success": self.success,
            "length": self.length,
        }


class EpisodeTracker:
    """Running sums of the current episode of each of ``n_envs`` sub-envs, and its id
    (``episode_ids[i]``, unique over the tracker's life: reward modules key per-episode state by it)."""

    def __init__(self, n_envs: int):
        self._current = [EpisodeSummary() for _ in range(n_envs)]
        self.episode_ids = np.arange(n_envs)
        self._next_id = n_envs

    def restart(self, index: int) -> None:
        """Start a fresh episode, with a new id, in sub-env ``index``."""
        self._current[index] = EpisodeSummary()
        self.episode_ids[index] = self._next_id
        self._next_id += 1

    def record(self, index: int, info: dict[str, Any], reward: float, name: str | None, term: float) -> float:
        """One step of sub-env ``index`` under one layer: write the layer's term into the step's
        ``info`` (in place: the terms dict belongs to this step's info, built by the innermost
        layer), add the step to the episode's sums, and return the reward the layer passes on.
        Plain floats throughout: this runs once per env step."""
        reward = float(reward)
        env_reward = info.setdefault(ENV_REWARD, reward)
        terms = info.get(REWARD_TERMS)
        if terms is None:
            terms = info[REWARD_TERMS] = {}
        shaped = reward
        if name is not None:
            if name in terms:
                raise ValueError(f"two shaping layers are both named {name!r}: give one of them another name=")
            terms[name] = term = float(term)
            shaped += term
        episode = self._current[index]
        episode.true_return += env_reward
        episode.shaped_return += shaped
        sums = episode.terms
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + value
        episode.length += 1
        return shaped

    def add_rows(self, indices: Any, env_rewards: np.ndarray, shaped: np.ndarray, terms: dict[str, np.ndarray]) -> None:
        """The episode sums of :meth:`record` for the sub-envs ``indices`` of one vector step, from
        per-env arrays (the vector adapter writes the info itself)."""
        rewards, shaped_rewards = env_rewards.tolist(), shaped.tolist()  # Python floats add faster
        columns = {name: np.asarray(values).tolist() for name, values in terms.items()}
        for i in indices:
            episode = self._current[i]
            episode.true_return += rewards[i]
            episode.shaped_return += shaped_rewards[i]
            episode.length += 1
            for name, column in columns.items():
                episode.terms[name] = episode.terms.get(name, 0.0) + column[i]

    def finish(self, index: int, success: Any) -> EpisodeSummary:
        """Close the episode of ``index`` and start a fresh one there."""
        episode = self._current[index]
        episode.success = None if success is None else bool(success)
        self.restart(index)
        return episode


def with_term(terms: dict[str, Any] | None, name: str | None, value: Any) -> dict[str, Any]:
    """A copy of the inner layers' ``terms`` with this layer's ``value`` added under ``name``
    (nothing added for ``name=None``, the no-shaping layer). Two layers may not share a name."""
    out = dict(terms) if terms else {}
    if name is not None:
        if name in out:
            raise ValueError(f"two shaping layers are both named {name!r}: give one of them another name=")
        out[name] = value
    return out


def summaries_to_arrays(summaries: list[EpisodeSummary | None]) -> tuple[dict[str, Any], np.ndarray]:
    """Vector-env form of per-env summaries: a dict of arrays and the mask of envs that finished."""
    n = len(summaries)
    mask = np.array([s is not None for s in summaries])
    names = sorted({name for s in summaries if s is not None for name in s.terms})
    out: dict[str, Any] = {
        "true_return": np.zeros(n), "shaped_return": np.zeros(n),
        "success": np.full(n, np.nan), "length": np.zeros(n, dtype=np.int64),
        "terms": {name: np.zeros(n) for name in names},
    }
    for i, s in enumerate(summaries):
        if s is None:
            continue
        out["true_return"][i], out["shaped_return"][i], out["length"][i] = s.true_return, s.shaped_return, s.length
        out["success"][i] = np.nan if s.success is None else float(s.success)
        for name, value in s.terms.items():
            out["terms"][name][i] = value
    return out, mask
