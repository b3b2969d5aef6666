"""Shaping specs: one small language shared by the CLI, config files and Python.

A spec is a registered name with keyword arguments, e.g. ``none``, ``pbrs(potential=reference)``
or ``pbrs(potential=distance, scale=0.5)``. Values are parsed as bool, int, float or else kept as
strings (quotes optional). Several specs are separated by commas outside parentheses.
Adding a method is one :func:`register_shaping` call next to its module, never an ``elif``.

>>> split_specs("none,pbrs(potential=reference, scale=2)")
['none', 'pbrs(potential=reference, scale=2)']
>>> parse_spec("pbrs(potential=reference, scale=0.5)")
ShapingSpec(name='pbrs', kwargs={'potential': 'reference', 'scale': 0.5})
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .core import RewardModule

Builder = Callable[..., RewardModule | None]


@dataclass(frozen=True)
class ShapingSpec:
    """A parsed spec: ``name`` plus keyword arguments."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        if not self.kwargs:
            return self.name
        return f"{self.name}(" + ", ".join(f"{k}={v}" for k, v in self.kwargs.items()) + ")"


@dataclass(frozen=True)
class ShapingEntry:
    name: str
    build: Builder
    invariant: bool
    summary: str


_REGISTRY: dict[str, ShapingEntry] = {}


def register_shaping(name: str, build: Builder, *, invariant: bool, summary: str) -> None:
    """Register ``build(env, gamma=..., **kwargs) -> RewardModule`` under ``name``."""
    if name in _REGISTRY:
        raise ValueError(f"shaping {name!r} is already registered")
    _REGISTRY[name] = ShapingEntry(name, build, invariant, summary)


def shaping_entries() -> list[ShapingEntry]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def split_specs(text: str) -> list[str]:
    """Split ``"none,pbrs(potential=reference, scale=2)"`` at the commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            raise ValueError(f"unbalanced ')' in shaping list {text!r}")
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    if depth:
        raise ValueError(f"unbalanced '(' in shaping list {text!r}")
    parts.append(current.strip())
    return [p for p in parts if p]


def _value(text: str) -> Any:
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_spec(spec: str | ShapingSpec) -> ShapingSpec:
    """Parse ``name(key=value, ...)``; raises ValueError naming what is malformed."""
    if isinstance(spec, ShapingSpec):
        return spec
    text = spec.strip()
    name, _, rest = text.partition("(")
    name = name.strip()
    if not name.isidentifier():
        raise ValueError(f"malformed shaping spec {spec!r}: expected name or name(key=value, ...)")
    kwargs: dict[str, Any] = {}
    if rest:
        if not rest.endswith(")"):
            raise ValueError(f"malformed shaping spec {spec!r}: missing ')'")
        for item in split_specs(rest[:-1]):
            key, eq, value = item.partition("=")
            if not eq or not key.strip().isidentifier():
                raise ValueError(f"malformed argument {item!r} in shaping spec {spec!r}: expected key=value")
            kwargs[key.strip()] = _value(value)
    return ShapingSpec(name, kwargs)


def get_entry(name: str) -> ShapingEntry:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f": did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown shaping {name!r}{hint} see `align-gym list --shaping`")
    return _REGISTRY[name]


def make_module(spec: str | ShapingSpec, env: Any, *, gamma: float) -> RewardModule | None:
    """The reward module a spec describes, for ``env`` (any env, vector env or SB3 VecEnv);
    ``None`` for ``none``. ``gamma`` is the agent's discount."""
    parsed = parse_spec(spec)
    entry = get_entry(parsed.name)
    try:
        return entry.build(env, gamma=gamma, **parsed.kwargs)
    except TypeError as error:
        raise ValueError(f"bad arguments for shaping {parsed}: {error}") from error


def is_invariant(spec: str | ShapingSpec) -> bool:
    return get_entry(parse_spec(spec).name).invariant


def shape_env(env: Any, spec: str | ShapingSpec, *, gamma: float):
    """Wrap a gymnasium env with the shaping ``spec`` describes (``none`` keeps the contract only)."""
    from .core import ShapingWrapper

    return ShapingWrapper(env, make_module(spec, env, gamma=gamma))


def shape_vector_env(envs: Any, spec: str | ShapingSpec, *, gamma: float):
    """The same for a gymnasium vector env."""
    from .vector import ShapingVectorWrapper

    return ShapingVectorWrapper(envs, make_module(spec, envs, gamma=gamma))


def shape_vec_env(venv: Any, spec: str | ShapingSpec, *, gamma: float):
    """The same for a Stable-Baselines3 VecEnv."""
    from .sb3 import ShapingVecEnvWrapper

    return ShapingVecEnvWrapper(venv, make_module(spec, venv, gamma=gamma))
