"""Small torch helpers for the reward modules that learn."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces


def observation_space(env: Any) -> spaces.Space:
    """The space of one observation of ``env`` (a single env or a vector env)."""
    return getattr(env, "single_observation_space", None) or env.observation_space


class FlatObservations:
    """Observations of ``space`` as float32 rows, the way SB3's policies read them: Box values as
    they are, Discrete and MultiDiscrete one-hot, Dict entries concatenated in the space's order.

    >>> flat = FlatObservations(spaces.Dict({"cell": spaces.MultiDiscrete([3, 3]), "hp": spaces.Box(0, 1)}))
    >>> flat.size, flat([{"cell": [0, 2], "hp": [0.5]}]).tolist()
    (7, [[1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.5]])
    """

    def __init__(self, space: spaces.Space):
        self.space = space
        self.size = int(spaces.flatdim(space))
        self._plain = isinstance(space, spaces.Box)

    def __call__(self, observations: Any) -> np.ndarray:
        if self._plain:  # one reshape for the whole batch
            return np.asarray(observations, np.float32).reshape(len(observations), self.size)
        return np.stack([spaces.flatten(self.space, o) for o in observations]).astype(np.float32)


def seeded_init(net: Any, seed: int, orthogonal_gain: float | None = None) -> Any:
    """Initialise every linear layer of ``net`` from a private generator seeded with ``seed``:
    Kaiming-uniform weights, or orthogonal ones with ``orthogonal_gain``; zero biases. Returns
    ``net``. Building the layers already drew their default weights from torch's global generator:
    a network built while an agent trains is built inside ``torch.random.fork_rng``."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    for layer in net.modules():
        if isinstance(layer, torch.nn.Linear):
            if orthogonal_gain is None:
                torch.nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu", generator=generator)
            else:
                torch.nn.init.orthogonal_(layer.weight, gain=orthogonal_gain, generator=generator)
            torch.nn.init.zeros_(layer.bias)
    return net
