"""Shaping specs: one small language shared by the CLI, config files and Python.

A spec names a registered shaping with keyword arguments, e.g. ``none``,
``pbrs(potential=reference)`` or ``pbrs(potential=distance, scale=0.5)``; layers stack with ``+``
(``pbrs(potential=reference)+pbrs(potential=distance, name=d)``), the first one innermost, each
adding its own term. A spec is parsed as a Python expression with :mod:`ast`, so values are Python
literals (quoted strings may hold commas, lists and dicts work); a bare word is a string and
``true``/``false`` are booleans. A list of specs is separated by commas outside brackets and quotes.

Every shaping is registered by name with the module that builds it as a ``"module:function"``
string, imported on first use: listing shapings and :func:`is_invariant` import nothing heavy, and
methods that need torch keep ``import align_gym.wrappers`` lean. Adding a method is one line in
:data:`BUILTIN_SHAPINGS`, never an ``elif``.

>>> split_specs('none,pbrs(potential=reference, scale=2),x(prompt="pick up, then open")')
['none', 'pbrs(potential=reference, scale=2)', 'x(prompt="pick up, then open")']
>>> parse_spec("pbrs(potential=reference, scale=0.5)+pbrs(potential=distance, name=d)")
[ShapingSpec(name='pbrs', kwargs={'potential': 'reference', 'scale': 0.5}), ShapingSpec(name='pbrs', kwargs={'potential': 'distance', 'name': 'd'})]
"""

from __future__ import annotations

import ast
import difflib
import importlib
import inspect
import keyword
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .core import RewardModule

Builder = Callable[..., RewardModule | list[RewardModule] | None]
SpecLike = str | Sequence["ShapingSpec"]

# name -> ("module:function" that builds it, invariant, one-line summary). The builder is called as
# build(env, gamma=..., **kwargs) and returns a reward module, a list of them (one term each: the
# components of one function), or None for no shaping.
BUILTIN_SHAPINGS: dict[str, tuple[str, bool, str]] = {
    "none": ("align_gym.wrappers.registry:build_none", True,
             "no shaping: the task reward alone (the baseline)"),
    "placebo": ("align_gym.wrappers.placebo:make_placebo", True,
                "the bench's null: tiny zero-mean seeded noise scale*N(0,1) per step, no information; scale=1e-3"),
    "pbrs": ("align_gym.wrappers.potential:make_potential_reward", True,
             "potential-based shaping gamma*Phi(s')-Phi(s) (Ng et al. 1999); potential=reference|distance|<callable>"),
    "count": ("align_gym.wrappers.count:make_count", False,
              "count bonus coef/sqrt(N(x)); key=state|obs|caption, scope=global|episode"),
    "rnd": ("align_gym.wrappers.rnd:make_rnd", False,
            "random network distillation (Burda et al. 2018): prediction error of a fixed random net"),
    "toolrl": ("align_gym.wrappers.toolrl:make_toolrl", False,
               "ToolRL (Qian et al. 2025): format and name/argument matches of each call against the reference call"),
    "e3b": ("align_gym.wrappers.e3b:make_e3b", False,
            "elliptical episodic bonus over an inverse-dynamics embedding (Henaff et al. 2022)"),
    "ellm": ("align_gym.llm_rewards.ellm:make_ellm", False,
             "caption similarity to LLM-suggested goals (Du et al. 2023); llm=hf:default|openai:..."),
    "motif": ("align_gym.llm_rewards.motif:make_motif", False,
              "Bradley-Terry caption reward from offline LLM preferences (Klissarov et al. 2023); llm=...|oracle"),
    "llm_potential": ("align_gym.llm_rewards.reward_code:make_llm_potential", True,
                      "an LLM-written potential (Eureka, Text2Reward) from path=FILE.py or a reward-search folder"),
    "llm_reward": ("align_gym.llm_rewards.reward_code:make_llm_reward", False,
                   "an LLM-written reward(state, action, next_state) added raw, from path=FILE.py or a search folder"),
    "web_judge": ("align_gym.llm_rewards.web_judge:make_web_judge", False,
                  "an LLM rates each page for progress on its instruction, paid per step (WebRL, WebArbiter); llm=..."),
    "ircr": ("align_gym.wrappers.ircr:make_ircr", False,
             "IRCR (Gangwani et al. 2020): each step paid its episode's min-max normalised R/T, relabelled in the agent"),
    "rrd": ("align_gym.wrappers.rrd:make_rrd", False,
            "RRD (Ren et al. 2022): a per-step reward model fit to returns on random subsequences; online=true pays it online"),
    "lare": ("align_gym.llm_rewards.lare:make_lare", False,
             "LaRe (Qu et al. 2025): LLM-written latent factors of each step, decoded by an RRD-trained model; llm=...|code=FILE.py"),
    "calm": ("align_gym.llm_rewards.calm:make_calm", False,
             "CALM (Pignatelli et al. 2024): LLM-annotated subgoal steps pay beta*minmax(count[(state, action)]); llm=...|oracle"),
    "oni": ("align_gym.llm_rewards.oni:make_oni", False,
            "online LLM labels of the agent's captions (Zheng et al. 2024); variant=retrieval|classification, llm=...|oracle"),
}


