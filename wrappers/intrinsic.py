"""Intrinsic rewards: an exploration bonus (or any learned bonus) added as a shaping term.

:class:`IntrinsicTerm` turns a bonus module (``count``, ``rnd``, ``e3b``; later the LLM-feedback
ones) into the term ``coef * (1 - decay)^k * b``, where ``b`` is the module's bonus and ``k`` the
number of updates so far (rllte's decay schedule, counted in updates so that it means the same in
every adapter). It passes the module's lifecycle through (``update``, episode starts,
``state_dict``), and is marked non-invariant: a bonus is not potential-based and can change what
is optimal, and every report says so.

With ``normalize=True`` the bonus is first divided by a running standard deviation of the bonuses
seen (updated at each ``update``), so ``coef`` is the term's scale in units of its own spread: the
same ``coef`` then suits bonuses of very different raw sizes. Without it, ``coef`` multiplies the
raw bonus. (RND divides by the spread of intrinsic *returns* itself; do not normalise it twice.)

The term is added to the env reward before the agent computes its advantages (rllte's PPO adds
intrinsic rewards after computing them, a bug not copied here).

>>> import gymnasium as gym, align_gym
>>> from align_gym.wrappers import CountBonus, IntrinsicReward
>>> env = IntrinsicReward(gym.make("Align/KeyDoor-5x5-v0"), CountBonus(key="state"), coef=0.1)
>>> _ = env.reset(seed=0)
>>> _, reward, *_, info = env.step(0)
>>> info["reward_terms"]["count"] > 0
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.utils import RecordConstructorArgs

from .core import EpisodeStarts, RewardModule, ShapingWrapper, TransitionBatch, module_learns


class RunningStd:
    """Running mean and variance (Chan et al.'s parallel update), for normalisers."""

    def __init__(self) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, 1e-4

    def update(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()
        if not values.size:
            return
        mean, var, n = float(values.mean()), float(values.var()), values.size
        delta, total = mean - self.mean, self.count + n
        self.mean += delta * n / total
        self.var = (self.var * self.count + var * n + delta ** 2 * self.count * n / total) / total
        self.count = total

    @property
    def std(self) -> float:
        return float(np.sqrt(self.var)) + 1e-8

    def state_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.mean, self.var, self.count = state["mean"], state["var"], state["count"]


class IntrinsicTerm(RewardModule):
    """``coef * (1 - decay)^updates * bonus`` of a bonus module, optionally normalised."""

    invariant = False

    def __init__(self, bonus: Any, coef: float = 0.01, decay: float = 0.0, normalize: bool = False,
                 name: str | None = None):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay!r}")
        self.bonus, self.coef, self.decay, self.normalize = bonus, float(coef), float(decay), bool(normalize)
        self.name = name or bonus.name
        self.needs = getattr(bonus, "needs", RewardModule.needs)
        self.update_every = getattr(bonus, "update_every", RewardModule.update_every)
        self.updates = 0
        # env steps the bonus took before training (Motif's offline phase): a cell's budget pays them
        self.offline_steps = int(getattr(bonus, "offline_steps", 0))
        self._spread = RunningStd()
        self._recent: list[np.ndarray] = []

    def scale(self) -> float:
        """The factor the raw bonus is multiplied by now."""
        factor = self.coef * (1.0 - self.decay) ** self.updates
        return factor / self._spread.std if self.normalize else factor

    def reward(self, batch: TransitionBatch) -> np.ndarray:
        raw = np.asarray(self.bonus.reward(batch), dtype=np.float64)
        if self.normalize:
            self._recent.append(raw)
        return raw * self.scale()

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        stats = dict(self.bonus.update(batch) or {}) if module_learns(self.bonus) else {}
        if self._recent:
            self._spread.update(np.concatenate(self._recent))
            self._recent = []
        self.updates += 1
        return {**stats, "scale": self.scale()}

    def start_episodes(self, starts: EpisodeStarts) -> None:
        if hasattr(self.bonus, "start_episodes"):
            self.bonus.start_episodes(starts)

    def close(self) -> None:
        if callable(getattr(self.bonus, "close", None)):
            self.bonus.close()

    def state_dict(self) -> dict[str, Any]:
        inner = self.bonus.state_dict() if hasattr(self.bonus, "state_dict") else {}
        return {"bonus": inner, "updates": self.updates, "spread": self._spread.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if hasattr(self.bonus, "load_state_dict"):
            self.bonus.load_state_dict(state["bonus"])
        self.updates = state["updates"]
        self._spread.load_state_dict(state["spread"])


class IntrinsicReward(ShapingWrapper, RecordConstructorArgs):
    """Adds an intrinsic bonus to each reward: ``coef * (1 - decay)^updates * bonus`` under
    ``info["reward_terms"][name]``; see the module docstring. The vector forms are
    ``ShapingVectorWrapper(envs, IntrinsicTerm(...))`` and ``ShapingVecEnvWrapper(venv,
    IntrinsicTerm(...))``, or the spec language (``"count(coef=0.1)"``, ``"pbrs(potential=reference)+rnd"``).
    """

    def __init__(self, env: Any, bonus: Any, coef: float = 0.01, decay: float = 0.0, normalize: bool = False,
                 name: str | None = None):
        RecordConstructorArgs.__init__(self, coef=coef, decay=decay, normalize=normalize, name=name)
        ShapingWrapper.__init__(self, env, IntrinsicTerm(bonus, coef, decay, normalize, name))


def make_intrinsic(bonus: Any, coef: float, decay: float = 0.0, normalize: bool = False,
                   name: str | None = None) -> IntrinsicTerm:
    """The registry's way to build a bonus's term (each ``count``, ``rnd``, ``e3b`` builder calls it)."""
    return IntrinsicTerm(bonus, coef, decay, normalize, name)
