"""The bench's null shaping: a term of tiny, zero-mean, seeded noise that carries no information.

Under paired cells (the same env streams, initial weights and evaluation episodes for every
shaping of a seed) a layer that pays exactly 0 reproduces ``none`` bit for bit, so it calibrates
nothing. ``placebo`` pays ``scale * N(0, 1)`` on every step, independent of everything the agent
sees: its expected return is the task's for every policy (so the optimal policy is unchanged),
yet, as any real shaping does, it moves the learning trajectory away from ``none``'s. How often
the report's rule calls ``placebo`` different from ``none`` is the rule's measured false-positive
rate, and the spread of their paired differences is the grid's noise floor.

``scale`` defaults to 1e-3, small against the task rewards of the bench (a success pays about
1): enough to change every gradient, too little to teach anything.

>>> from align_gym.wrappers.core import TransitionBatch
>>> placebo = PlaceboNoise(seed=0)
>>> batch = TransitionBatch([0] * 3, [0] * 3, [0] * 3, [0] * 3, [{}] * 3, [{}] * 3,
...                         [0.0] * 3, [False] * 3, [False] * 3, [0] * 3)
>>> terms = placebo.reward(batch)
>>> len(terms), bool(abs(terms).max() < 0.01)
(3, True)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .core import RewardModule, TransitionBatch


class PlaceboNoise(RewardModule):
    """``scale * N(0, 1)`` per transition from its own seeded generator (no global RNG)."""

    invariant = True  # zero-mean noise, independent of the transition: every policy's expected return is unchanged
    needs = frozenset()

    def __init__(self, scale: float = 1e-3, seed: int = 0, name: str = "placebo"):
        if not np.isfinite(scale) or scale <= 0:
            raise ValueError(f"placebo needs a finite scale > 0, got {scale!r}")
        self.scale, self.name = float(scale), name
        self._rng = np.random.default_rng(seed)

    def reward(self, batch: TransitionBatch) -> np.ndarray:
        return self.scale * self._rng.standard_normal(len(batch))

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]


def make_placebo(env: Any, gamma: float, scale: float = 1e-3, seed: int = 0, name: str = "placebo") -> PlaceboNoise:
    """The registry's builder for ``placebo(scale=...)``."""
    return PlaceboNoise(scale, seed, name)
