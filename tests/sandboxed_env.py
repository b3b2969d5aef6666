"""An env that calls a sandboxed function on every step, for running inside vector-env workers
(importable by name, as SB3's SubprocVecEnv and gymnasium's AsyncVectorEnv workers need)."""

import os

import gymnasium as gym
import numpy as np

from align_gym.llm_rewards.sandbox import load_function

SOURCE = "def potential(state):\n    return state['x'] * 2.0\n"


class SandboxedPotentialEnv(gym.Env):
    """Counts its steps; each step's info holds the sandboxed potential of the count, and the pids
    of this process and of its sandbox worker."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.potential = load_function(SOURCE, "potential", returns="float")
        self.count = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.count = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.count += 1
        value = self.potential({"x": self.count})
        info = {"phi": value, "pid": os.getpid(), "worker": self.potential.pid}
        return np.zeros(1, np.float32), 0.0, False, self.count >= 3, info
