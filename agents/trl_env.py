"""Align text and tool envs in TRL's ``GRPOTrainer(environment_factory=...)``.

:func:`trl_environment` returns the class TRL wants: ``reset()`` returns the episode's first
observation, each public method is a tool the model calls (text games: one ``act(command)``; tool
tasks: one method per tool, typed and documented from the env's own tool table), and the reward
comes back in parts:

- ``get_reward()`` is the task reward summed over the rollout (TRL logs it under the class name,
  e.g. ``rewards/ToolCalc_v0/mean``);
- ``Env.reward_funcs`` holds one reward function per shaping term (logged as ``rewards/<term>/mean``).
  Pass them as ``reward_funcs``: TRL adds every source with weight 1, so the reward it trains on
  (its ``reward`` metric) is the task reward plus the terms, and each part is logged on its own.

GRPO compares the rollouts of one prompt, so they should play the same episode: ``Env.dataset(n)``
gives ``n`` rows each with a ``seed`` that TRL passes to ``reset``, and all rollouts of a row play
that seed. Without a dataset each rollout draws its own episode.

**Potential-based terms under GRPO.** With ``gamma=1`` the terms ``Phi(s') - Phi(s)`` of a rollout
telescope to ``Phi(s_last) - Phi(s_0)``, and ``Phi(s_last) = 0`` only where the episode terminated.
So where every rollout of a group finishes its episode, the terms pay ``-Phi(s_0)`` to each, the
same for the whole group: GRPO's group-relative advantages, and so the ranking, are exactly those
of the task reward. But GRPO rollouts often stop first (the model stops calling tools, or runs out
of tokens or turns); such a rollout keeps ``Phi(s_last)``, a bonus for wherever it stopped, which
can outrank a finished episode (WebShop: a rollout that opens the right product and never buys
gets 0.90, one that buys the wrong product 0.40). ``rollout_end`` chooses:

- ``"terminal"`` (the default): the end of a rollout is treated as the end of its episode,
  ``Phi(s_last) = 0``, so a potential-based term pays ``-gamma * scale * Phi(s_last)`` more when
  the rollout stops unfinished (``record["end_terms"]``). With ``gamma=1`` every rollout from
  ``s_0`` then gets ``-scale * Phi(s_0)``, finished, cut short, truncated or without a single step:
  the ranking is unchanged, and the term is logged but gives GRPO no signal.
- ``"progress"``: ``Phi(s_last)`` is kept, a progress bonus that does steer GRPO and can change
  which rollout is best; the term is marked non-invariant (``Env.invariant[name]`` is False).

The default keeps what "potential-based" promises everywhere else in align-gym (the term cannot
change what is best, and reports mark it invariant); rewarding progress is a choice a user makes
knowingly, and sees marked. ``Env.invariant`` holds, per term, whether it provably leaves GRPO's
ranking unchanged: only potential-based terms under ``"terminal"`` with ``gamma=1`` do.

>>> Env = trl_environment("Align/ToolCalc-v0", shaping="pbrs(potential=reference)")
>>> [f.__name__ for f in Env.reward_funcs]
['pbrs']
>>> env = Env()
>>> print(env.reset(seed=0).splitlines()[0])  # doctest: +ELLIPSIS
Problem: A garage has 10 teams with 11 pencils on each. ...
>>> print(env.calculator(expression="10 * 11").splitlines()[1])
calculator: 10 * 11 = 110
>>> Env.reward_funcs[0](environments=[env]), env.get_reward()  # the term, then the task reward
([0.0], 0.0)
>>> env.record["term_returns"], env.record["end_terms"]  # stopped here: Phi(s_last) is taken back
({'pbrs': 0.0}, {'pbrs': -0.25})
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from ..envs.tools.calls import JSON_TYPES, Tool, format_call
from ..wrappers.core import shaping_layers
from ..wrappers.potential import PotentialReward
from ..wrappers.registry import SpecLike
from .session import EnvSession

RESERVED = {"reset", "get_reward"}  # TRL's own names: never tools
ROLLOUT_ENDS = ("terminal", "progress")  # what the end of an unfinished rollout is: see the module docstring


class AlignTRLEnvironment:
    """Base of the classes :func:`trl_environment` makes: one :class:`EnvSession` per instance.

    Only tools may be public methods (TRL exposes every public method as a tool); what a person
    reads after training is in properties: :attr:`record` and :attr:`session`.
    """

    env_id: ClassVar[str]
    shaping: ClassVar[str]
    gamma: ClassVar[float]
    env_kwargs: ClassVar[dict[str, Any]]
    rollout_end: ClassVar[str]
    invariant: ClassVar[dict[str, bool]]
    base_seed: ClassVar[int | None]
    show_valid_actions: ClassVar[bool]
    term_names: ClassVar[list[str]]
    tool_names: ClassVar[list[str]]
    reward_funcs: ClassVar[list[Callable[..., list[float]]]]
    _instances: ClassVar[int]
    _warned: ClassVar[bool]

    def __init__(self) -> None:
        cls = type(self)
        # Each instance draws its episodes from its own stream, derived from the class's seed.
        index, cls._instances = cls._instances, cls._instances + 1
        stream = None if cls.base_seed is None else int(
            np.random.SeedSequence(cls.base_seed, spawn_key=(index,)).generate_state(1)[0])
        self.session = EnvSession(cls.env_id, cls.shaping, gamma=cls.gamma, seed=stream, **cls.env_kwargs)
        self._actions: list[str] = []
        self._terms_read: set[str] = set()
        self._end: tuple[Any, dict[str, float]] | None = None  # end_terms, cached by the last turn

    def reset(self, seed: int | None = None, **dataset_columns: Any) -> str:
        """Start an episode (from the dataset row's ``seed`` if it has one) and return its first
        observation, which TRL appends to the prompt."""
        self._actions, self._terms_read, self._end = [], set(), None
        return self._show(self.session.reset(seed))

    def get_reward(self) -> float:
        """The task reward summed over this rollout's steps (the shaping terms are in ``reward_funcs``)."""
        cls = type(self)
        if cls.term_names and not cls._warned and self._terms_read != set(cls.term_names):
            cls._warned = True
            warnings.warn(f"the shaping terms {cls.term_names} never reached the trainer: pass "
                          f"reward_funcs={cls.__name__}.reward_funcs to GRPOTrainer, or it trains on the task reward alone",
                          stacklevel=2)
        return self.session.env_return

    @property
    def record(self) -> dict[str, Any]:
        """The rollout so far: its seed, actions, per-turn rewards, and returns by source.

        ``term_returns`` is what each term's reward function pays the trainer: the steps' terms
        (``turn_rewards``) plus ``end_terms``, what the rollout's end pays were it to end now."""
        session, end = self.session, self.end_terms
        return {"seed": session.seed, "actions": list(self._actions), "env_return": session.env_return,
                "term_returns": {name: value + end[name] for name, value in session.term_returns.items()},
                "end_terms": end, "turn_rewards": session.turn_rewards,
                "done": bool(session.turns and session.turns[-1].done),
                "success": session.turns[-1].success if session.turns else None}

    @property
    def end_terms(self) -> dict[str, float]:
        """What each term pays at the end of the rollout, beyond its steps' terms.

        Under ``rollout_end="terminal"`` the state where the rollout stopped counts as terminal:
        a potential-based term pays ``-gamma * scale * Phi(s_last)``, taking back what its last
        step paid for ``s_last`` (nothing where the episode terminated, whose ``Phi`` is already
        0; a rollout without a step has ``s_last = s_0``), so with ``gamma=1`` every rollout from
        ``s_0`` sums to ``-scale * Phi(s_0)``. Every other term, and every term under
        ``"progress"``, pays 0 here. (A property: TRL makes public methods tools.)
        """
        cls, turns = type(self), self.session.turns
        if self._end is not None and turns and self._end[0] is turns[-1]:
            return dict(self._end[1])
        end = dict.fromkeys(cls.term_names, 0.0)
        if cls.rollout_end == "terminal" and turns and not turns[-1].terminated:
            last = turns[-1]
            for layer in shaping_layers(self.session.env):
                module = layer.module
                if isinstance(module, PotentialReward):
                    item = last.info["state"] if module.source == "state" else last.text
                    end[module.name] = 0.0 - module.scale * module.gamma * module.potentials([item])[0]  # 0.0, never -0.0
        self._end = (turns[-1] if turns else None, end)
        return dict(end)

    def _act(self, action: str) -> str:
        turns = self.session.turns
        if not turns:
            return "No episode has started."
        if turns[-1].done:
            return "The episode is over: further actions change nothing."
        self._actions.append(action)
        return self._show(self.session.step(action))

    def _show(self, turn: Any) -> str:
        text = turn.text
        if turn.done:
            text += "\nThe episode is over."
        elif type(self).show_valid_actions and turn.valid_actions:
            text += "\nValid commands: " + ", ".join(turn.valid_actions) + "."
        return text


def act(self, command: str) -> str:  # ``self`` stays unannotated: TRL builds the schema from the hints
    """Do one thing in the text game.

    Args:
        command: The command, for example "go north", "take key" or "open door".

    Returns:
        What happens, and what you see next.
    """
    return self._act(command)


def _tool_method(name: str, tool: Tool) -> Callable[..., str]:
    """A method that TRL shows the model as the tool ``name``: typed and documented from ``tool``."""

    def method(self, **arguments: Any) -> str:
        # Any arguments reach the env, which answers a wrong name or type as an invalid call.
        return self._act(format_call(name, arguments))

    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    parameters += [inspect.Parameter(arg, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=JSON_TYPES[kind])
                   for arg, (kind, _) in tool.arguments.items()]
    method.__signature__ = inspect.Signature(parameters, return_annotation=str)  # type: ignore[attr-defined]
    method.__annotations__ = {arg: JSON_TYPES[kind] for arg, (kind, _) in tool.arguments.items()} | {"return": str}
    method.__name__ = method.__qualname__ = name
    args = "".join(f"\n    {arg}: {text}" for arg, (_, text) in tool.arguments.items())
    method.__doc__ = tool.description + (f"\n\nArgs:{args}" if args else "") + "\n\nReturns:\n    The tool's answer."
    return method


def _term_reward(name: str, invariant: bool) -> Callable[..., list[float]]:
    """The reward function of the term ``name``: its sum over each rollout, the end included."""

    def reward(environments: list[AlignTRLEnvironment] | None = None, **_: Any) -> list[float]:
        if environments is None:
            raise ValueError(f"the {name!r} reward reads the rollouts' environments: use it with "
                             "GRPOTrainer(environment_factory=...) and the class it came from")
        values = []
        for env in environments:
            env._terms_read.add(name)
            values.append(env.session.term_returns[name] + env.end_terms[name])
        return values

    reward.__name__ = reward.__qualname__ = name
    reward.invariant = invariant  # type: ignore[attr-defined]
    return reward


def trl_environment(env_id: str, shaping: SpecLike = "none", *, gamma: float = 1.0,
                    rollout_end: str = "terminal", seed: int | None = None, show_valid_actions: bool = True,
                    **env_kwargs: Any) -> type[AlignTRLEnvironment]:
    """The class to pass as ``GRPOTrainer(environment_factory=...)`` for an Align text or tool env.

    ``shaping`` is any shaping spec, stacked with ``+``; ``gamma`` is the trainer's discount (1 for
    GRPO, which scores undiscounted rollout returns); ``rollout_end`` is what the end of a rollout
    that stopped before its episode did means to potential-based terms: ``"terminal"`` (the
    default: ``Phi(s_last) = 0``, the ranking of a group's rollouts is unchanged) or ``"progress"``
    (``Phi(s_last)`` kept: a progress bonus, marked non-invariant), see the module docstring;
    ``seed`` seeds the episodes drawn when ``reset`` gets no seed; ``show_valid_actions`` appends a
    text game's admissible commands to each observation (tool tasks never show theirs: their menu
    holds the solution's next call); other keyword arguments go to ``gym.make``. The env id, spec
    and kwargs are checked here, before any trainer starts.
    """
    if rollout_end not in ROLLOUT_ENDS:
        raise ValueError(f"rollout_end must be one of {', '.join(map(repr, ROLLOUT_ENDS))}, got {rollout_end!r}: "
                         "'terminal' keeps potential-based terms from changing GRPO's ranking, 'progress' pays "
                         "Phi of where a rollout stopped")
    probe = EnvSession(env_id, shaping, gamma=gamma, **env_kwargs)
    term_names, tools = probe.term_names, getattr(probe.env.unwrapped, "tools", None)
    # GRPO ranks undiscounted rollout sums: only a potential-based term whose rollout end is
    # terminal, with gamma 1, sums to the same -Phi(s_0) for every rollout of a group.
    invariant = {layer.module.name: isinstance(layer.module, PotentialReward) and rollout_end == "terminal"
                 and gamma == 1.0 for layer in shaping_layers(probe.env) if layer.module is not None}
    probe.close()
    namespace: dict[str, Any] = {
        "env_id": env_id, "shaping": shaping, "gamma": gamma, "env_kwargs": dict(env_kwargs), "base_seed": seed,
        "rollout_end": rollout_end, "invariant": invariant,
        "show_valid_actions": show_valid_actions and not tools, "term_names": term_names,
        "reward_funcs": [_term_reward(name, invariant[name]) for name in term_names], "_instances": 0,
        "_warned": False, "dataset": classmethod(_dataset),
    }
    if tools:
        for name, tool in tools.items():
            if name in RESERVED or name.startswith("_"):
                raise ValueError(f"{env_id} has a tool named {name!r}, which TRL reserves")
            namespace[name] = _tool_method(name, tool)
    else:
        namespace["act"] = act
    namespace["tool_names"] = sorted(tools or ["act"])
    class_name = re.sub(r"\W+", "_", env_id.removeprefix("Align/"))
    cls = type(class_name, (AlignTRLEnvironment,), namespace)
    cls.__doc__ = (f"{env_id} for TRL, shaped by {shaping!r} (rollout_end={rollout_end!r}): "
                   "see :func:`trl_environment`.")
    return cls


def _dataset(cls: type[AlignTRLEnvironment], size: int, seed: int = 0) -> Any:
    """``size`` rows for ``GRPOTrainer(train_dataset=...)``: an empty user prompt (``reset``
    supplies the observation) and a ``seed`` per row, so a group's rollouts play one episode."""
    from datasets import Dataset

    seeds = np.random.default_rng(seed).integers(2**31, size=size)
    return Dataset.from_dict({"prompt": [[{"role": "user", "content": ""}]] * size, "seed": [int(s) for s in seeds]})
