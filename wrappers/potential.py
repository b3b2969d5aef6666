"""Potential-based reward shaping (Ng, Harada and Russell 1999).

The shaping term ``F(s, s') = gamma * Phi(s') - Phi(s)`` leaves the optimal policy unchanged for
any potential ``Phi``: along any trajectory the terms telescope to ``gamma^T Phi(s_T) - Phi(s_0)``,
so every policy's value shifts by ``-Phi(s_0)`` alone. Two details keep that true in practice:

- ``Phi(terminal) = 0`` on termination. A terminal state has no future, so its potential must not
  pay out; otherwise the agent is rewarded for ending episodes in high-potential states. On
  truncation the episode is only cut, the state is not terminal, and ``Phi(s')`` is kept.
- ``gamma`` must be the agent's own discount. With another value the telescoping breaks and the
  optimal policy can change; it has no default for that reason.

A potential must be finite on every state. One NaN or infinity in a reward reaches the agent's
advantages and then its weights, and training dies much later with an error about logits that
names nothing of the cause; so a non-finite value stops training at once with a
:class:`NonFinitePotential` naming the term, the potential, the state and the step. The setting
``on_nonfinite="zero"`` instead takes 0 as the potential of such a state, counts it (the module's
``nonfinite``, logged as ``align/<name>/nonfinite``) and warns once. Zeroing ``Phi(s)`` rather than
the term keeps the shaping potential-based: the replaced potential is still a function of the
state alone, so the terms still telescope and the optimal policy is still unchanged.
"""

from __future__ import annotations

import reprlib
import warnings
from collections.abc import Callable, Sequence
from math import isfinite
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import RecordConstructorArgs

from .core import RewardModule, ShapingWrapper, TransitionBatch

PotentialFn = Callable[[Any], float]
NONFINITE_SETTINGS = ("raise", "zero")


class NonFinitePotential(ValueError):
    """A potential returned NaN or an infinity: the message names the term, the potential, the
    state and the step; the same facts are attributes (``term``, ``potential`` as it is named in
    the message, ``state``, ``value``, ``episode_step``: 0 for an episode's first state, and
    ``transition``) for code that handles it. It pickles, so it crosses from a vector env's worker."""

    def __init__(self, message: str, *, term: str = "", potential: str = "", state: Any = None,
                 value: float = float("nan"), episode_step: int = 0, transition: int = 0):
        super().__init__(message)
        self.term, self.potential, self.state, self.value = term, potential, state, value
        self.episode_step, self.transition = episode_step, transition


def _describe(potential: Any) -> str:
    """A potential's name for messages: its qualified name for a function, else its repr."""
    name = getattr(potential, "__qualname__", None)
    return f"{potential.__module__}.{name}" if name and getattr(potential, "__module__", None) else repr(potential)


def _show(state: Any) -> str:
    """A state in a message: whole where short, abridged where long (observations, text states)."""
    if isinstance(state, np.ndarray):
        return np.array2string(state, precision=4, threshold=40, max_line_width=10**6)
    shown = reprlib.Repr()
    shown.maxlevel, shown.maxdict, shown.maxlist, shown.maxstring, shown.maxother = 3, 40, 20, 200, 200
    return shown.repr(state)


def check_gamma(gamma: float) -> float:
    if gamma is None or not 0.0 < float(gamma) <= 1.0:
        raise ValueError(f"gamma must be the agent's discount, in (0, 1]; got {gamma!r}")
    return float(gamma)


def env_attribute(env: Any, name: str, default: Any = None) -> Any:
    """The attribute ``name`` of an env under any wrapper, or of a gymnasium vector env's or SB3
    VecEnv's first sub-env (``task``, ``potentials``, ``subgoal_captions``); ``default`` where it
    has none."""
    try:
        if hasattr(env, "get_wrapper_attr"):  # gymnasium.Env and its wrappers
            return env.get_wrapper_attr(name)
        base = getattr(env, "unwrapped", env)
        if hasattr(base, "get_attr"):  # gymnasium VectorEnv and SB3 VecEnv
            try:
                return base.get_attr(name, indices=[0])[0]
            except TypeError:
                return base.get_attr(name)[0]
        return getattr(base, name)
    except AttributeError:
        return default


