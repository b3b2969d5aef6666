"""Distinct captions a random policy meets, under the event rule and under the rule it replaced
(the surroundings appended to every caption), with the share of empty captions. Run from the
repository root: ``python docs/results/captions/count.py 20000 Align/MiniHack-KeyRoom-S5-v0 ...``."""

import sys

import gymnasium as gym
import numpy as np

import align_gym  # noqa: F401
from align_gym.envs.core import random_action
from align_gym.envs.minihack import _text


def old_caption(env: gym.Env, info: dict) -> str:
    """The caption under the replaced rule: MiniHack's message and what stood next to the agent;
    TextQuest's message (the refusal, after an invalid command) and the room."""
    base = env.unwrapped
    if "MiniHack" in base.spec.id:
        message = _text(base._raw["message"])
        return f"{message} {info['surroundings']}" if message else info["surroundings"]
    message = info["caption"] if info["action_valid"] else info["invalid_action"]
    return message if message.endswith(f"the {base.room}.") else f"{message} You are in the {base.room}."


def count(env_id: str, steps: int, seed: int = 0) -> tuple[int, int, float]:
    env, rng = gym.make(env_id), np.random.default_rng(seed)
    env.action_space.seed(seed)
    _, info = env.reset(seed=seed)
    old, new, empty = set(), set(), 0
    for _ in range(steps):
        action = random_action(env, info, rng) if "TextQuest" in env_id else env.action_space.sample()
        _, _, terminated, truncated, info = env.step(action)
        new.add(info["caption"])
        old.add(old_caption(env, info))
        empty += info["caption"] == ""
        if terminated or truncated:
            _, info = env.reset()
    return len(old), len(new), empty / steps


if __name__ == "__main__":
    steps = int(sys.argv[1])
    for env_id in sys.argv[2:]:
        before, after, empty = count(env_id, steps)
        print(f"{env_id}: {steps} random steps: distinct captions before {before}, after {after}; empty {empty:.0%} of steps")
