"""The task contract every Align env keeps (see DESIGN.md, "Task contract").

An Align env is a plain :class:`gymnasium.Env` that also offers, for shaping methods:

- ``task``: the goal in one or two plain sentences (LLM prompts read it);
- ``state_schema``: name -> meaning of each field of :meth:`state_dict`;
- ``potentials``: name -> a pure function of the state dict (``"reference"`` is hand-written task
  progress, ``"distance"`` minus the distance to the goal). They are plain functions of
  ``info["state"]`` so that wrappers can evaluate them for sub-envs in other processes;
- ``info["caption"]``, ``info["state"]`` and ``info["task"]`` (the episode's task: some tasks draw
  a new one per episode) on reset and on every step, ``info["success"]`` on the last step of an
  episode; ``info["surroundings"]`` where the caption names only events (what persists around the
  agent: its room and what it sees there).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import gymnasium as gym

State = dict[str, Any]
Potential = Callable[[State], float]


def random_action(env: gym.Env, info: dict[str, Any], rng: Any) -> Any:
    """A uniformly random admissible action: one of ``info["valid_actions"]`` in a text env (a
    random string almost never does anything there), else a sample of the action space."""
    valid = info.get("valid_actions")
    return valid[int(rng.integers(len(valid)))] if valid else env.action_space.sample()


class AlignEnv(gym.Env):
    """Base class: the contract's attributes and the info dict every step returns."""

    task: ClassVar[str] = ""
    state_schema: ClassVar[dict[str, str]] = {}
    potentials: ClassVar[dict[str, Potential]] = {}

    @classmethod
    def task_of(cls, **kwargs: Any) -> str:
        """The task in words for an env made with ``kwargs`` (without making it)."""
        return cls.task

    def state_dict(self) -> State:
        """The symbolic state: one entry per key of ``state_schema``."""
        raise NotImplementedError

    def _info(self, caption: str, success: bool | None = None) -> dict[str, Any]:
        info: dict[str, Any] = {"caption": caption, "state": self.state_dict(), "task": self.task}
        if success is not None:
            info["success"] = success
        return info
