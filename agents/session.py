"""One Align text or tool env as the LLM-RL trainers' adapters see it: text in, text out, and each
step's task reward and shaping terms kept apart.

Both trainer doors (:func:`~align_gym.agents.trl_env.trl_environment` for TRL and the OpenEnv
server of ``align-gym serve-env``) drive an :class:`EnvSession`, so they agree on everything: which
ids they take, how a shaping spec is stacked, how episodes are seeded, and what a step reports.

>>> session = EnvSession("Align/TextQuest-easy-v0", shaping="pbrs(potential=reference)", seed=0)
>>> first = session.reset(seed=3)
>>> turn = session.step(first.valid_actions[0])
>>> turn.reward == turn.env_reward + sum(turn.reward_terms.values())
True
>>> session.term_names
['pbrs']
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ..wrappers.core import shaping_layers
from ..wrappers.credit import redistribution_modules
from ..wrappers.registry import SpecLike, shape_env


class EpisodeError(RuntimeError):
    """A step the session cannot take: before the first reset, or after the episode ended."""


@dataclass
class Turn:
    """What one reset or step reports. ``reward`` is what a trainer should optimise: the task
    reward plus every shaping term; ``env_reward`` and ``reward_terms`` keep them apart."""

    text: str
    valid_actions: list[str]
    state_hash: str
    env_reward: float = 0.0
    reward_terms: dict[str, float] = field(default_factory=dict)
    terminated: bool = False
    truncated: bool = False
    action_valid: bool = True
    invalid_action: str | None = None
    success: bool | None = None
    info: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def reward(self) -> float:
        return self.env_reward + sum(self.reward_terms.values())

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


def text_env_ids() -> list[str]:
    """The registered Align ids with a text action space (the text, tool and web envs)."""
    from ..registration import ENV_TABLE

    return [env_id for env_id, (entry, _) in ENV_TABLE.items()
            if entry.split(":")[0].startswith(("align_gym.envs.text", "align_gym.envs.tools", "align_gym.envs.web"))]


def check_text_env_id(env_id: str) -> None:
    """Raise ValueError unless ``env_id`` names an Align text or tool env, saying what to use."""
    known = text_env_ids()
    if env_id in known:
        return
    if env_id.endswith("-Choice-v0") and env_id.replace("-Choice-v0", "-v0") in known:
        raise ValueError(f"{env_id} is the SB3 view (Discrete actions); the LLM trainers take the text env "
                         f"{env_id.replace('-Choice-v0', '-v0')}")
    if env_id in gym.registry:
        raise ValueError(f"{env_id} has no text actions; the LLM trainers take the Align text and tool envs: "
                         + ", ".join(known))
    close = difflib.get_close_matches(env_id, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"unknown env id {env_id!r}: {hint}the text and tool envs are " + ", ".join(known))


class EnvSession:
    """An Align text or tool env under a shaping spec, one episode at a time.

    ``gamma`` is the trainer's discount: LLM-RL trainers such as GRPO score the undiscounted sum
    of a rollout's rewards, so 1.0 is the default, and with it potential-based terms sum to
    ``-Phi(s_0)`` over an episode that terminates. A rollout cut short keeps ``Phi(s_last)``, a
    bonus for where it stopped: the ranking of rollouts from one start is unchanged only where
    every rollout terminates (``trl_environment(rollout_end="terminal")`` closes cut rollouts).
    ``seed`` seeds the stream of episode seeds drawn when :meth:`reset` is given none.
    """

    def __init__(self, env_id: str, shaping: SpecLike = "none", *, gamma: float = 1.0, seed: int | None = None,
                 **env_kwargs: Any):
        check_text_env_id(env_id)
        self.env_id = env_id
        env = gym.make(env_id, **env_kwargs)
        if not isinstance(env.action_space, spaces.Text):  # a subclass could change it: check, never assume
            env.close()
            raise ValueError(f"{env_id} takes {env.action_space}, not text")
        try:
            self.env = shape_env(env, shaping, gamma=gamma)
            waiting = redistribution_modules(self.env)
            if waiting:
                raise ValueError(f"{waiting[0].name} relabels an SB3 agent's rollout or replay buffer, which a trainer "
                                 "session has not: pay a learned redistribution online (rrd(online=true), "
                                 "lare(online=true)) or export per-turn rewards with align_gym.wrappers.tokens")
        except Exception:
            env.close()
            raise
        self.term_names = [layer.module.name for layer in shaping_layers(self.env) if layer.module is not None]
        self._seeds = np.random.default_rng(seed)
        self.seed: int | None = None  # the current episode's seed
        self.turns: list[Turn] = []  # the current episode: its reset, then each step

    def reset(self, seed: int | None = None) -> Turn:
        """Start an episode, from ``seed`` if given, else from the next seed of the session's stream."""
        self.seed = int(self._seeds.integers(2**31)) if seed is None else int(seed)
        text, info = self.env.reset(seed=self.seed)
        self.turns = [self._turn(text, info)]
        return self.turns[0]

    def step(self, action: str) -> Turn:
        """Apply one command or tool call (text); invalid text is the env's business, never an error."""
        if not self.turns:
            raise EpisodeError("no episode yet: reset first")
        if self.turns[-1].done:
            raise EpisodeError("the episode has ended: reset to start another")
        if not isinstance(action, str):
            raise EpisodeError(f"an action is text, got {type(action).__name__}")
        text, _, terminated, truncated, info = self.env.step(action)
        turn = self._turn(text, info, terminated, truncated)
        self.turns.append(turn)
        return turn

    def _turn(self, text: str, info: dict[str, Any], terminated: bool = False, truncated: bool = False) -> Turn:
        terms = info.get("reward_terms", {})
        return Turn(text=text, valid_actions=list(info.get("valid_actions", [])), state_hash=info.get("state_hash", ""),
                    env_reward=float(info.get("env_reward", 0.0)),
                    reward_terms={name: float(terms.get(name, 0.0)) for name in self.term_names},
                    terminated=bool(terminated), truncated=bool(truncated),
                    action_valid=bool(info.get("action_valid", True)), invalid_action=info.get("invalid_action"),
                    success=info.get("success"), info=info)

    @property
    def env_return(self) -> float:
        """The task reward summed over the current episode's steps."""
        return sum((turn.env_reward for turn in self.turns[1:]), 0.0)

    @property
    def term_returns(self) -> dict[str, float]:
        """Each shaping term summed over the current episode's steps."""
        return {name: sum((turn.reward_terms[name] for turn in self.turns[1:]), 0.0) for name in self.term_names}

    @property
    def turn_rewards(self) -> list[float]:
        """Each step's total reward (task plus terms): per-turn rewards, in the order taken."""
        return [turn.reward for turn in self.turns[1:]]

    def close(self) -> None:
        self.env.close()
