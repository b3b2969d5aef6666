"""RRD: Randomized Return Decomposition (Ren, Guo, Zhou and Peng 2022, "Learning Long-Term Reward
Redistribution via Randomized Return Decomposition").

A per-step reward model ``r_hat(s, a, s')`` is trained so that, over a random subsequence of an
episode, the rescaled sum of its rewards matches the episode's return: for episode ``i`` of
length ``T_i`` and return ``R_i``, ``K`` of its steps ``I_i`` are drawn and

    loss = mean_i ((1/K) sum_{t in I_i} r_hat_t - R_i / T_i)^2.

The unbiased variant (``unbiased=True``) subtracts ``mean_i (1 - K/T_i) / K * var_i``, where
``var_i`` is the sample variance of ``r_hat`` over ``I_i`` (0 where ``K >= T_i``): the squared error
of a subsample mean overestimates the error of the full mean by that much. As in the paper's code:
``K = 64`` steps per episode, without replacement unless the episode is shorter; episodes drawn in
proportion to their length; the input ``[s, a, s - s']`` (observations flattened, discrete actions
one-hot); Adam at 3e-4; an MLP with two hidden layers of 256. The paper draws 256 episodes a batch;
``episodes`` sets it (the bench's value is in its ``run.sh``).

The model trains on the finished episodes the agent has seen, one gradient step per ``fit`` (an
off-policy agent takes one per critic step; an on-policy agent ``fit_rounds`` after each rollout),
and its ``r_hat`` replaces the episodic reward (see :mod:`align_gym.wrappers.credit`).

>>> import gymnasium as gym, align_gym
>>> env = gym.make("Align/KeyDoorSubgoals-Episodic-v0")
>>> method = RRD(env.observation_space, env.action_space)
>>> method.feature_size  # 10 observation values, 6 actions one-hot, 10 differences
26
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium.spaces import Text

from .core import TransitionBatch
from .credit import EpisodeStore, Redistribution
from .nets import FlatObservations, observation_space, seeded_init


def rrd_loss(predicted: Any, returns: Any, lengths: Any, unbiased: bool = False) -> Any:
    """RRD's loss for ``predicted`` rewards ``(n, K)`` of K steps of n episodes with ``returns``
    and ``lengths`` ``(n,)`` (torch tensors).

    >>> import torch
    >>> predicted = torch.tensor([[1.0, 3.0], [2.0, 2.0]])
    >>> float(rrd_loss(predicted, torch.tensor([8.0, 4.0]), torch.tensor([4.0, 2.0])))  # means 2, 2; targets 2, 2
    0.0
    >>> float(rrd_loss(predicted, torch.tensor([8.0, 4.0]), torch.tensor([4.0, 2.0]), unbiased=True))
    -0.25
    """
    k = predicted.shape[1]
    error = (predicted.mean(1) - returns / lengths) ** 2
    if unbiased:
        coefficient = (1.0 - k / lengths).clamp(min=0.0) / k
        error = error - coefficient * predicted.var(1, unbiased=True)
    return error.mean()


class RRD:
    """RRD's reward model over ``[s, a, s - s']``; see the module docstring. ``features`` (a
    function of a batch) replaces that input where another method supplies its own (LaRe)."""

    name = "rrd"
    needs_returns = False

    def __init__(self, observation_space: Any = None, action_space: Any = None, hidden: int = 256, lr: float = 3e-4,
                 k: int = 64, episodes: int = 256, unbiased: bool = False, seed: int = 0,
                 features: Callable[[TransitionBatch], np.ndarray] | None = None, feature_size: int | None = None):
        import torch

        if features is None:
            if observation_space is None or action_space is None:
                raise ValueError("RRD reads [s, a, s - s']: give observation_space and action_space")
            if any(isinstance(space, Text) for space in (observation_space, action_space)):
                raise ValueError("rrd reads observations and actions as vectors, and text is not one: use the env's "
                                 "-Choice id, or lare, whose factors read info['state']")
            self._obs, self._act = FlatObservations(observation_space), FlatObservations(action_space)
            feature_size = 2 * self._obs.size + self._act.size
        elif feature_size is None:
            raise ValueError("give feature_size with features")
        self._features = features
        self.feature_size, self.k, self.episodes, self.unbiased = int(feature_size), int(k), int(episodes), bool(unbiased)
        self.net = seeded_init(torch.nn.Sequential(
            torch.nn.Linear(self.feature_size, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden),
            torch.nn.ReLU(), torch.nn.Linear(hidden, 1)), seed)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.steps = 0

    def features(self, batch: TransitionBatch) -> np.ndarray:
        if self._features is not None:
            return np.asarray(self._features(batch), dtype=np.float32)
        obs, next_obs = self._obs(batch.obs), self._obs(batch.next_obs)
        actions = self._act([np.asarray(a) for a in batch.actions])
        return np.concatenate([obs, actions, obs - next_obs], axis=1)

    def fit(self, store: EpisodeStore, rng: np.random.Generator) -> dict[str, float]:
        """One gradient step on ``episodes`` episodes of ``store``."""
        import torch

        features, returns, lengths = store.sample(rng, self.episodes, self.k)
        n, k, size = features.shape
        predicted = self.net(torch.from_numpy(features).reshape(n * k, size)).reshape(n, k)
        loss = rrd_loss(predicted, torch.as_tensor(returns, dtype=torch.float32),
                        torch.as_tensor(lengths, dtype=torch.float32), self.unbiased)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.steps += 1
        return {"loss": float(loss.detach()), "model_steps": float(self.steps)}

    def rewards(self, features: np.ndarray, step_returns: np.ndarray, store: EpisodeStore) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.net(torch.as_tensor(features, dtype=torch.float32)).squeeze(1).double().numpy()

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = state["steps"]


def make_rrd(env: Any, gamma: float, online: bool = False, unbiased: bool = False, k: int = 64, episodes: int = 256,
             lr: float = 3e-4, fit_rounds: int = 32, update_every: int = 2048, seed: int = 0,
             name: str = "rrd") -> Redistribution:
    """The ``rrd`` shaping: relabelled in the agent (install with ``install_credit``), or paid
    online with ``online=true``."""
    space = observation_space(env)
    actions = getattr(env, "single_action_space", None) or env.action_space
    method = RRD(space, actions, lr=lr, k=k, episodes=episodes, unbiased=unbiased, seed=seed)
    return Redistribution(method, online=online, fit_rounds=fit_rounds, update_every=update_every, seed=seed, name=name)
