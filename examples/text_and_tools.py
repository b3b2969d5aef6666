"""Text games and tool tasks, both views: commands for an LLM agent, vectors and masks for SB3.

1. Play a TextQuest by text: what an LLM agent sees (the observation, ``info["valid_actions"]``)
   and what a bad command returns (``info["invalid_action"]``, nothing changed).
2. Solve a ToolCalc problem with JSON tool calls, scored by the task and by ToolRL's reward.
3. Train sb3-contrib's MaskablePPO on TextQuest-easy-Choice and compare it with a random masked
   policy (about a minute on 2 CPU cores).

    python examples/text_and_tools.py
"""

import gymnasium as gym
import numpy as np
from sb3_contrib import MaskablePPO

import align_gym  # noqa: F401
from align_gym.agents import evaluate, make_vec_env
from align_gym.envs.text.core import solve
from align_gym.wrappers import shape_env

# 1. A text adventure, played by text.
env = gym.make("Align/TextQuest-medium-v0")
obs, info = env.reset(seed=7)
print(obs, "\nadmissible:", info["valid_actions"])
_, _, _, _, info = env.step("dance")
print("refused:", info["invalid_action"])
commands = solve(env.unwrapped, explore=lambda c: not c.startswith("drop "))
for command in commands:
    obs, reward, terminated, truncated, info = env.step(command)
print(f"solved in {len(commands)} commands: {commands}; reward {reward}, success {info['success']}\n")

# 2. A tool task: each action is one JSON call; ToolRL scores each call against the reference.
env = shape_env(gym.make("Align/ToolCalc-v0"), "toolrl", gamma=0.99)
obs, info = env.reset(seed=3)
print(obs)
while True:
    call = info["state"]["reference_call"]  # the solution's next call; an LLM would write its own
    obs, reward, terminated, truncated, info = env.step(call)
    print(f"{call}\n  -> {obs.splitlines()[1]} (task reward {info['env_reward']}, toolrl {info['reward_terms']['toolrl']})")
    if terminated or truncated:
        break

# 3. The same kind of game for SB3: hashed observations, a discrete command vocabulary, masks.
env_id = "Align/TextQuest-easy-Choice-v0"
model = MaskablePPO("MlpPolicy", make_vec_env(env_id, n_envs=8, gamma=0.99, seed=0), n_steps=128, batch_size=256,
                    learning_rate=7e-4, ent_coef=0.01, gamma=0.99, seed=0, device="cpu", verbose=0)
model.learn(12_000)
learned = evaluate(model, env_id, n_episodes=100, seed=10_000, deterministic=False).success_rate
game, rng, wins = gym.make(env_id).unwrapped, np.random.default_rng(0), 0
for episode in range(100):
    game.reset(seed=10_000 + episode)
    while True:
        *_, terminated, truncated, info = game.step(int(rng.choice(np.flatnonzero(game.action_masks()))))
        if terminated or truncated:
            wins += info["success"]
            break
print(f"\nMaskablePPO after 12k steps: success {learned:.2f}; random masked policy: {wins / 100:.2f}")
