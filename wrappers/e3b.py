"""Exploration via Elliptical Episodic Bonuses, E3B (Henaff, Raileanu, Jiang and Rocktäschel 2022).

An embedding ``phi`` is trained by inverse dynamics (from ``phi(s)`` and ``phi(s')``, predict the
action taken), so it keeps what the agent controls. Within an episode the bonus of the next
state's embedding ``h = phi(s')`` is ``b = h^T C^-1 h``, with ``C = lambda I + sum of h h^T`` over
the episode so far: large for directions the episode has not visited. ``C^-1`` is kept directly and
updated by Sherman-Morrison after each step,
``C^-1 <- C^-1 - (C^-1 h)(C^-1 h)^T / (1 + b)``, and reset to ``I / lambda`` at each episode's start.
Defaults as the paper's code (and rllte's): ``lambda`` 0.1, embedding size 128, Adam at lr 1e-3,
batches of 256.

Simplified: ``phi`` is an MLP over the flattened observation (the paper's is convolutional, for
pixels); continuous actions are predicted by regression instead of classification.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .core import EpisodeStarts, RewardModule, TransitionBatch
from .nets import FlatObservations, observation_space, seeded_init


class E3BBonus(RewardModule):
    """The elliptical episodic bonus over an inverse-dynamics embedding."""

    invariant = False
    needs = frozenset({"obs", "actions", "next_obs", "episode_ids", "terminated", "truncated"})

    def __init__(self, space: Any, n_actions: int | None, action_size: int = 1, latent: int = 128,
                 hidden: int = 256, ridge: float = 0.1, lr: float = 1e-3, batch_size: int = 256, epochs: int = 1,
                 update_every: int = 1024, seed: int = 0, name: str = "e3b"):
        import torch

        self.name, self.update_every, self.ridge = name, update_every, ridge
        self.n_actions, self.batch_size, self.epochs, self.latent = n_actions, batch_size, epochs, latent
        self.flat = FlatObservations(space)
        self.phi = seeded_init(torch.nn.Sequential(torch.nn.Linear(self.flat.size, hidden), torch.nn.ReLU(),
                                                   torch.nn.Linear(hidden, latent)), seed)
        outputs = n_actions if n_actions is not None else action_size
        self.inverse = seeded_init(torch.nn.Sequential(torch.nn.Linear(2 * latent, hidden), torch.nn.ReLU(),
                                                       torch.nn.Linear(hidden, outputs)), seed + 1)
        self.optimiser = torch.optim.Adam([*self.phi.parameters(), *self.inverse.parameters()], lr=lr)
        self._inverse_covariance: dict[int, np.ndarray] = {}  # episode id -> C^-1
        self._rng = np.random.default_rng(seed)

    def embed(self, observations: Any) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.phi(torch.from_numpy(self.flat(observations))).numpy().astype(np.float64)

    def reward(self, batch: TransitionBatch) -> np.ndarray:
        embeddings = self.embed(batch.next_obs)
        out = np.empty(len(batch))
        for i, episode in enumerate(batch.episode_ids):
            inverse = self._inverse_covariance.get(int(episode))
            if inverse is None:  # an episode whose start was not signalled (a direct call)
                inverse = np.eye(self.latent) / self.ridge
            h = embeddings[i]
            u = inverse @ h
            bonus = float(h @ u)
            out[i] = bonus
            if batch.terminated[i] or batch.truncated[i]:
                self._inverse_covariance.pop(int(episode), None)
            else:  # Sherman-Morrison: C^-1 of C + h h^T
                self._inverse_covariance[int(episode)] = inverse - np.outer(u, u) / (1.0 + bonus)
        return out

    def start_episodes(self, starts: EpisodeStarts) -> None:
        for episode in starts.episode_ids:
            self._inverse_covariance[int(episode)] = np.eye(self.latent) / self.ridge

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        import torch

        obs, next_obs = torch.from_numpy(self.flat(batch.obs)), torch.from_numpy(self.flat(batch.next_obs))
        actions = np.asarray(batch.actions)
        target = (torch.as_tensor(actions.astype(np.int64).ravel()) if self.n_actions is not None
                  else torch.as_tensor(actions.astype(np.float32).reshape(len(actions), -1)))
        losses = []
        for _ in range(self.epochs):
            order = self._rng.permutation(len(obs))
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                predicted = self.inverse(torch.cat([self.phi(obs[rows]), self.phi(next_obs[rows])], dim=-1))
                if self.n_actions is not None:
                    loss = torch.nn.functional.cross_entropy(predicted, target[rows])
                else:
                    loss = torch.nn.functional.mse_loss(predicted, target[rows])
                self.optimiser.zero_grad()
                loss.backward()
                self.optimiser.step()
                losses.append(loss.item())
        return {"inverse_dynamics_loss": float(np.mean(losses)) if losses else 0.0}

    def state_dict(self) -> dict[str, Any]:
        return {"phi": self.phi.state_dict(), "inverse": self.inverse.state_dict(),
                "optimiser": self.optimiser.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.phi.load_state_dict(state["phi"])
        self.inverse.load_state_dict(state["inverse"])
        self.optimiser.load_state_dict(state["optimiser"])


def make_e3b(env: Any, gamma: float, coef: float = 0.01, decay: float = 0.0, normalize: bool = False, seed: int = 0,
             name: str = "e3b", **settings: Any):
    """The ``e3b`` shaping for ``env`` (settings as :class:`E3BBonus` takes them)."""
    from .intrinsic import make_intrinsic

    space = getattr(env, "single_action_space", None) or env.action_space
    n_actions = int(space.n) if hasattr(space, "n") else None
    action_size = 1 if n_actions is not None else int(np.prod(space.shape))
    bonus = E3BBonus(observation_space(env), n_actions, action_size, seed=seed, name=name, **settings)
    return make_intrinsic(bonus, coef, decay, normalize, name)
