"""Potential-based reward shaping (Ng, Harada and Russell 1999).

The shaping term ``F(s, s') = gamma * Phi(s') - Phi(s)`` leaves the optimal policy unchanged for
any potential ``Phi``: along any trajectory the terms telescope to ``gamma^T Phi(s_T) - Phi(s_0)``,
so every policy's value shifts by ``-Phi(s_0)`` alone. Two details keep that true in practice:

- ``Phi(terminal) = 0`` on termination. A terminal state has no future, so its potential must not
  pay out; otherwise the agent is rewarded for ending episodes in high-potential states. On
  truncation the episode is only cut, the state is not terminal, and ``Phi(s')`` is kept.
- ``gamma`` must be the agent's own discount. With another value the telescoping breaks and the
  optimal policy can change; it has no default for that reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import RecordConstructorArgs

from .core import RewardModule, ShapingWrapper, TransitionBatch

PotentialFn = Callable[[Any], float]


def check_gamma(gamma: float) -> float:
    if gamma is None or not 0.0 < float(gamma) <= 1.0:
        raise ValueError(f"gamma must be the agent's discount, in (0, 1]; got {gamma!r}")
    return float(gamma)


def named_potentials(env: Any) -> dict[str, PotentialFn]:
    """The named potentials an Align env offers, found through any wrapper or vector env."""
    try:
        if hasattr(env, "get_wrapper_attr"):  # gymnasium.Env and its wrappers
            return dict(env.get_wrapper_attr("potentials"))
        base = getattr(env, "unwrapped", env)
        if hasattr(base, "get_attr"):  # gymnasium VectorEnv and SB3 VecEnv
            try:
                return dict(base.get_attr("potentials", indices=[0])[0])
            except TypeError:
                return dict(base.get_attr("potentials")[0])
    except AttributeError:
        pass
    return {}


def resolve_potential(env: Any, potential: str | PotentialFn) -> PotentialFn:
    """A callable potential, or the named one of ``env`` (``"reference"``, ``"distance"``)."""
    if callable(potential):
        return potential
    available = named_potentials(env)
    if potential not in available:
        offered = ", ".join(sorted(available)) or "none (not an Align env: pass a callable instead)"
        raise ValueError(f"unknown potential {potential!r}; this env offers: {offered}")
    return available[potential]


class PotentialReward(RewardModule):
    """The reward module of potential-based shaping: ``scale * (gamma * Phi(s') - Phi(s))``.

    ``source="obs"`` evaluates ``potential`` on observations, ``source="state"`` on
    ``info["state"]`` dicts. Scaling the term is the same as scaling the potential, so it stays
    potential-based. A potential with a ``batch`` method (``potential.batch(items) -> floats``, as
    sandboxed functions have) is called once per batch for every value it needs; a plain
    function once per value. ``Phi(s)`` of a transition is ``Phi(s')`` of the same episode's
    previous one, reused rather than recomputed, so each state is evaluated once: that relies on
    the adapters' episode ids, so give each adapter a module of its own.
    """

    invariant = True

    def __init__(self, potential: PotentialFn, gamma: float, scale: float = 1.0, name: str = "pbrs", source: str = "obs"):
        if source not in ("obs", "state"):
            raise ValueError(f"source must be 'obs' or 'state', got {source!r}")
        self.potential = potential
        self.gamma = check_gamma(gamma)
        self.scale = float(scale)
        self.name = name
        self.source = source
        self._batch_potential = getattr(potential, "batch", None)
        self._on_states = source == "state"
        read = ("states", "next_states") if self._on_states else ("obs", "next_obs")
        self.needs = frozenset({*read, "terminated", "truncated", "episode_ids"})
        self._phi_next: dict[int, float] = {}  # episode id -> Phi(s') of its latest transition

    def potentials(self, items: Sequence[Any]) -> list[float]:
        """Phi of each of ``items`` (observations or state dicts), in one call where the
        potential has a batch form."""
        if not items:
            return []
        if self._batch_potential is not None:
            return [float(value) for value in self._batch_potential(list(items))]
        return [float(self.potential(item)) for item in items]

    def reward(self, batch: TransitionBatch) -> list[float]:
        ids = batch.episode_ids
        if len(ids) == 1 and self._batch_potential is None:
            # The single-env adapter's case, in plain floats: the general path below costs ~2 us
            # of list handling, half an Align env's whole step. Same arithmetic, same cache.
            episode = ids[0]
            phi = self._phi_next.pop(episode, None)
            if phi is None:
                phi = float(self.potential((batch.states if self._on_states else batch.obs)[0]))
            phi_next = 0.0
            if not batch.terminated[0]:
                phi_next = float(self.potential((batch.next_states if self._on_states else batch.next_obs)[0]))
                if not batch.truncated[0]:
                    self._phi_next[episode] = phi_next
            return [self.scale * (self.gamma * phi_next - phi)]
        before, after = (batch.states, batch.next_states) if self._on_states else (batch.obs, batch.next_obs)
        terminated, truncated = batch.terminated, batch.truncated
        # Python lists: numpy element access is slower than the arithmetic here.
        ids, terminated, truncated = _as_list(ids), _as_list(terminated), _as_list(truncated)
        n = len(ids)
        phi = [self._phi_next.pop(episode, None) for episode in ids]
        missing = [i for i in range(n) if phi[i] is None]  # first steps of episodes
        # Phi(terminal) = 0: a terminal state has no future to pay for (Ng et al. 1999). On
        # truncation the state is not terminal and its potential counts.
        live = [i for i in range(n) if not terminated[i]]
        values = self.potentials([before[i] for i in missing] + [after[i] for i in live])
        for i, value in zip(missing, values):
            phi[i] = value
        phi_next = [0.0] * n
        for i, value in zip(live, values[len(missing):]):
            phi_next[i] = value
            if not truncated[i]:
                self._phi_next[ids[i]] = value
        return [self.scale * (self.gamma * phi_next[i] - phi[i]) for i in range(n)]


def _as_list(values: Sequence[Any]) -> list[Any]:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def make_potential_reward(env: Any, potential: str | PotentialFn, gamma: float, scale: float = 1.0,
                          name: str = "pbrs", source: str | None = None) -> PotentialReward:
    """Build the module for ``env``: a potential's name reads ``info["state"]``, a callable the
    observation unless ``source`` says otherwise."""
    if source is None:
        source = "obs" if callable(potential) else "state"
    return PotentialReward(resolve_potential(env, potential), gamma, scale, name, source)


class PotentialShaping(ShapingWrapper, RecordConstructorArgs):
    """Adds ``scale * (gamma * Phi(s') - Phi(s))`` to each reward; ``Phi(s') = 0`` on termination.

    ``potential`` is a function of the observation (or, with ``source="state"``, of
    ``info["state"]``), or the name of a potential the Align env offers (``"reference"``,
    ``"distance"``). ``gamma`` must be the agent's discount.

    >>> import gymnasium as gym
    >>> env = PotentialShaping(gym.make("CartPole-v1"), potential=lambda obs: -abs(obs[2]), gamma=0.99)
    >>> _ = env.reset(seed=0)
    >>> _, reward, *_, info = env.step(0)
    >>> round(reward - info["env_reward"], 6) == round(info["reward_terms"]["pbrs"], 6)
    True
    """

    def __init__(self, env: gym.Env, potential: str | PotentialFn, gamma: float, scale: float = 1.0,
                 name: str = "pbrs", source: str | None = None):
        RecordConstructorArgs.__init__(self, potential=potential, gamma=gamma, scale=scale, name=name, source=source)
        ShapingWrapper.__init__(self, env, make_potential_reward(env, potential, gamma, scale, name, source))