def named_potentials(env: Any) -> dict[str, PotentialFn]:
    """The named potentials an Align env offers, found through any wrapper or vector env."""
    return dict(env_attribute(env, "potentials", {}))


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

    A non-finite ``Phi`` raises :class:`NonFinitePotential` (``on_nonfinite="raise"``, the
    default), or with ``on_nonfinite="zero"`` is taken as 0, counted in ``nonfinite`` and
    reported by ``update`` (see the module docstring for why the potential, not the term, is
    zeroed). Only the counting setting has an update, so only it makes adapters keep a log.
    """

    invariant = True

    def __init__(self, potential: PotentialFn, gamma: float, scale: float = 1.0, name: str = "pbrs", source: str = "obs",
                 on_nonfinite: str = "raise"):
        if source not in ("obs", "state"):
            raise ValueError(f"source must be 'obs' or 'state', got {source!r}")
        if on_nonfinite not in NONFINITE_SETTINGS:
            raise ValueError(f"on_nonfinite must be 'raise' or 'zero', got {on_nonfinite!r}")
        self.potential = potential
        self.gamma = check_gamma(gamma)
        self.scale = float(scale)
        self.name = name
        self.source = source
        self._batch_potential = getattr(potential, "batch", None)
        self._on_states = source == "state"
        read = ("states", "next_states") if self._on_states else ("obs", "next_obs")
        self.needs = frozenset({*read, "terminated", "truncated", "episode_ids"})
        self.on_nonfinite = on_nonfinite
        self.learns = on_nonfinite == "zero"  # its update only reports the count
        self.nonfinite = 0  # non-finite values taken as 0 (on_nonfinite="zero")
        self.transitions = 0  # transitions scored so far, every sub-env's: the step errors name
        # episode id -> (Phi(s') of its latest transition, that transition's step in the episode)
        self._phi_next: dict[int, tuple[float, int]] = {}

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """The count of non-finite values taken as 0 so far (``on_nonfinite="zero"`` only)."""
        return {"nonfinite": float(self.nonfinite)}

    def _nonfinite(self, value: float, state: Any, episode_step: int, transition: int) -> float:
        """What a non-finite ``value`` of ``Phi(state)`` becomes: an error, or 0 counted."""
        where = "the first state of its episode" if episode_step == 0 else f"the state reached at step {episode_step} of its episode"
        potential = _describe(self.potential)
        message = (f"the potential of term {self.name!r} ({potential}) returned {value!r} for "
                   f"{where} (transition {transition} of this shaping, all sub-envs counted): {_show(state)}")
        if self.on_nonfinite == "raise":
            raise NonFinitePotential(
                f"{message}. A potential must be finite on every state: fix it, or shape with "
                f"on_nonfinite='zero' to take 0 there and count it",
                term=self.name, potential=potential, state=state, value=value, episode_step=episode_step,
                transition=transition)
        if not self.nonfinite:
            warnings.warn(f"{message}; paid as 0 (on_nonfinite='zero'), further ones counted in "
                          f"align/{self.name}/nonfinite", RuntimeWarning, stacklevel=2)
        self.nonfinite += 1
        return 0.0

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
            self.transitions += 1
            known = self._phi_next.pop(episode, None)
            if known is None:
                state = (batch.states if self._on_states else batch.obs)[0]
                phi, step = float(self.potential(state)), 1
                if not isfinite(phi):
                    phi = self._nonfinite(phi, state, 0, self.transitions)
            else:
                phi, step = known[0], known[1] + 1
            phi_next = 0.0
            if not batch.terminated[0]:
                state = (batch.next_states if self._on_states else batch.next_obs)[0]
                phi_next = float(self.potential(state))
                if not isfinite(phi_next):
                    phi_next = self._nonfinite(phi_next, state, step, self.transitions)
                if not batch.truncated[0]:
                    self._phi_next[episode] = (phi_next, step)
            return [self.scale * (self.gamma * phi_next - phi)]
        before, after = (batch.states, batch.next_states) if self._on_states else (batch.obs, batch.next_obs)
        terminated, truncated = batch.terminated, batch.truncated
        # Python lists: numpy element access is slower than the arithmetic here.
        ids, terminated, truncated = _as_list(ids), _as_list(terminated), _as_list(truncated)
        n, first = len(ids), self.transitions + 1  # the transition number of row 0
        self.transitions += n
        known = [self._phi_next.pop(episode, None) for episode in ids]
        missing = [i for i in range(n) if known[i] is None]  # first steps of episodes
        phi = [0.0 if entry is None else entry[0] for entry in known]
        steps = [1 if entry is None else entry[1] + 1 for entry in known]  # each transition's step in its episode
        # Phi(terminal) = 0: a terminal state has no future to pay for (Ng et al. 1999). On
        # truncation the state is not terminal and its potential counts.
        live = [i for i in range(n) if not terminated[i]]
        items = [before[i] for i in missing] + [after[i] for i in live]
        values = self.potentials(items)
        if not all(map(isfinite, values)):
            rows = missing + live
            values = [value if isfinite(value) else
                      self._nonfinite(value, items[j], 0 if j < len(missing) else steps[rows[j]], first + rows[j])
                      for j, value in enumerate(values)]
        for i, value in zip(missing, values):
            phi[i] = value
        phi_next = [0.0] * n
        for i, value in zip(live, values[len(missing):]):
            phi_next[i] = value
            if not truncated[i]:
                self._phi_next[ids[i]] = (value, steps[i])
        return [self.scale * (self.gamma * phi_next[i] - phi[i]) for i in range(n)]


def _as_list(values: Sequence[Any]) -> list[Any]:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def make_potential_reward(env: Any, potential: str | PotentialFn, gamma: float, scale: float = 1.0,
                          name: str = "pbrs", source: str | None = None, on_nonfinite: str = "raise") -> PotentialReward:
    """Build the module for ``env``: a potential's name reads ``info["state"]``, a callable the
    observation unless ``source`` says otherwise; ``on_nonfinite`` as in :class:`PotentialReward`."""
    if source is None:
        source = "obs" if callable(potential) else "state"
    return PotentialReward(resolve_potential(env, potential), gamma, scale, name, source, on_nonfinite)


class PotentialShaping(ShapingWrapper, RecordConstructorArgs):
    """Adds ``scale * (gamma * Phi(s') - Phi(s))`` to each reward; ``Phi(s') = 0`` on termination.

    ``potential`` is a function of the observation (or, with ``source="state"``, of
    ``info["state"]``), or the name of a potential the Align env offers (``"reference"``,
    ``"distance"``). ``gamma`` must be the agent's discount. A non-finite potential raises
    :class:`NonFinitePotential`; ``on_nonfinite="zero"`` takes it as 0 and counts it instead.

    >>> import gymnasium as gym
    >>> env = PotentialShaping(gym.make("CartPole-v1"), potential=lambda obs: -abs(obs[2]), gamma=0.99)
    >>> _ = env.reset(seed=0)
    >>> _, reward, *_, info = env.step(0)
    >>> round(reward - info["env_reward"], 6) == round(info["reward_terms"]["pbrs"], 6)
    True
    """

    def __init__(self, env: gym.Env, potential: str | PotentialFn, gamma: float, scale: float = 1.0,
                 name: str = "pbrs", source: str | None = None, on_nonfinite: str = "raise"):
        RecordConstructorArgs.__init__(self, potential=potential, gamma=gamma, scale=scale, name=name, source=source,
                                       on_nonfinite=on_nonfinite)
        ShapingWrapper.__init__(self, env, make_potential_reward(env, potential, gamma, scale, name, source, on_nonfinite))
