"""The ``-Choice`` view of a text env, for SB3: vector observations, a ``Discrete`` action, masks.

:class:`ChoiceEnv` runs a text env underneath (same dynamics, same reward, same info) and offers:

- observations: the text encoded by :class:`~align_gym.wrappers.text.TextObservation`'s encoder
  (hashing by default, ``encoder="minilm"`` for the embedded sentence encoder);
- actions: ``Discrete`` over the text env's fixed command ``vocabulary()`` where it has one (the
  text games), else over ``slots`` slots filled each step from ``info["valid_actions"]`` in order
  (the tool tasks, whose calls take free arguments). In slot mode the encoded text ends with the
  menu, one ``Option <k>: <call>`` line per slot, so the policy sees what each slot holds;
- ``action_masks()``: which actions are admissible now, for sb3-contrib's ``MaskablePPO``.
  Without masks an agent may pick an inadmissible command: it changes nothing, as in the text env.

It keeps the task contract (``task``, ``state_schema``, ``potentials``, captions, state) by reading
the text env's.

>>> import gymnasium as gym, align_gym
>>> env = gym.make("Align/TextQuest-easy-Choice-v0")
>>> obs, info = env.reset(seed=0)
>>> env.action_space, int(env.unwrapped.action_masks().sum()) == len(info["valid_actions"])
(Discrete(45), True)
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .registration import ENV_TABLE
from .wrappers.text import resolve_encoder


def _text_env_class(text_env: str) -> Any:
    entry_point, kwargs = ENV_TABLE[text_env]
    module_name, _, class_name = entry_point.partition(":")
    return getattr(__import__(module_name, fromlist=[class_name]), class_name), kwargs


class ChoiceEnv(gym.Env):
    """A text env (an Align id) seen through vector observations and a discrete action."""

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    @classmethod
    def task_of(cls, text_env: str, **_: Any) -> str:
        text_class, kwargs = _text_env_class(text_env)
        return text_class.task_of(**kwargs)

    def __init__(self, text_env: str, encoder: str | Any = "hashing", slots: int = 16,
                 render_mode: str | None = None, **text_kwargs: Any):
        self.text_env = gym.make(text_env, render_mode=render_mode, **text_kwargs).unwrapped
        self.render_mode = render_mode
        self.encoder = resolve_encoder(encoder)
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(int(self.encoder.dimension),), dtype=np.float32)
        vocabulary = getattr(self.text_env, "vocabulary", None)
        self.commands: list[str] | None = list(vocabulary()) if vocabulary else None
        self.action_space = spaces.Discrete(len(self.commands) if self.commands else slots)
        self._valid: list[str] = []

    # the task contract, read through
    @property
    def task(self) -> str:
        return self.text_env.task

    @property
    def state_schema(self) -> dict[str, str]:
        return self.text_env.state_schema

    @property
    def potentials(self) -> dict[str, Any]:
        return self.text_env.potentials

    def state_dict(self) -> dict[str, Any]:
        return self.text_env.state_dict()

    def command(self, action: int) -> str:
        """The text command of a discrete action now ("" for an empty slot)."""
        if self.commands is not None:
            return self.commands[action]
        return self._valid[action] if action < len(self._valid) else ""

    def action_masks(self) -> np.ndarray:
        """True for each admissible action now."""
        if self.commands is None:
            return np.arange(self.action_space.n) < min(len(self._valid), self.action_space.n)
        valid = set(self._valid)
        return np.array([c in valid for c in self.commands])

    def _encode(self, text: str, info: dict[str, Any]) -> np.ndarray:
        self._valid = list(info["valid_actions"])
        if self.commands is None:  # slot mode: the policy must see what each slot holds
            shown = self._valid[:self.action_space.n]
            text = "\n".join([text] + [f"Option {k + 1}: {call}" for k, call in enumerate(shown)])
        return np.clip(self.encoder.encode([text])[0], -1.0, 1.0).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        text, info = self.text_env.reset(seed=seed, options=options)
        return self._encode(text, info), info

    def step(self, action: Any):
        if not (isinstance(action, (int, np.integer)) or (np.ndim(action) == 0 and float(action).is_integer())) \
                or not 0 <= int(action) < self.action_space.n:
            raise ValueError(f"invalid action {action!r}: expected an int in [0, {self.action_space.n})")
        command = self.command(int(action))
        text, reward, terminated, truncated, info = self.text_env.step(command)
        info["command"] = command
        return self._encode(text, info), reward, terminated, truncated, info

    def render(self) -> str | None:
        return self.text_env.render()

    def close(self) -> None:
        self.text_env.close()
