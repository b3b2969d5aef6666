"""Env speed, measured against peers in the same run.

1. Random-action steps/s of Align/KeyDoor-8x8-v0 vs MiniGrid's MiniGrid-DoorKey-8x8-v0
   (target: at least 5x MiniGrid).
2. PBRS-wrapped vs raw Align/KeyDoor-8x8-v0 (target: overhead at most 10%).

Both envs are built with ``gym.make`` (the same default wrappers), take the same pre-drawn actions,
and reset on episode end. Each measurement is the best of ``--repeats`` runs.

    pip install 'align-gym[bench]'
    python benchmarks/env_speed.py [--steps 100000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import align_gym  # noqa: F401
from align_gym.wrappers import PotentialShaping, ShapingWrapper


class PassThrough(gym.Wrapper):
    """A wrapper that does nothing but forward ``step``: what any wrapper costs at least."""

    def step(self, action):
        return self.env.step(action)


def steps_per_second(env: gym.Env, steps: int, seed: int = 0) -> float:
    actions = np.random.default_rng(seed).integers(env.action_space.n, size=steps)
    env.reset(seed=seed)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(int(action))
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def best_of(make, steps: int, repeats: int) -> float:
    return max(steps_per_second(make(), steps, seed) for seed in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import minigrid  # noqa: F401  (registers MiniGrid ids)

    ours = best_of(lambda: gym.make("Align/KeyDoor-8x8-v0"), args.steps, args.repeats)
    theirs = best_of(lambda: gym.make("MiniGrid-DoorKey-8x8-v0"), args.steps, args.repeats)
    print(f"Align/KeyDoor-8x8-v0       {ours:>10,.0f} steps/s")
    print(f"MiniGrid-DoorKey-8x8-v0    {theirs:>10,.0f} steps/s")
    print(f"ratio                      {ours / theirs:>10.1f}x   (target >= 5x)")

    raw = best_of(lambda: gym.make("Align/KeyDoor-8x8-v0"), args.steps, args.repeats)
    identity = best_of(lambda: PassThrough(gym.make("Align/KeyDoor-8x8-v0")), args.steps, args.repeats)
    terms = best_of(lambda: ShapingWrapper(gym.make("Align/KeyDoor-8x8-v0"), None), args.steps, args.repeats)
    shaped = best_of(lambda: PotentialShaping(gym.make("Align/KeyDoor-8x8-v0"), "reference", gamma=0.99),
                     args.steps, args.repeats)
    print(f"raw                        {raw:>10,.0f} steps/s")
    print(f"pass-through gym.Wrapper   {identity:>10,.0f} steps/s   overhead {raw / identity - 1:6.1%}   (the floor of any Python wrapper)")
    print(f"terms only (no shaping)    {terms:>10,.0f} steps/s   overhead {raw / terms - 1:6.1%}")
    print(f"PBRS(reference)            {shaped:>10,.0f} steps/s   overhead {raw / shaped - 1:6.1%}   (target <= 10%)")


if __name__ == "__main__":
    main()
