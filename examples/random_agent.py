"""Use 1: a registered Align task in your own code, with a random agent.

    python examples/random_agent.py
"""

import gymnasium as gym

import align_gym  # noqa: F401  (registers the Align/ ids)

env = gym.make("Align/KeyDoor-8x8-v0")
print("task:", env.unwrapped.task)
obs, info = env.reset(seed=0)
print("start:", info["caption"])
for step in range(200):
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    if not info["caption"].startswith(("You move", "You bump", "There is nothing")):
        print(f"step {step:3d}: {info['caption']}")  # the events worth a line
    if terminated or truncated:
        print("success:", info["success"], "reward:", reward)
        break
