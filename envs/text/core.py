"""The text-task contract (DESIGN.md, "Task contract"): what every text, tool and web env adds.

A :class:`TextEnv` is an :class:`~align_gym.envs.AlignEnv` with text observations and
``step(action: str)`` over :class:`gymnasium.spaces.Text` (printable characters and newlines), and
on reset and every step:

- ``info["valid_actions"]``: the admissible commands now, exactly those that change something
  (the symbolic state, hence ``state_hash``, or the episode's end: answers end it). Where commands
  take free text (tool calls, typing, searching) it is a finite menu of such commands, the solving
  ones included;
- ``info["action_valid"]`` and, when false, ``info["invalid_action"]``: the parser's message in
  words. An invalid action changes nothing and earns ``invalid_reward``; ``step`` never raises on
  any string;
- ``info["state_hash"]``: a stable hash of the symbolic state without the step counter, so the
  same situation reached twice hashes the same;
- ``info["reward_parts"]`` where the task's reward has parts.

Observations stay inside ``observation_space`` whatever the player types: a parser echoes the
player's words only through :func:`quote` (short, ASCII, escaped), and the base class escapes any
character outside :data:`CHARSET` and cuts an observation longer than :data:`MAX_CHARS`, saying so.

A subclass builds its world in :meth:`TextEnv._new_episode`, applies a command in
:meth:`TextEnv._act` and describes itself in :meth:`TextEnv._observe`,
:meth:`TextEnv.valid_actions` and :meth:`TextEnv.symbolic_state`; the base class does the rest.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces

from ..core import AlignEnv, State

#: Every character a text observation or command may hold: printable ASCII and the newline.
CHARSET = "".join(chr(code) for code in range(32, 127)) + "\n"
MAX_CHARS = 4096
_CHARSET_SET = frozenset(CHARSET)


def text_space(max_length: int = MAX_CHARS) -> spaces.Text:
    """A :class:`gymnasium.spaces.Text` over :data:`CHARSET` (the default charset has no space)."""
    return spaces.Text(max_length=max_length, min_length=0, charset=CHARSET)


def quote(text: str, limit: int = 40) -> str:
    """The player's words as a parser echoes them: quoted, at most ``limit`` characters, and every
    character outside :data:`CHARSET` escaped as Python's ``ascii()`` writes it.

    >>> print(quote("take ключ"))
    'take \\u043a\\u043b\\u044e\\u0447'
    >>> print(quote("go " + "x" * 100, limit=8))
    'go xxxxx'... (103 characters)
    """
    shown = ascii(text[:limit])
    return shown if len(text) <= limit else f"{shown}... ({len(text)} characters)"


def fit_text(text: str, max_length: int = MAX_CHARS) -> str:
    """``text`` inside :func:`text_space`: characters outside :data:`CHARSET` escaped (``\\xe9``),
    and, past ``max_length``, cut with a closing line that says how much was left out.

    >>> print(fit_text("Zo\\u00eb"))
    Zo\\xeb
    """
    if all(char in _CHARSET_SET for char in text) and len(text) <= max_length:
        return text  # the common case, checked in one pass
    text = "".join(char if char in _CHARSET_SET else ascii(char)[1:-1] for char in text)
    if len(text) > max_length:
        note = f"\n[observation cut: {len(text)} characters, at most {max_length} shown]"
        text = text[:max_length - len(note)] + note
    return text


def normalise_command(command: str) -> str:
    """Lower case, single spaces, no surrounding blanks or final full stop."""
    return re.sub(r"\s+", " ", command.strip().lower()).rstrip(".!").strip()


def state_hash(state: State) -> str:
    """A stable hash of a symbolic state (its ``steps`` entry left out): 16 hex digits."""
    content = {key: value for key, value in state.items() if key != "steps"}
    return hashlib.blake2b(json.dumps(content, sort_keys=True).encode(), digest_size=8).hexdigest()


def solve(env: Any, explore: Callable[[str], bool] = lambda command: True,
          max_states: int = 50_000) -> list[str] | None:
    """The shortest command sequence from ``env``'s current state to success, or None.

    A breadth-first search over ``valid_actions()`` that steps deep copies of the env (so the env
    must be copyable) and never revisits a ``state_hash``. Commands for which ``explore`` is false
    are tried only as a last move (a drop that completes a delivery), which keeps the search
    small where such commands multiply states.

    >>> import gymnasium as gym, align_gym
    >>> env = gym.make("Align/TextQuest-easy-v0").unwrapped
    >>> _ = env.reset(seed=0)
    >>> solve(env)
    ['go south', 'go east', 'go east', 'take ruby amulet']
    """
    root = copy.deepcopy(env)
    seen = {state_hash(root.state_dict())}
    queue: deque[tuple[Any, list[str]]] = deque([(root, [])])
    while queue and len(seen) < max_states:
        node, path = queue.popleft()
        for command in node.valid_actions():
            child = copy.deepcopy(node)
            _, _, terminated, truncated, info = child.step(command)
            if terminated and info["success"]:
                return path + [command]
            if terminated or truncated or not explore(command) or info["state_hash"] in seen:
                continue
            seen.add(info["state_hash"])
            queue.append((child, path + [command]))
    return None


@dataclass
class Outcome:
    """What a command did: its message, whether it was valid, the task reward and the ending.

    ``reward_parts`` (where the task's reward has parts) must sum to ``reward``.
    """

    message: str
    valid: bool = True
    reward: float = 0.0
    terminated: bool = False
    success: bool = False
    reward_parts: dict[str, float] = field(default_factory=dict)


class TextEnv(AlignEnv):
    """Base class of the text and tool envs: text spaces, the text-task info, never raises on text."""

    #: The reward of an invalid command (the task states it; zero unless a subclass says otherwise).
    invalid_reward: ClassVar[float] = 0.0
    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(self, max_steps: int, render_mode: str | None = None):
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.max_steps = max_steps
        self.render_mode = render_mode
        self.observation_space = text_space()
        self.action_space = text_space(256)
        self._steps = 0
        self._last = ""

    # -- what a subclass provides ---------------------------------------------------------
    def _new_episode(self, rng: np.random.Generator) -> str:
        """Build a new world from ``rng``; returns the opening message."""
        raise NotImplementedError

    def _act(self, command: str) -> Outcome:
        """Apply a command (as typed; normalise it as the parser needs). An invalid one changes nothing."""
        raise NotImplementedError

    def _observe(self, message: str) -> str:
        """The observation text after ``message``."""
        raise NotImplementedError

    def valid_actions(self) -> list[str]:
        """The admissible commands now."""
        raise NotImplementedError

    def symbolic_state(self) -> State:
        """The symbolic state without the step counter."""
        raise NotImplementedError

    def _caption(self, message: str, valid: bool = True) -> str:
        """``info["caption"]``: what just happened (the message, unless a subclass changes it);
        ``valid`` is false after a command that changed nothing."""
        return message

    def _surroundings(self) -> str | None:
        """``info["surroundings"]``, for a task whose captions name only events: what persists
        around the player (None: the task has none)."""
        return None

    #: Attributes a copy shares with its original: fixed for the env's life, or (the generator)
    #: only drawn from at reset. :func:`solve` copies envs by the thousand.
    _shared_on_copy: ClassVar[frozenset[str]] = frozenset(
        {"observation_space", "action_space", "spec", "_np_random", "metadata"})

    def __deepcopy__(self, memo: dict[int, Any]) -> TextEnv:
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        for key, value in self.__dict__.items():
            clone.__dict__[key] = value if key in self._shared_on_copy else copy.deepcopy(value, memo)
        return clone

    # -- the contract -----------------------------------------------------------------------
    def state_dict(self) -> State:
        return {**self.symbolic_state(), "steps": self._steps}

    def _text_info(self, message: str, outcome: Outcome | None, ended: bool) -> tuple[str, dict[str, Any]]:
        # The last guard of the observation space: tasks keep to it, but a page, a row or a file
        # a task shows may hold anything (the parsers' echoes are already quoted).
        observation = fit_text(self._observe(message))
        self._last = observation
        info = self._info(self._caption(message, outcome is None or outcome.valid),
                          (outcome.success if outcome else False) if ended else None)
        surroundings = self._surroundings()
        if surroundings is not None:
            info["surroundings"] = surroundings
        info["valid_actions"] = self.valid_actions()
        info["state_hash"] = state_hash(info["state"])
        info["action_valid"] = outcome.valid if outcome else True
        if outcome is not None and not outcome.valid:
            info["invalid_action"] = outcome.message
        if outcome is not None and outcome.reward_parts:
            info["reward_parts"] = dict(outcome.reward_parts)
        return observation, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._steps = 0
        return self._text_info(self._new_episode(self.np_random), None, ended=False)

    def step(self, action: Any):
        if not isinstance(action, str):
            raise ValueError(f"invalid action {action!r}: a text env takes a command string "
                             "(an SB3 agent takes the -Choice- id of the task)")
        self._steps += 1
        outcome = self._act(action)
        reward = outcome.reward if outcome.valid else self.invalid_reward
        terminated = outcome.valid and outcome.terminated
        truncated = not terminated and self._steps >= self.max_steps
        observation, info = self._text_info(outcome.message, outcome, ended=terminated or truncated)
        return observation, float(reward), terminated, truncated, info

    def render(self) -> str | None:
        return self._last if self.render_mode == "ansi" else None
