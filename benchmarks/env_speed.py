"""Env speed and the cost of shaping, each measured against a peer or the raw env in the same run.

1. Random-action steps/s of Align/KeyDoor-8x8-v0 vs MiniGrid's MiniGrid-DoorKey-8x8-v0
   (target: at least 5x MiniGrid).
2. PBRS in the single-env wrapper over Align/KeyDoor-8x8-v0 vs the raw env (target: overhead at
   most 30%), with a constant potential (the wrapper's own cost) and with the reference potential.
3. PBRS in the vector adapter over 16 KeyDoor-8x8 envs vs the raw vector env (target: at most 10%),
   with a constant potential on observations (the adapter's own cost), on states (plus
   rebuilding each sub-env's state dict from the merged info) and the reference potential, and
   how many potential calls it makes per transition (Phi(s) is reused from the last step).
4. The single-env wrapper over MiniGrid-DoorKey-8x8-v0 vs raw MiniGrid (target: at most 5%).

Envs are built with ``gym.make`` (the same default wrappers), take the same pre-drawn actions and
reset on episode end. Each measurement is the best of ``--repeats`` runs, raw and wrapped
interleaved so that both see the same machine.

    pip install 'align-gym[bench]'
    python benchmarks/env_speed.py [--steps 100000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import align_gym  # noqa: F401
from align_gym.envs.keydoor import reference_potential
from align_gym.wrappers import (
    PotentialShaping,
    PotentialShapingVector,
    ShapingVectorWrapper,
    ShapingWrapper,
)

VECTOR_ENVS = 16


class PassThrough(gym.Wrapper):
    """A wrapper that does nothing but forward ``step``: what any wrapper costs at least."""

    def step(self, action):
        return self.env.step(action)


class CountingPotential:
    """The reference potential, counting its calls."""

    def __init__(self):
        self.calls = 0

    def __call__(self, state):
        self.calls += 1
        return reference_potential(state)


def steps_per_second(env: gym.Env, steps: int, seed: int = 0) -> float:
    actions = np.random.default_rng(seed).integers(env.action_space.n, size=steps).tolist()
    env.reset(seed=seed)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def vector_steps_per_second(envs, steps: int, seed: int = 0) -> float:
    """Transitions per second of a vector env (autoreset inside)."""
    actions = np.random.default_rng(seed).integers(6, size=(steps // envs.num_envs, envs.num_envs))
    envs.reset(seed=seed)
    start = time.perf_counter()
    for action in actions:
        envs.step(action)
    return len(actions) * envs.num_envs / (time.perf_counter() - start)


def compare(makers: dict, measure, steps: int, repeats: int) -> dict[str, float]:
    """Best of ``repeats`` for each maker, the makers interleaved within each repeat."""
    best = dict.fromkeys(makers, 0.0)
    for seed in range(repeats):
        for name, make in makers.items():
            best[name] = max(best[name], measure(make(), steps, seed))
    return best


def report(results: dict[str, float], baseline: str | None, target: float | None = None) -> None:
    for name, value in results.items():
        line = f"  {name:<38} {value:>10,.0f} steps/s"
        if baseline is not None and name != baseline:
            line += f"   overhead {results[baseline] / value - 1:6.1%}"
            if target is not None and name.startswith("PBRS"):
                line += f"   (target <= {target:.0%})"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import minigrid  # noqa: F401  (registers MiniGrid ids)

    def keydoor():
        return gym.make("Align/KeyDoor-8x8-v0")

    def doorkey():
        return gym.make("MiniGrid-DoorKey-8x8-v0")

    peers = compare({"Align/KeyDoor-8x8-v0": keydoor, "MiniGrid-DoorKey-8x8-v0": doorkey},
                    steps_per_second, args.steps, args.repeats)
    print("1. Env speed")
    report(peers, None)
    print(f"  ratio {peers['Align/KeyDoor-8x8-v0'] / peers['MiniGrid-DoorKey-8x8-v0']:.1f}x   (target >= 5x)")

    print("2. Single-env PBRS over Align/KeyDoor-8x8-v0")
    report(compare({
        "raw": keydoor,
        "pass-through gym.Wrapper": lambda: PassThrough(keydoor()),
        "terms only (no shaping)": lambda: ShapingWrapper(keydoor(), None),
        "PBRS, constant potential": lambda: PotentialShaping(keydoor(), lambda state: 0.5, 0.99, source="state"),
        "PBRS(reference)": lambda: PotentialShaping(keydoor(), "reference", 0.99),
    }, steps_per_second, args.steps, args.repeats), "raw", target=0.30)

    print(f"3. Vector PBRS over {VECTOR_ENVS} x Align/KeyDoor-8x8-v0 (SyncVectorEnv)")

    def vector():
        return gym.make_vec("Align/KeyDoor-8x8-v0", num_envs=VECTOR_ENVS, vectorization_mode="sync")

    report(compare({
        "raw": vector,
        "terms only (no shaping)": lambda: ShapingVectorWrapper(vector(), None),
        "PBRS, constant potential on obs": lambda: PotentialShapingVector(vector(), lambda obs: 0.5, 0.99),
        "PBRS, constant potential on state": lambda: PotentialShapingVector(vector(), lambda s: 0.5, 0.99, source="state"),
        "PBRS(reference)": lambda: PotentialShapingVector(vector(), "reference", 0.99),
    }, vector_steps_per_second, args.steps, args.repeats), "raw", target=0.10)
    counting = CountingPotential()
    envs = PotentialShapingVector(vector(), counting, 0.99, source="state")
    envs.reset(seed=0)
    transitions, episodes, resetting = 0, 0, np.zeros(VECTOR_ENVS, dtype=bool)
    for actions in np.random.default_rng(0).integers(6, size=(args.steps // VECTOR_ENVS, VECTOR_ENVS)):
        _, _, terminated, truncated, _ = envs.step(actions)
        transitions += int((~resetting).sum())  # next-step autoreset: a resetting env makes no transition
        resetting = terminated | truncated
        episodes += int(resetting.sum())
    print(f"  potential calls per transition: {counting.calls / transitions:.3f} "
          f"(floor: one per state, {(transitions + episodes) / transitions:.3f} here)")

    print("4. Single-env PBRS over MiniGrid-DoorKey-8x8-v0 (a potential on its observation)")
    report(compare({
        "raw": doorkey,
        "PBRS, potential on obs['direction']": lambda: PotentialShaping(doorkey(), lambda obs: float(obs["direction"]), 0.99),
    }, steps_per_second, args.steps, args.repeats), "raw", target=0.05)


if __name__ == "__main__":
    main()