def build_none(env: Any, gamma: float) -> None:
    return None


@dataclass(frozen=True)
class ShapingSpec:
    """One parsed layer: ``name`` plus keyword arguments."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        if not self.kwargs:
            return self.name
        return f"{self.name}(" + ", ".join(f"{k}={_format_value(v)}" for k, v in self.kwargs.items()) + ")"


def _format_value(value: Any) -> str:
    bare = isinstance(value, str) and value.isidentifier() and not keyword.iskeyword(value) and value not in ("true", "false")
    return value if bare else repr(value)


def format_spec(layers: Sequence[ShapingSpec]) -> str:
    """The text of a stack of layers; ``parse_spec(format_spec(layers)) == layers``."""
    return "+".join(str(layer) for layer in layers)


@dataclass(frozen=True)
class ShapingEntry:
    name: str
    target: str | Builder
    invariant: bool
    summary: str

    def build(self, env: Any, gamma: float, **kwargs: Any) -> RewardModule | list[RewardModule] | None:
        return self.builder()(env, gamma=gamma, **kwargs)

    def builder(self) -> Builder:
        """The build function, importing its module on first use."""
        if callable(self.target):
            return self.target
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)


_REGISTRY: dict[str, ShapingEntry] = {}


def register_shaping(name: str, build: str | Builder, *, invariant: bool, summary: str) -> None:
    """Register ``build(env, gamma=..., **kwargs) -> RewardModule`` (or a ``"module:function"``
    string naming it, imported on first use) under ``name``."""
    if not name.isidentifier():
        raise ValueError(f"a shaping name must be an identifier, got {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"shaping {name!r} is already registered")
    _REGISTRY[name] = ShapingEntry(name, build, invariant, summary)


def shaping_entries() -> list[ShapingEntry]:
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def split_specs(text: str) -> list[str]:
    """Split a comma-separated list at the commas outside brackets and quotes."""
    parts, current, closing, quote = [], "", [], None
    pairs = {"(": ")", "[": "]", "{": "}"}
    for index, char in enumerate(text):
        if quote:
            if char == quote and text[index - 1] != "\\":
                quote = None
        elif char in "'\"":
            quote = char
        elif char in pairs:
            closing.append(pairs[char])
        elif char in ")]}":
            if not closing or closing.pop() != char:
                raise ValueError(f"unbalanced {char!r} in list {text!r}")
        elif char == "," and not closing:
            parts.append(current.strip())
            current = ""
            continue
        current += char
    if closing or quote:
        raise ValueError(f"unbalanced {(quote or closing[-1])!r} in list {text!r}: it is never closed")
    parts.append(current.strip())
    return [p for p in parts if p]


def _literal(node: ast.expr, text: str) -> Any:
    """A spec value: a Python literal, a bare word as a string, true/false as booleans."""
    if isinstance(node, ast.Name):
        return {"true": True, "false": False}.get(node.id, node.id)
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(element, text) for element in node.elts]
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_literal(k, text): _literal(v, text) for k, v in zip(node.keys, node.values)}
    try:
        return ast.literal_eval(node)
    except ValueError:  # anything else (a.b, x-y) is kept as the text the user wrote
        return ast.get_source_segment(text, node)


def _layers(node: ast.expr) -> list[ast.expr]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _layers(node.left) + _layers(node.right)
    return [node]


def _parse_layer(node: ast.expr, text: str) -> ShapingSpec:
    if isinstance(node, ast.Name):
        return ShapingSpec(node.id)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.args or any(k.arg is None for k in node.keywords):
            raise ValueError(f"malformed shaping spec {text!r}: arguments of {node.func.id} must be key=value")
        return ShapingSpec(node.func.id, {k.arg: _literal(k.value, text) for k in node.keywords})
    raise ValueError(f"malformed shaping spec {text!r}: {ast.get_source_segment(text, node)!r} is not "
                     "name or name(key=value, ...)")


def parse_spec(spec: SpecLike | ShapingSpec) -> list[ShapingSpec]:
    """The layers of a spec, innermost first; raises ValueError naming what is malformed."""
    if isinstance(spec, ShapingSpec):
        return [spec]
    if not isinstance(spec, str):
        return list(spec)
    text = spec.strip()
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as error:
        raise ValueError(f"malformed shaping spec {spec!r}: {error.msg} (expected name or "
                         "name(key=value, ...), layers joined by +)") from None
    return [_parse_layer(node, text) for node in _layers(tree.body)]


def get_entry(name: str) -> ShapingEntry:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f": did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown shaping {name!r}{hint} see `align-gym list --shaping`")
    return _REGISTRY[name]


def module_seed(seed: int | np.random.SeedSequence, name: str) -> int:
    """The seed of the reward module called ``name`` in a run seeded ``seed``: a stream of its own,
    the same for that module whatever else the shaping stacks, different for every run seed.

    >>> module_seed(0, "rnd") == module_seed(0, "rnd") != module_seed(1, "rnd")
    True
    """
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    child = np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, zlib.crc32(f"module:{name}".encode())))
    return int(child.generate_state(1)[0] % 2**31)


def make_modules(spec: SpecLike | ShapingSpec, env: Any, *, gamma: float,
                 seed: int | np.random.SeedSequence | None = None) -> list[RewardModule]:
    """The reward modules of every layer of ``spec``, innermost first, for ``env`` (any env,
    vector env or SB3 VecEnv); ``none`` layers add none. ``gamma`` is the agent's discount.

    With ``seed``, every module that draws random numbers (networks, offline data, its own
    sampling) gets :func:`module_seed` of it under its name (and under the spec's own ``seed=``
    where one is given, so that ``rnd(seed=3)`` still differs between run seeds): run seeds give
    modules different networks, and the same module gets the same network in every stack of one
    run seed (the bench's paired cells). Without it, modules keep their own or default seeds."""
    layers = parse_spec(spec)
    entries = [get_entry(layer.name) for layer in layers]  # every name checked before anything is built
    modules = []
    for layer, entry in zip(layers, entries):
        kwargs = dict(layer.kwargs)
        if seed is not None and "seed" in inspect.signature(entry.builder()).parameters:
            label = str(kwargs.get("name", layer.name)) + (f"|seed={kwargs['seed']}" if "seed" in kwargs else "")
            kwargs["seed"] = module_seed(seed, label)
        try:
            module = entry.build(env, gamma=gamma, **kwargs)
        except TypeError as error:
            raise ValueError(f"bad arguments for shaping {layer}: {error}") from error
        if isinstance(module, list):
            modules.extend(module)
        elif module is not None:
            modules.append(module)
    names = [module.name for module in modules]
    for name in {n for n in names if names.count(n) > 1}:
        raise ValueError(f"{names.count(name)} layers of {format_spec(layers)!r} are all named {name!r}: "
                         "give each a name=... of its own")
    return modules


def check_spec(spec: SpecLike | ShapingSpec, env: Any, *, gamma: float) -> list[RewardModule]:
    """Raise ValueError unless ``spec`` builds on ``env`` (what the bench checks before it runs);
    returns the modules built, closed again (an annotator's thread, a labeller's child)."""
    modules = make_modules(spec, env, gamma=gamma)
    for module in modules:
        if callable(getattr(module, "close", None)):
            module.close()
    return modules


def is_invariant(spec: SpecLike | ShapingSpec) -> bool:
    """Whether every layer of ``spec`` provably keeps the optimal policy."""
    return all(get_entry(layer.name).invariant for layer in parse_spec(spec))


def shape_env(env: Any, spec: SpecLike | ShapingSpec, *, gamma: float, seed: int | np.random.SeedSequence | None = None):
    """Wrap a gymnasium env in one :class:`~align_gym.wrappers.ShapingWrapper` per layer of
    ``spec`` (``none`` keeps the contract only)."""
    from .core import ShapingWrapper

    return _stack(env, ShapingWrapper, make_modules(spec, env, gamma=gamma, seed=seed))


def shape_vector_env(envs: Any, spec: SpecLike | ShapingSpec, *, gamma: float,
                     seed: int | np.random.SeedSequence | None = None):
    """The same for a gymnasium vector env."""
    from .vector import ShapingVectorWrapper

    return _stack(envs, ShapingVectorWrapper, make_modules(spec, envs, gamma=gamma, seed=seed))


def shape_vec_env(venv: Any, spec: SpecLike | ShapingSpec, *, gamma: float,
                  seed: int | np.random.SeedSequence | None = None):
    """The same for a Stable-Baselines3 VecEnv."""
    from .sb3 import ShapingVecEnvWrapper

    return _stack(venv, ShapingVecEnvWrapper, make_modules(spec, venv, gamma=gamma, seed=seed))


def _stack(env: Any, adapter: type, modules: list[RewardModule]):
    for module in modules or [None]:
        env = adapter(env, module)
    return env


for _name, (_target, _invariant, _summary) in BUILTIN_SHAPINGS.items():
    register_shaping(_name, _target, invariant=_invariant, summary=_summary)
