"""Default agent settings: one readable table per agent, with per-env overrides.

The discount ``gamma`` here is the agent's and the shaping's alike (one value, passed to both).
Overrides match env ids by prefix, so ``"Align/KeyDoor"`` covers every KeyDoor size.
"""

from __future__ import annotations

from typing import Any

GAMMA = 0.99

# The seeds the overrides below were chosen on, and the bench's own seeds: two disjoint ranges, so
# that no published number comes from a seed the settings were tuned on. (Each seed's streams are
# drawn from a SeedSequence, see align_gym.cell, so the ranges are disjoint in their streams too.)
TUNING_SEEDS = range(0, 3)
BENCH_FIRST_SEED = 1000

AGENT_DEFAULTS: dict[str, dict[str, Any]] = {
    "ppo": {"n_steps": 128, "batch_size": 256, "n_epochs": 10, "learning_rate": 3e-4, "ent_coef": 0.0},
    "maskable_ppo": {"n_steps": 128, "batch_size": 256, "n_epochs": 10, "learning_rate": 3e-4, "ent_coef": 0.0},
    "a2c": {"n_steps": 16, "learning_rate": 7e-4, "ent_coef": 0.0},
    "dqn": {"learning_rate": 1e-4, "buffer_size": 100_000, "learning_starts": 1000, "batch_size": 64,
            "train_freq": 4, "target_update_interval": 1000, "exploration_fraction": 0.3},
    "sac": {"learning_rate": 3e-4, "buffer_size": 300_000, "learning_starts": 1000, "batch_size": 256},
    # ActionPPOConfig's fields; the tiny model needs a far larger step than TWOSOME's 1e-6 (LoRA on
    # a 7B model). Chosen on TextQuest-easy in runs seeded with TUNING_SEEDS.
    "action_ppo": {"model": "tiny", "lr": 3e-3, "value_lr": 1e-3, "epochs": 2, "rollout_steps": 64, "minibatch": 32,
                   "target_kl": None},
}

# (env id prefix, agent) -> settings that differ from AGENT_DEFAULTS. Chosen on TUNING_SEEDS of the
# 5x5 KeyDoor, never on the bench's own cells.
ENV_OVERRIDES: dict[tuple[str, str], dict[str, Any]] = {
    ("Align/KeyDoor", "ppo"): {"learning_rate": 7e-4, "ent_coef": 0.003},
    ("Align/KeyDoor", "maskable_ppo"): {"learning_rate": 7e-4, "ent_coef": 0.003},
    ("Align/PointMaze", "ppo"): {"n_steps": 256, "ent_coef": 0.0},
}


def hyperparams_for(env_id: str, agent: str) -> dict[str, Any]:
    """The settings the bench uses for ``agent`` on ``env_id``, ``gamma`` included."""
    if agent not in AGENT_DEFAULTS:
        raise ValueError(f"unknown agent {agent!r}; choose one of {', '.join(AGENT_DEFAULTS)}")
    settings = {"gamma": GAMMA, **AGENT_DEFAULTS[agent]}
    for (prefix, name), override in ENV_OVERRIDES.items():
        if name == agent and env_id.startswith(prefix):
            settings.update(override)
    return settings
