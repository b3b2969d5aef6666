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

>>> Env = trl_environment("Align/ToolCalc-v0", shaping="pbrs(potential=reference)")
>>> [f.__name__ for f in Env.reward_funcs]
['pbrs']
>>> env = Env()
>>> print(env.reset(seed=0).splitlines()[0])  # doctest: +ELLIPSIS
Problem: A garage has 10 teams with 11 pencils on each. ...
>>> print(env.calculator(expression="10 * 11").splitlines()[1])
calculator: 10 * 11 = 110
>>> Env.reward_funcs[0](environments=[env]), env.get_reward()  # the term, then the task reward
([0.25], 0.0)
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from ..envs.tools.calls import JSON_TYPES, Tool, format_call
from ..wrappers.registry import SpecLike
from .session import EnvSession

RESERVED = {"reset", "get_reward"}  # TRL's own names: never tools


class AlignTRLEnvironment:
    """Base of the classes :func:`trl_environment` makes: one :class:`EnvSession` per instance.

    Only tools may be public methods (TRL exposes every public method as a tool); what a person
    reads after training is in properties: :attr:`record` and :attr:`session`.
    """

    env_id: ClassVar[str]
    shaping: ClassVar[str]
    gamma: ClassVar[float]
    env_kwargs: ClassVar[dict[str, Any]]
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

    def reset(self, seed: int | None = None, **dataset_columns: Any) -> str:
        """Start an episode (from the dataset row's ``seed`` if it has one) and return its first
        observation, which TRL appends to the prompt."""
        self._actions, self._terms_read = [], set()
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
        """The rollout so far: its seed, actions, per-turn rewards, and returns by source."""
        session = self.session
        return {"seed": session.seed, "actions": list(self._actions), "env_return": session.env_return,
                "term_returns": session.term_returns, "turn_rewards": session.turn_rewards,
                "done": bool(session.turns and session.turns[-1].done),
                "success": session.turns[-1].success if session.turns else None}

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


def _term_reward(name: str) -> Callable[..., list[float]]:
    def reward(environments: list[AlignTRLEnvironment] | None = None, **_: Any) -> list[float]:
        if environments is None:
            raise ValueError(f"the {name!r} reward reads the rollouts' environments: use it with "
                             "GRPOTrainer(environment_factory=...) and the class it came from")
        values = []
        for env in environments:
            env._terms_read.add(name)
            values.append(env.session.term_returns[name])
        return values

    reward.__name__ = reward.__qualname__ = name
    return reward


def trl_environment(env_id: str, shaping: SpecLike = "none", *, gamma: float = 1.0, seed: int | None = None,
                    show_valid_actions: bool = True, **env_kwargs: Any) -> type[AlignTRLEnvironment]:
    """The class to pass as ``GRPOTrainer(environment_factory=...)`` for an Align text or tool env.

    ``shaping`` is any shaping spec, stacked with ``+``; ``gamma`` is the trainer's discount (1 for
    GRPO, which scores undiscounted rollout returns); ``seed`` seeds the episodes drawn when
    ``reset`` gets no seed; ``show_valid_actions`` appends a text game's admissible commands to each
    observation (tool tasks never show theirs: their menu holds the solution's next call); other
    keyword arguments go to ``gym.make``. The env id, spec and kwargs are checked here, before any
    trainer starts.
    """
    probe = EnvSession(env_id, shaping, gamma=gamma, **env_kwargs)
    term_names, tools = probe.term_names, getattr(probe.env.unwrapped, "tools", None)
    probe.close()
    namespace: dict[str, Any] = {
        "env_id": env_id, "shaping": shaping, "gamma": gamma, "env_kwargs": dict(env_kwargs), "base_seed": seed,
        "show_valid_actions": show_valid_actions and not tools, "term_names": term_names,
        "reward_funcs": [_term_reward(name) for name in term_names], "_instances": 0, "_warned": False,
        "dataset": classmethod(_dataset),
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
    cls.__doc__ = f"{env_id} for TRL, shaped by {shaping!r}: see :func:`trl_environment`."
    return cls


def _dataset(cls: type[AlignTRLEnvironment], size: int, seed: int = 0) -> Any:
    """``size`` rows for ``GRPOTrainer(train_dataset=...)``: an empty user prompt (``reset``
    supplies the observation) and a ``seed`` per row, so a group's rollouts play one episode."""
    from datasets import Dataset

    seeds = np.random.default_rng(seed).integers(2**31, size=size)
    return Dataset.from_dict({"prompt": [[{"role": "user", "content": ""}]] * size, "seed": [int(s) for s in seeds]})
