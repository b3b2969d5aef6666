"""Use 4: a CleanRL-style loop over a gymnasium vector env with the vector shaping adapter.

A minimal REINFORCE-with-baseline on Align/MountainCarSparse shaped by the energy potential; the
point is the loop: shaped rewards train, ``infos["episode_summary"]`` reports the task return.

    python examples/cleanrl_vector_loop.py
"""

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import align_gym  # noqa: F401
from align_gym.wrappers import PotentialShapingVector

GAMMA, N_ENVS, UPDATES, HORIZON = 0.99, 8, 30, 128

envs = gym.make_vec("Align/MountainCarSparse-v0", num_envs=N_ENVS, vectorization_mode="sync")
envs = PotentialShapingVector(envs, potential="reference", gamma=GAMMA, scale=10.0)
policy = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 3))
optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
obs, _ = envs.reset(seed=0)
needs_reset = np.zeros(N_ENVS, dtype=bool)  # next-step autoreset: the step after an end is not a transition
scale = np.array([1 / 1.2, 1 / 0.07], dtype=np.float32)

for update in range(UPDATES):
    log_probs, rewards, alive, valid = [], [], [], []
    for _ in range(HORIZON):
        dist = torch.distributions.Categorical(logits=policy(torch.as_tensor(obs * scale)))
        action = dist.sample()
        obs, reward, terminated, truncated, infos = envs.step(action.numpy())
        log_probs.append(dist.log_prob(action))
        valid.append(torch.as_tensor(~needs_reset, dtype=torch.float32))
        needs_reset = terminated | truncated
        rewards.append(torch.as_tensor(reward, dtype=torch.float32))
        alive.append(torch.as_tensor(~(terminated | truncated), dtype=torch.float32))
        if "episode_summary" in infos:
            finished = infos["_episode_summary"]
            print(f"update {update}: task return {infos['episode_summary']['true_return'][finished].mean():.2f}, "
                  f"success {np.nanmean(infos['episode_summary']['success'][finished]):.2f}")
    returns, running = [], torch.zeros(N_ENVS)
    for reward, keep in zip(reversed(rewards), reversed(alive)):
        running = reward + GAMMA * running * keep
        returns.append(running)
    returns = torch.stack(returns[::-1])
    advantages = (returns - returns.mean()) / (returns.std() + 1e-8)
    mask = torch.stack(valid)
    loss = -(torch.stack(log_probs) * advantages * mask).sum() / mask.sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
