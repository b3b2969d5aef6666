"""Random Network Distillation (Burda, Edwards, Storkey and Klimov 2018).

A fixed, randomly initialised target network ``f`` embeds the next observation; a predictor ``g``
is trained to match it. The bonus is the prediction error ``mean((g(s') - f(s'))^2)``: high on
observations unlike those trained on, falling as they become familiar.

As in the paper:

- observations are normalised by a running mean and std and clipped to [-5, 5] before both
  networks. The paper seeds these statistics with steps of a random policy before training; here
  the first ``warmup`` transitions (the agent's own, near-random at the start) seed them and earn
  no bonus, since a reward module cannot step the env itself;
- the bonus is divided by a running std of the *discounted intrinsic returns* (``gamma_int``,
  0.99), not of the rewards: so its scale stays comparable over training;
- the predictor is trained on a fraction (``proportion``, 0.25 in the paper's code) of each
  rollout's observations, Adam at lr 1e-4.

Simplified: the paper's PPO has two value heads (extrinsic and intrinsic, with their own
discounts) and a non-episodic intrinsic return. SB3's PPO has one value head, so here the bonus
is added to the env reward (a single, episodic return). Observations are flattened and the
networks are MLPs; the paper's convolutional networks fit its Atari frames, not these tasks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .core import RewardModule, TransitionBatch
from .intrinsic import RunningStd
from .nets import FlatObservations, observation_space, seeded_init


class RunningMoments:
    """Per-feature running mean and variance of observations."""

    def __init__(self, size: int) -> None:
        self.mean, self.var, self.count = np.zeros(size), np.ones(size), 1e-4

    def update(self, x: np.ndarray) -> None:
        mean, var, n = x.mean(0), x.var(0), x.shape[0]
        delta, total = mean - self.mean, self.count + n
        self.mean = self.mean + delta * n / total
        self.var = (self.var * self.count + var * n + delta ** 2 * self.count * n / total) / total
        self.count = total

    def normalise(self, x: np.ndarray) -> np.ndarray:
        return np.clip((x - self.mean) / np.sqrt(self.var + 1e-8), -5.0, 5.0).astype(np.float32)


class RNDBonus(RewardModule):
    """The RND prediction error of the next observation, normalised as the paper does."""

    invariant = False
    needs = frozenset({"next_obs", "episode_ids", "terminated", "truncated"})

    def __init__(self, space: Any, hidden: int = 256, latent: int = 128, lr: float = 1e-4,
                 proportion: float = 0.25, epochs: int = 4, batch_size: int = 256, gamma_int: float = 0.99,
                 warmup: int = 1024, update_every: int = 1024, seed: int = 0, name: str = "rnd"):
        import torch

        self.name, self.update_every = name, update_every
        self.proportion, self.epochs, self.batch_size = proportion, epochs, batch_size
        self.gamma_int, self.warmup = gamma_int, warmup
        self.flat = FlatObservations(space)
        obs_size = self.flat.size

        def mlp(net_seed: int) -> Any:  # orthogonal weights, gain sqrt(2), as the paper's code
            return seeded_init(torch.nn.Sequential(torch.nn.Linear(obs_size, hidden), torch.nn.ReLU(),
                                                   torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
                                                   torch.nn.Linear(hidden, latent)), net_seed, orthogonal_gain=np.sqrt(2))

        self.target, self.predictor = mlp(seed), mlp(seed + 1)
        for parameter in self.target.parameters():
            parameter.requires_grad_(False)
        self.optimiser = torch.optim.Adam(self.predictor.parameters(), lr=lr)
        self.obs_moments = RunningMoments(obs_size)
        self.return_spread = RunningStd()
        self._returns: dict[int, float] = {}  # episode id -> discounted intrinsic return so far
        self._rng = np.random.default_rng(seed)
        self.seen = 0

    def errors(self, observations: Any) -> np.ndarray:
        """The raw prediction error of each observation."""
        import torch

        x = torch.from_numpy(self.obs_moments.normalise(self.flat(observations)))
        with torch.no_grad():
            return ((self.predictor(x) - self.target(x)) ** 2).mean(-1).numpy().astype(np.float64)

    def reward(self, batch: TransitionBatch) -> np.ndarray:
        if self.seen < self.warmup:  # still seeding the observation statistics
            self.seen += len(batch)
            self.obs_moments.update(self.flat(batch.next_obs))
            return np.zeros(len(batch))
        raw = self.errors(batch.next_obs)
        # The running std of discounted intrinsic returns (per episode), updated as they come.
        returns = []
        for i, episode in enumerate(batch.episode_ids):
            value = self._returns.get(int(episode), 0.0) * self.gamma_int + raw[i]
            returns.append(value)
            if batch.terminated[i] or batch.truncated[i]:
                self._returns.pop(int(episode), None)
            else:
                self._returns[int(episode)] = value
        self.return_spread.update(np.array(returns))
        return raw / self.return_spread.std

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        import torch

        x = self.flat(batch.next_obs)
        self.obs_moments.update(x)
        x = torch.from_numpy(self.obs_moments.normalise(x))
        losses = []
        for _ in range(self.epochs):
            # each epoch trains on a random `proportion` of the rollout, as the paper's code does
            chosen = np.flatnonzero(self._rng.random(len(x)) < self.proportion)
            for start in range(0, len(chosen), self.batch_size):
                rows = x[chosen[start:start + self.batch_size]]
                loss = ((self.predictor(rows) - self.target(rows)) ** 2).mean()
                self.optimiser.zero_grad()
                loss.backward()
                self.optimiser.step()
                losses.append(loss.item())
        return {"predictor_loss": float(np.mean(losses)) if losses else 0.0, "return_std": self.return_spread.std}

    def state_dict(self) -> dict[str, Any]:
        return {"predictor": self.predictor.state_dict(), "target": self.target.state_dict(),
                "optimiser": self.optimiser.state_dict(), "obs": (self.obs_moments.mean, self.obs_moments.var,
                                                                  self.obs_moments.count),
                "returns": self.return_spread.state_dict(), "seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.predictor.load_state_dict(state["predictor"])
        self.target.load_state_dict(state["target"])
        self.optimiser.load_state_dict(state["optimiser"])
        self.obs_moments.mean, self.obs_moments.var, self.obs_moments.count = state["obs"]
        self.return_spread.load_state_dict(state["returns"])
        self.seen = state["seen"]


def make_rnd(env: Any, gamma: float, coef: float = 0.5, decay: float = 0.0, normalize: bool = False, seed: int = 0,
             name: str = "rnd", **settings: Any):
    """The ``rnd`` shaping for ``env`` (settings as :class:`RNDBonus` takes them)."""
    from .intrinsic import make_intrinsic

    return make_intrinsic(RNDBonus(observation_space(env), seed=seed, name=name, **settings), coef, decay, normalize, name)
