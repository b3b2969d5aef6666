"""Checkpoints of the token-level agents' runs: the policy (model and value head; never the frozen
reference, which is rebuilt from the model spec), the optimizer, and the run's progress (steps
taken, random streams, logs), written atomically after every update, so a killed run loses at most
one rollout.

A resumed run goes on from the step after the last update, with the same random streams; the
episode that was running when the checkpoint was written is not restored (envs are not saved):
the resumed run starts a fresh one.

>>> import tempfile, torch
>>> folder = tempfile.mkdtemp()
>>> net = torch.nn.Linear(2, 1); optimizer = torch.optim.Adam(net.parameters())
>>> save_checkpoint(folder, net, optimizer, {"taken": 64})
>>> load_checkpoint(folder, net, optimizer)["taken"]
64
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT = "checkpoint.pt"


def _trained_state(policy: torch.nn.Module) -> dict[str, Any]:
    return {key: value for key, value in policy.state_dict().items() if not key.startswith("reference.")}


def save_checkpoint(folder: str | Path, policy: torch.nn.Module, optimizer: Any, progress: dict[str, Any]) -> None:
    """Write ``folder/checkpoint.pt`` (through a temporary file, so it is whole or absent)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / (CHECKPOINT + ".partial")
    torch.save({"policy": _trained_state(policy), "optimizer": optimizer.state_dict(), "progress": progress}, partial)
    os.replace(partial, folder / CHECKPOINT)


def load_checkpoint(folder: str | Path, policy: torch.nn.Module, optimizer: Any) -> dict[str, Any] | None:
    """Restore the policy and optimizer from ``folder/checkpoint.pt``; returns the progress, or
    None where there is no checkpoint."""
    path = Path(folder) / CHECKPOINT
    if not path.exists():
        return None
    saved = torch.load(path, map_location=next(policy.parameters()).device, weights_only=False)
    missing, unexpected = policy.load_state_dict(saved["policy"], strict=False)
    if unexpected or any(not key.startswith("reference.") for key in missing):
        raise ValueError(f"{path} does not fit this policy (missing {missing[:3]}, unexpected {unexpected[:3]}): "
                         "resume with the model and settings it was made with")
    optimizer.load_state_dict(saved["optimizer"])
    return saved["progress"]
