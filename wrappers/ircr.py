"""IRCR: Iterative Relative Credit Refinement (Gangwani, Zhou and Peng 2020, "Learning Guidance
Rewards with Trajectory-space Smoothing").

No network: every transition's guidance reward is its episode's per-step return ``R / T``,
min-max normalised over the episodes the agent holds,

    r_g = (R/T - min) / (max - min),

the smoothed estimate of "how good are the episodes this transition appears in". The agent is
trained on ``r_g`` in place of the episodic reward. It is a buffer-level method: the reward of a
transition needs its episode to have ended.

As in the paper, an off-policy agent relabels the transitions it samples from its replay buffer
(only transitions of finished episodes are sampled; min and max run over the finished episodes
the method has kept, at most ``capacity`` transitions). Simplified: the paper's buffer also keeps
a heap of the 10 best episodes and draws half of each batch from it; here batches are uniform over
the buffer's finished episodes.

Adapted for on-policy agents (a stated adaptation, not in the paper): the rollout is relabelled
before its advantages are computed, over the rollout's whole episodes; min and max run over the
finished episodes kept from recent rollouts. An episode cut by the rollout's end has no return
yet: its steps get the mean guidance of the kept episodes (a neutral value carrying no
information about that episode), and the value bootstrap at the cut stands for the rest.

>>> import numpy as np
>>> from align_gym.wrappers.credit import Episode, EpisodeStore
>>> store = EpisodeStore()
>>> for ret, length in [(0.0, 4), (1.0, 2), (3.0, 3)]:
...     store.add(Episode(np.zeros((length, 0)), ret))
>>> IRCR().rewards(np.zeros((3, 0)), np.array([0.0, 0.5, np.nan]), store).round(3).tolist()
[0.0, 0.5, 0.5]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .core import TransitionBatch
from .credit import EpisodeStore, Redistribution


class IRCR:
    """IRCR's guidance reward; see the module docstring."""

    name = "ircr"
    needs_returns = True

    def features(self, batch: TransitionBatch) -> np.ndarray:
        return np.zeros((len(batch), 0), dtype=np.float32)  # the episode's return is all it reads

    def fit(self, store: EpisodeStore, rng: np.random.Generator) -> dict[str, float]:
        return {}

    def rewards(self, features: np.ndarray, step_returns: np.ndarray, store: EpisodeStore) -> np.ndarray:
        known = store.step_returns()
        if not len(known):
            return np.zeros(len(step_returns))
        low, high = float(known.min()), float(known.max())
        if high <= low:  # every kept episode earned the same: no episode is better than another
            return np.zeros(len(step_returns))
        guidance = np.clip((np.asarray(step_returns, dtype=np.float64) - low) / (high - low), 0.0, 1.0)
        return np.where(np.isnan(guidance), float(((known - low) / (high - low)).mean()), guidance)


def make_ircr(env: Any, gamma: float, capacity: int = 200_000, seed: int = 0, name: str = "ircr") -> Redistribution:
    """The ``ircr`` shaping: relabelled in the agent (install with ``install_credit``); ``seed``
    seeds its generator (an off-policy agent's relabelled minibatches draw from it)."""
    return Redistribution(IRCR(), capacity=capacity, seed=seed, name=name)
