"""How fast are the text envs? Steps/s of a random admissible-command policy, in one run:

- ``TextQuest-medium`` (5 rooms, a locked door, a container) against a TextWorld game of similar
  size (5 rooms, 10 objects, a quest of 5 steps) played through the same contract (target: at
  least 50x);
- ``TextQuest-hard``, ``ToolCalc`` and ``ToolSQL`` (each query a real SQLite read), and the
  ``-Choice`` view of TextQuest-medium (hashing encoder and masks included).

Each loop picks uniformly among ``info["valid_actions"]`` and resets at episode ends, so resets
(and, for ToolSQL, writing each episode's database) count. Best of ``--repeats``.

    python benchmarks/text_speed.py [--seconds 3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import align_gym  # noqa: F401


def steps_per_second(env_id: str, seconds: float, seed: int = 0, **kwargs) -> float:
    return random_play_rate(gym.make(env_id, **kwargs).unwrapped, seconds, seed)


def random_play_rate(env, seconds: float, seed: int = 0) -> float:
    """Steps/s of ``env`` under a uniform policy over its admissible actions, resets included
    (``env`` is closed afterwards)."""
    rng = np.random.default_rng(seed)
    _, info = env.reset(seed=seed)
    choice = hasattr(env, "action_masks")
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        if choice:
            action = int(rng.choice(np.flatnonzero(env.action_masks())))
        else:
            action = info["valid_actions"][int(rng.integers(len(info["valid_actions"])))]
        _, _, terminated, truncated, info = env.step(action)
        steps += 1
        if terminated or truncated:
            _, info = env.reset()
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    loops = {
        "TextQuest-medium": ("Align/TextQuest-medium-v0", {}),
        "TextWorld (5 rooms, 10 objects, quest 5)": ("Align/TextWorld-v0", {"games": 1}),
        "TextQuest-hard": ("Align/TextQuest-hard-v0", {}),
        "TextQuest-medium-Choice": ("Align/TextQuest-medium-Choice-v0", {}),
        "ToolCalc": ("Align/ToolCalc-v0", {}),
        "ToolSQL": ("Align/ToolSQL-v0", {}),
    }
    rates = {}
    for name, (env_id, kwargs) in loops.items():
        steps_per_second(env_id, 0.2, **kwargs)  # warm up (TextWorld compiles its game here)
        rates[name] = max(steps_per_second(env_id, args.seconds, seed=r, **kwargs) for r in range(args.repeats))
        print(f"{name:44s} {rates[name]:10,.0f} steps/s", flush=True)
    ratio = rates["TextQuest-medium"] / rates["TextWorld (5 rooms, 10 objects, quest 5)"]
    print(f"\nTextQuest-medium / TextWorld: {ratio:.0f}x (target: at least 50x)")


if __name__ == "__main__":
    main()
