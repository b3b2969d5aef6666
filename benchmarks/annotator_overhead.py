"""Does the annotator slow the env loop? Steps/s of a loop that submits every caption to an
annotator labelling with the real embedded model, against the same loop without it (target: at
least 90%). Two loops:

- ``ppo``: SB3 PPO training on 8 KeyDoor-8x8 envs, a callback submitting each vector step's
  captions: the loop the annotator is for.
- ``random``: a bare random-action loop at ~100k steps/s, where the submit and poll calls
  themselves (a few microseconds) are what is measured: the worst case.

The captions carry the agent's cell, so hundreds are distinct and the model stays busy for the
whole run; the labeller scores " yes" against " no" after a question, 32 captions a batch. It
runs in a child process on one thread (``ProcessLabeller``), leaving the other core to the env;
``--thread`` runs it in the annotator's thread instead, to show why that is not the default.

    python benchmarks/annotator_overhead.py [--steps 30000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym

import align_gym  # noqa: F401
from align_gym.llm_rewards.annotator import Annotator
from align_gym.llm_rewards.labeller import ProcessLabeller

QUESTION = "Task: pick up the key, open the door, reach the goal.\nEvent: {}\nDoes this event help? Answer:"


def caption_of(info: dict) -> str:
    state = info["state"]
    return f"{info['caption']} (at {state['agent_x']}, {state['agent_y']})"


def ppo_loop(steps: int, annotator: Annotator | None, seed: int = 0) -> float:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    from align_gym.agents import make_vec_env

    class Submit(BaseCallback):
        def _on_step(self) -> bool:
            if annotator is not None:
                annotator.submit([caption_of(info) for info in self.locals["infos"]])
                annotator.poll()
            return True

    model = PPO("MlpPolicy", make_vec_env("Align/KeyDoor-8x8-v0", n_envs=8, seed=seed), n_steps=128,
                batch_size=256, n_epochs=4, seed=seed, device="cpu")
    start = time.perf_counter()
    model.learn(steps, callback=Submit())
    return steps / (time.perf_counter() - start)


def random_loop(steps: int, annotator: Annotator | None, seed: int = 0) -> float:
    env = gym.make("Align/KeyDoor-8x8-v0")
    env.action_space.seed(seed)
    _, info = env.reset(seed=seed)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        if annotator is not None:
            annotator.submit([caption_of(info)])
            annotator.poll()
        if terminated or truncated:
            _, info = env.reset()
    return steps / (time.perf_counter() - start)


def make_labeller():
    """Built inside the labeller process: the embedded model asked whether a caption helps."""
    from align_gym.llm_rewards.clients.transformers_backend import TransformersClient

    client = TransformersClient("default")

    def helpful(captions: list[str]) -> list[bool]:
        prompts = [QUESTION.format(c) for c in captions]
        yes, no = client.score(prompts, [" yes"] * len(prompts)), client.score(prompts, [" no"] * len(prompts))
        return [y[0] > n[0] for y, n in zip(yes, no)]

    return helpful


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loop", choices=["ppo", "random"], default="ppo")
    parser.add_argument("--steps", type=int, default=None, help="default: 40k (ppo), 300k (random)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--thread", action="store_true", help="label in the annotator's thread, not a child process")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)  # one core for the loop, one for the labeller
    loop = ppo_loop if args.loop == "ppo" else random_loop
    steps = args.steps or (40_000 if args.loop == "ppo" else 300_000)
    if args.thread:
        labeller = make_labeller()
    else:
        labeller = ProcessLabeller(make_labeller)
        labeller(["warm-up: load the model before timing"])

    without, with_annotator, labelled = [], [], 0
    for seed in range(args.repeats):
        without.append(loop(steps, None, seed))
        with Annotator(labeller, batch_size=32) as annotator:
            with_annotator.append(loop(steps, annotator, seed))
            labelled += annotator.stats.labelled
    base, attached = max(without), max(with_annotator)
    where = "a thread of the env process" if args.thread else "a child process"
    print(f"{args.loop} loop, {steps:,} steps, best of {args.repeats}; labeller in {where}")
    print(f"env loop alone              {base:>10,.0f} steps/s")
    print(f"with the annotator attached {attached:>10,.0f} steps/s   ratio {attached / base:.2f}   (target >= 0.90)")
    print(f"captions labelled meanwhile {labelled:>10,d}")


if __name__ == "__main__":
    main()
