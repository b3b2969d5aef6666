"""Use 2: potential-based shaping of a foreign env (CartPole), with the reward terms it reports.

    python examples/pbrs_cartpole.py
"""

import gymnasium as gym

from align_gym.wrappers import PotentialShaping


def upright(obs) -> float:
    """Higher when the pole is upright and the cart near the centre."""
    return -abs(float(obs[2])) - 0.1 * abs(float(obs[0]))


env = PotentialShaping(gym.make("CartPole-v1"), potential=upright, gamma=0.99)
obs, info = env.reset(seed=0)
done = False
while not done:
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    done = terminated or truncated
print("episode:", info["episode_summary"])
