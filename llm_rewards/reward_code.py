"""LLM-written shaping code (Eureka, Ma et al. 2023; Text2Reward, Xie et al. 2023): the prompt
that asks for it, and the shapings that run it.

- :func:`reward_prompt` describes the env as Text2Reward does: a compact, Pythonic abstraction of
  its state (``state_schema`` as a class, with types read off an example state) and its task, and
  asks for ``potential(state)`` (the default) or ``reward(state, action, next_state)``.
- ``llm_potential(path=...)`` shapes with the code's value as a potential, through potential-based
  shaping: invariant, so a bad function slows learning but cannot change what is optimal.
  ``llm_reward(path=...)`` adds the code's value to every reward: not invariant, and marked so.
- Code may return a dict of named components. Each becomes a term of its own
  (``llm_potential.<component>``): a sum of potentials shapes exactly as their total does, and
  each part is logged.
- Code checked on recorded states can still return NaN or an infinity on a state it was never
  shown. At run time such a value stops training at once with an error naming the term, the code
  file, the state and the step (:class:`~align_gym.wrappers.potential.NonFinitePotential` for a
  potential, :class:`NonFiniteReward` for a reward), instead of poisoning the agent's weights and failing
  far from its cause; ``on_nonfinite="zero"`` takes it as 0 instead, counts it and logs the count
  (``align/<term>/nonfinite``).

``path`` is a ``.py`` file or a reward-search folder (its ``summary.json`` names the best file).
The code only ever runs in the sandbox.

>>> import gymnasium as gym, align_gym
>>> env = gym.make("Align/KeyDoor-5x5-v0")
>>> print(abstraction(env.unwrapped.state_schema, env.reset(seed=0)[1]["state"]).splitlines()[1])
    agent_x: int  # agent column (0 = left wall)
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..wrappers.core import RewardModule, TransitionBatch
from .codegen import CALLER, BatchMemo, CodeSpec, _shown

SPECS = {"potential": CodeSpec("potential", 1), "reward": CodeSpec("reward", 3)}
SIGNATURES = {"potential": "potential(state: dict) -> float", "reward": "reward(state: dict, action, next_state: dict) -> float"}
MEANINGS = {
    "potential": "Its value should rise as the state gets closer to completing the task: the agent is paid how "
                 "much it rises at each step (potential-based shaping), so it guides without changing the goal.",
    "reward": "Its value is added to the task's own reward at every step: make it dense, and make it reward "
              "progress towards the task, not anything else.",
}


def abstraction(schema: dict[str, str], example: dict[str, Any] | None = None) -> str:
    """``state_schema`` as a class (Text2Reward's environment abstraction), types from ``example``."""
    lines = ["class State:"]
    for key, meaning in schema.items():
        kind = type(example[key]).__name__ if example and key in example else "float"
        lines.append(f"    {key}: {kind}  # {meaning}")
    return "\n".join(lines)


def reward_prompt(env: Any, kind: str = "potential", example_state: dict[str, Any] | None = None,
                  feedback: str = "") -> list[dict[str, str]]:
    """The ``reward_code`` chat prompt for ``env`` (any Align env, or anything with ``task`` and
    ``state_schema``), asking for ``kind`` (``potential`` or ``reward``)."""
    from .prompts import load_template

    if kind not in SPECS:
        raise ValueError(f"kind must be 'potential' or 'reward', got {kind!r}")
    base = getattr(env, "unwrapped", env)
    task, schema = getattr(type(base), "task", "") or base.task, base.state_schema
    if not schema:
        raise ValueError("reward code reads info['state']: this env has no state_schema")
    example = json.dumps(example_state, sort_keys=True) if example_state else "(not given)"
    return load_template("reward_code").render_chat(
        task=task, abstraction=abstraction(schema, example_state), example_state=example,
        function=SIGNATURES[kind], meaning=MEANINGS[kind], feedback=f"\n{feedback.strip()}\n" if feedback else "")


def code_path(path: str | Path) -> Path:
    """The code file ``path`` names: a ``.py`` file, or a search folder's best candidate."""
    path = Path(path)
    if path.is_dir():
        summary = path / "summary.json"
        if not summary.exists():
            raise FileNotFoundError(f"{path} is a folder without summary.json: give a .py file or a reward-search folder")
        best = json.loads(summary.read_text()).get("best")
        if not best:
            raise ValueError(f"the search in {path} found no valid candidate (see its summary.json)")
        path = path / best
    if not path.exists():
        raise FileNotFoundError(f"no code file at {path}")
    return path


class LLMCode:
    """A checked code file, run in the sandbox: ``outputs(items)`` gives each input's value as a
    dict of components (``{"total": v}`` for code that returns a number), cached per input."""

    def __init__(self, source: str, kind: str = "potential", cache_size: int = 100_000, path: str | Path | None = None):
        from .sandbox import load_function

        spec = SPECS[kind]
        self.kind, self.source, self.path = kind, source, None if path is None else str(path)
        wrapped = source + (f"\n\n\ndef {CALLER}(values):\n    return {spec.name}(*values)\n" if spec.arguments > 1 else "")
        self.function = load_function(wrapped, CALLER if spec.arguments > 1 else spec.name, timeout=10.0)
        self._memo = BatchMemo(self._evaluate, cache_size)

    @classmethod
    def load(cls, path: str | Path, kind: str = "potential") -> LLMCode:
        path = code_path(path)
        return cls(path.read_text(), kind, path=path)

    def __repr__(self) -> str:
        where = repr(self.path) if self.path else f"<source of {len(self.source.splitlines())} lines>"
        return f"LLMCode({where}, kind={self.kind!r})"

    def outputs(self, items: Sequence[Any]) -> list[dict[str, float]]:
        return self._memo(items)

    def _evaluate(self, items: list[Any]) -> list[dict[str, float]]:
        return [{str(name): float(v) for name, v in value.items()} if isinstance(value, dict) else {"total": float(value)}
                for value in self.function.batch(items)]

    def components(self, example: Any) -> list[str]:
        """The component names the code returns (``["total"]`` for a plain number)."""
        return sorted(self.outputs([example])[0])

    def close(self) -> None:
        self.function.close()


class LLMPotential:
    """The potential an :class:`LLMCode` computes (one component of it, or the total): callable on
    a state, with a ``batch`` form for :class:`~align_gym.wrappers.PotentialReward`.

    >>> phi = LLMPotential.from_source("def potential(state):\\n    return {'a': state['x'], 'b': 1.0}")
    >>> phi({"x": 2.0}), LLMPotential(phi.code, "a").batch([{"x": 3.0}])
    (3.0, [3.0])
    """

    def __init__(self, code: LLMCode, component: str | None = None):
        self.code, self.component = code, component

    @classmethod
    def from_source(cls, source: str) -> LLMPotential:
        return cls(LLMCode(source, "potential"))

    @classmethod
    def load(cls, path: str | Path) -> LLMPotential:
        """The potential in ``path``: a ``.py`` file or a reward-search folder (its best candidate)."""
        return cls(LLMCode.load(path, "potential"))

    def batch(self, states: Sequence[Any]) -> list[float]:
        outputs = self.code.outputs(states)
        if self.component is None:
            return [sum(out.values()) for out in outputs]
        return [out[self.component] for out in outputs]

    def __call__(self, state: Any) -> float:
        return self.batch([state])[0]

    def __repr__(self) -> str:  # errors about a value name the potential by its file
        where = repr(self.code.path) if self.code.path else f"<source of {len(self.code.source.splitlines())} lines>"
        return f"LLMPotential({where}" + (f", component={self.component!r})" if self.component else ")")


class NonFiniteReward(ValueError):
    """LLM-written reward code returned NaN or an infinity at run time (the message names the
    term, the code file, the transition and the step)."""


class LLMRewardTerm(RewardModule):
    """``coef * reward(state, action, next_state)`` (one component, or the total) added to each
    step's reward; not invariant. A non-finite value raises :class:`NonFiniteReward` naming the term, the
    code, the transition and the step, or with ``on_nonfinite="zero"`` pays 0, counted in
    ``nonfinite`` and reported by ``update``."""

    invariant = False
    needs = frozenset({"states", "actions", "next_states"})

    def __init__(self, code: LLMCode, coef: float = 1.0, name: str = "llm_reward", component: str | None = None,
                 on_nonfinite: str = "raise"):
        from ..wrappers.potential import NONFINITE_SETTINGS

        if on_nonfinite not in NONFINITE_SETTINGS:
            raise ValueError(f"on_nonfinite must be 'raise' or 'zero', got {on_nonfinite!r}")
        self.code, self.coef, self.name, self.component = code, float(coef), name, component
        self.on_nonfinite = on_nonfinite
        self.learns = on_nonfinite == "zero"  # its update only reports the count
        self.nonfinite = 0
        self.transitions = 0  # transitions scored so far, every sub-env's

    def reward(self, batch: TransitionBatch) -> np.ndarray:
        actions = [a.tolist() if isinstance(a, np.ndarray | np.generic) else a for a in batch.actions]
        inputs = [[s, a, t] for s, a, t in zip(batch.states, actions, batch.next_states)]
        outputs = self.code.outputs(inputs)
        values = np.asarray([sum(out.values()) if self.component is None else out[self.component] for out in outputs],
                            dtype=float)
        first, self.transitions = self.transitions + 1, self.transitions + len(values)
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            i = int(bad[0])
            message = (f"the reward code of term {self.name!r} ({self.code!r}) returned {values[i]!r} at transition "
                       f"{first + i} of this shaping (all sub-envs counted), for state {_shown(inputs[i][0])}, action "
                       f"{_shown(inputs[i][1])}, next state {_shown(inputs[i][2])}")
            if self.on_nonfinite == "raise":
                raise NonFiniteReward(f"{message}. Reward code must be finite on every transition: fix it, or shape "
                                      f"with on_nonfinite='zero' to pay 0 there and count it")
            if not self.nonfinite:
                warnings.warn(f"{message}; paid as 0 (on_nonfinite='zero'), further ones counted in "
                              f"align/{self.name}/nonfinite", RuntimeWarning, stacklevel=2)
            self.nonfinite += len(bad)
            values[bad] = 0.0
        return self.coef * values

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        """The count of non-finite values paid as 0 so far (``on_nonfinite="zero"`` only)."""
        return {"nonfinite": float(self.nonfinite)}


def _example_state(env: Any) -> dict[str, Any]:
    """A state of the env's task, from a fresh instance (the env being shaped is left alone)."""
    import gymnasium as gym

    spec = getattr(env, "spec", None)
    if spec is None and hasattr(env, "get_attr"):  # a vector env
        spec = env.get_attr("spec")[0]
    if spec is None:
        raise ValueError("LLM-written code reads info['state']: shape an env made with gym.make (an Align id)")
    probe = gym.make(spec.id, **spec.kwargs)
    try:
        return probe.reset(seed=0)[1]["state"]
    finally:
        probe.close()


def make_llm_potential(env: Any, gamma: float, path: str, scale: float = 1.0, name: str = "llm_potential",
                       on_nonfinite: str = "raise") -> list[RewardModule]:
    """The ``llm_potential`` shaping: potential-based, one term per component of the code. A
    non-finite value stops training with an error naming it (``on_nonfinite="raise"``) or is
    taken as 0 and counted (``"zero"``)."""
    from ..wrappers.potential import PotentialReward

    code = LLMCode.load(path, "potential")
    names = code.components(_example_state(env))
    if names == ["total"]:
        return [PotentialReward(LLMPotential(code), gamma, scale, name, source="state", on_nonfinite=on_nonfinite)]
    return [PotentialReward(LLMPotential(code, c), gamma, scale, f"{name}.{c}", source="state", on_nonfinite=on_nonfinite)
            for c in names]


def make_llm_reward(env: Any, gamma: float, path: str, coef: float = 1.0, name: str = "llm_reward",
                    on_nonfinite: str = "raise") -> list[RewardModule]:
    """The ``llm_reward`` shaping: the code's value added raw, one term per component;
    ``on_nonfinite`` as for ``llm_potential``."""
    code = LLMCode.load(path, "reward")
    example = _example_state(env)
    names = sorted(code.outputs([[example, 0, example]])[0])
    if names == ["total"]:
        return [LLMRewardTerm(code, coef, name, on_nonfinite=on_nonfinite)]
    return [LLMRewardTerm(code, coef, f"{name}.{c}", c, on_nonfinite) for c in names]
