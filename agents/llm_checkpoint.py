"""Checkpoints of the token-level agents' runs: the policy (model and value head; never the frozen
reference, which is rebuilt from the model spec), the optimizer, and the run's progress (steps
taken, random streams, logs), written atomically after every update, so a killed run loses at most
one rollout.

A resumed run goes on from the step after the last update, with the same random streams; the
episode that was running when the checkpoint was written is not restored (envs are not saved):
the resumed run starts a fresh one. It must be the same run: given the run's settings,
:func:`load_checkpoint` refuses settings that differ from the checkpoint's (another env, shaping or
learning rate would mix two experiments in one log), listing the differences, except the budget
(a resume exists to go further), the output folder, the device, and the settings the caller names
in ``allow_changes``; the changes it accepts are kept in the progress (``"changes"``).

>>> import tempfile, torch
>>> folder = tempfile.mkdtemp()
>>> net = torch.nn.Linear(2, 1); optimizer = torch.optim.Adam(net.parameters())
>>> save_checkpoint(folder, net, optimizer, {"taken": 64})
>>> load_checkpoint(folder, net, optimizer)["taken"]
64
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

CHECKPOINT = "checkpoint.pt"
# Settings a resume may always change: the budget (steps or turns), where and how the run is kept.
FREE_ON_RESUME = {"steps", "turns", "out", "resume", "device", "allow_changes"}


def _trained_state(policy: torch.nn.Module) -> dict[str, Any]:
    return {key: value for key, value in policy.state_dict().items() if not key.startswith("reference.")}


def save_checkpoint(folder: str | Path, policy: torch.nn.Module, optimizer: Any, progress: dict[str, Any]) -> None:
    """Write ``folder/checkpoint.pt`` (through a temporary file, so it is whole or absent)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / (CHECKPOINT + ".partial")
    torch.save({"policy": _trained_state(policy), "optimizer": optimizer.state_dict(), "progress": progress}, partial)
    os.replace(partial, folder / CHECKPOINT)


def changed_settings(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, list[Any]]:
    """``{name: [saved value, current value]}`` for each setting that differs, but those a resume
    may always change (:data:`FREE_ON_RESUME`); a setting only one side has shows as ``None`` on
    the other.

    >>> changed_settings({"lr": 1e-5, "turns": 8, "seed": 0}, {"lr": 1e-3, "turns": 16, "seed": 0})
    {'lr': [1e-05, 0.001]}
    """
    return {name: [saved.get(name), current.get(name)] for name in sorted(set(saved) | set(current))
            if name not in FREE_ON_RESUME and saved.get(name) != current.get(name)}


def load_checkpoint(folder: str | Path, policy: torch.nn.Module, optimizer: Any, config: dict[str, Any] | None = None,
                    allow_changes: Sequence[str] = ()) -> dict[str, Any] | None:
    """Restore the policy and optimizer from ``folder/checkpoint.pt``; returns the progress, or
    None where there is no checkpoint.

    With the run's ``config``, first compare it with the checkpoint's: a difference in a setting
    not named in ``allow_changes`` raises ValueError listing every difference, and restores
    nothing; accepted differences are appended to the progress's ``"changes"`` with the step."""
    path = Path(folder) / CHECKPOINT
    if not path.exists():
        return None
    saved = torch.load(path, map_location=next(policy.parameters()).device, weights_only=False)
    if config is not None:
        unknown = sorted(set(allow_changes) - set(config))
        if unknown:
            raise ValueError(f"allow_changes names {', '.join(unknown)}, which are not settings of this run; "
                             f"its settings: {', '.join(config)}")
        changes = changed_settings(saved["progress"].get("config", {}), config)
        refused = [name for name in changes if name not in allow_changes]
        if refused:
            listed = "; ".join(f"{name} {old!r} -> {new!r}" for name, (old, new) in changes.items())
            raise ValueError(f"{path} was made with other settings: {listed}. Resume with the checkpoint's settings, or "
                             f"name each change you mean: --allow-change {','.join(refused)} "
                             "(allow_changes in Python)")
        if changes:
            saved["progress"]["changes"] = [*saved["progress"].get("changes", []),
                                            {"taken": saved["progress"]["taken"], **changes}]
    missing, unexpected = policy.load_state_dict(saved["policy"], strict=False)
    if unexpected or any(not key.startswith("reference.") for key in missing):
        raise ValueError(f"{path} does not fit this policy (missing {missing[:3]}, unexpected {unexpected[:3]}): "
                         "resume with the model and settings it was made with")
    optimizer.load_state_dict(saved["optimizer"])
    return saved["progress"]
