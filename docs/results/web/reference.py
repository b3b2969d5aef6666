"""Reference rows for the WebShop-Choice bench: the scripted shopper and a random masked policy.

Each over 5 seeds (1000-1004, the bench's) x 100 episodes, scored on the task reward
(``info["env_reward"]``: WebShop's score on buying). Prints a Markdown table.

    python docs/results/web/reference.py > docs/results/web/reference.md
"""

import copy

import gymnasium as gym
import numpy as np

import align_gym  # noqa: F401
from align_gym.envs.web.webshop import scripted_shopper
from align_gym.wrappers import shape_env

SEEDS, EPISODES = range(1000, 1005), 100


def make():
    """WebShop-Choice with the reward-terms contract (``info["env_reward"]``), no shaping."""
    return shape_env(gym.make("Align/WebShop-Choice-v0"), "none", gamma=1.0)


def scripted(seed: int) -> tuple[float, float]:
    env = make()
    view = env.unwrapped
    scores, wins = [], []
    for episode in range(EPISODES):
        env.reset(seed=seed * EPISODES + episode)
        total, info = 0.0, {}
        for action in scripted_shopper(copy.deepcopy(view.text_env)):  # planned on a copy, played by slot
            slot = [view.command(k) for k in range(view.action_space.n)].index(action)
            *_, info = env.step(slot)
            total += info["env_reward"]
        scores.append(total)
        wins.append(bool(info.get("success")))
    return float(np.mean(scores)), float(np.mean(wins))


def random_masked(seed: int) -> tuple[float, float]:
    env = make()
    rng = np.random.default_rng(seed)
    scores, wins = [], []
    for episode in range(EPISODES):
        env.reset(seed=seed * EPISODES + episode)
        total = 0.0
        while True:
            *_, terminated, truncated, info = env.step(int(rng.choice(np.flatnonzero(env.unwrapped.action_masks()))))
            total += info["env_reward"]
            if terminated or truncated:
                break
        scores.append(total)
        wins.append(bool(info.get("success")))
    return float(np.mean(scores)), float(np.mean(wins))


if __name__ == "__main__":
    print("| policy | score (mean over 5 seeds, min-max) | success (mean, min-max) |")
    print("|---|---|---|")
    for name, policy in (("scripted shopper", scripted), ("random masked policy", random_masked)):
        rows = np.array([policy(seed) for seed in SEEDS])
        print(f"| {name} | {rows[:, 0].mean():.3f} ({rows[:, 0].min():.3f}-{rows[:, 0].max():.3f}) | "
              f"{rows[:, 1].mean():.2f} ({rows[:, 1].min():.2f}-{rows[:, 1].max():.2f}) |")
