"""Small torch helpers for the reward modules that learn."""

from __future__ import annotations

from typing import Any


def seeded_init(net: Any, seed: int, orthogonal_gain: float | None = None) -> Any:
    """Initialise every linear layer of ``net`` from a private generator seeded with ``seed`` (no
    global RNG: the agent's stream stays its own): Kaiming-uniform weights, or orthogonal ones with
    ``orthogonal_gain``; zero biases. Returns ``net``."""
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
