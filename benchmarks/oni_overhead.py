"""PPO's env steps/s with ONI attached (its LLM labelling in a child program) vs without, in the
same run (target: at least 0.8x).

Both train PPO on Align/KeyDoor-8x8-v0 with 8 envs for the same number of steps; ONI's captions
go to the asynchronous annotator, whose labeller (the embedded SmolLM2-135M) runs in a child
program on one thread, so the agent keeps its core. A fresh cache file is used, so every label is
computed. Each figure is the best of ``--repeats`` runs.

    python benchmarks/oni_overhead.py [--steps 150000] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from stable_baselines3 import PPO

from align_gym.agents import RewardTermsCallback, make_vec_env
from align_gym.wrappers import shaping_layers


def steps_per_second(spec: str, steps: int) -> tuple[float, int]:
    venv = make_vec_env("Align/KeyDoor-8x8-v0", n_envs=8, shaping=spec, gamma=0.99, seed=0)
    model = PPO("MlpPolicy", venv, n_steps=128, batch_size=256, gamma=0.99, seed=0, device="cpu")
    start = time.perf_counter()
    model.learn(steps, callback=RewardTermsCallback())
    rate = steps / (time.perf_counter() - start)
    # captions the LLM answered during training (parsed or not)
    labels = sum(layer.module.bonus._annotator.stats.labelled for layer in shaping_layers(venv)
                 if layer.module and layer.module.name == "oni")
    venv.close()
    return rate, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150_000)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # the agent on one core, the labeller's child on the other
    with tempfile.TemporaryDirectory() as folder:
        os.environ["ALIGN_GYM_CACHE"] = os.path.join(folder, "cache.sqlite")
        alone = max(steps_per_second("none", args.steps)[0] for _ in range(args.repeats))
        runs = [steps_per_second("oni(process=true)", args.steps) for _ in range(args.repeats)]
    with_oni, labels = max(runs)
    print(f"PPO alone                 {alone:8,.0f} steps/s")
    print(f"PPO with ONI (child)      {with_oni:8,.0f} steps/s   ratio {with_oni / alone:.2f} (target >= 0.80); "
          f"{labels} captions answered by the LLM meanwhile")


if __name__ == "__main__":
    main()
