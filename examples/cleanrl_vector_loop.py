"""Use 4: a CleanRL-style loop over a gymnasium vector env with the vector shaping adapter.

A minimal REINFORCE on Align/KeyDoor-5x5 shaped by the env's reference potential; the point is the
loop: shaped rewards train, ``infos["episode_summary"]`` reports the task return and success.

    python examples/cleanrl_vector_loop.py
"""

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import align_gym  # noqa: F401
from align_gym.wrappers import PotentialShapingVector

GAMMA, N_ENVS, UPDATES, HORIZON = 0.99, 8, 40, 128

envs = gym.make_vec("Align/KeyDoor-5x5-v0", num_envs=N_ENVS, vectorization_mode="sync")
envs = PotentialShapingVector(envs, potential="reference", gamma=GAMMA)
policy = nn.Sequential(nn.Linear(10, 64), nn.Tanh(), nn.Linear(64, 6))
optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
obs, _ = envs.reset(seed=0)
needs_reset = np.zeros(N_ENVS, dtype=bool)  # next-step autoreset: the step after an end is not a transition

for update in range(UPDATES):
    log_probs, rewards, alive, valid, summaries = [], [], [], [], []
    for _ in range(HORIZON):
        dist = torch.distributions.Categorical(logits=policy(torch.as_tensor(obs)))
        action = dist.sample()
        obs, reward, terminated, truncated, infos = envs.step(action.numpy())
        log_probs.append(dist.log_prob(action))
        valid.append(torch.as_tensor(~needs_reset, dtype=torch.float32))
        needs_reset = terminated | truncated
        rewards.append(torch.as_tensor(reward, dtype=torch.float32))
        alive.append(torch.as_tensor(~(terminated | truncated), dtype=torch.float32))
        if "episode_summary" in infos:
            finished = infos["_episode_summary"]
            summaries.append(infos["episode_summary"]["true_return"][finished])
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
    if summaries and update % 5 == 4:
        print(f"update {update + 1}: mean task return of the episodes that ended {np.concatenate(summaries).mean():.3f}")
