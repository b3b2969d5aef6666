"""A small learning reward module for tests: a visit-count bonus whose counts are learned in
``update``, and which records every call the adapters make, so tests can check the lifecycle."""

from __future__ import annotations

import numpy as np

from align_gym.wrappers import RewardModule, TransitionBatch


def state_key(obs) -> tuple:
    return tuple(np.round(np.asarray(obs, dtype=np.float64).ravel(), 6))


class CountBonus(RewardModule):
    """``scale / sqrt(1 + N(s'))`` with ``N`` the visits of the next observation counted at the
    last update: its rewards change with what it learned, and its state is the counts."""

    invariant = False

    def __init__(self, name: str = "bonus", scale: float = 0.01, update_every: int = 50):
        self.name, self.scale, self.update_every = name, scale, update_every
        self.counts: dict[tuple, int] = {}
        self.updates: list[TransitionBatch] = []
        self.starts: list = []
        self.rewarded_after: list[int] = []  # per reward call: how many updates came before it

    def reward(self, batch: TransitionBatch) -> np.ndarray:
        self.rewarded_after.append(len(self.updates))
        return np.array([self.scale / np.sqrt(1 + self.counts.get(state_key(o), 0)) for o in batch.next_obs])

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        self.updates.append(batch)
        for obs in batch.next_obs:
            key = state_key(obs)
            self.counts[key] = self.counts.get(key, 0) + 1
        return {"states": float(len(self.counts)), "transitions": float(len(batch))}

    def start_episodes(self, starts) -> None:
        self.starts.append(starts)

    def state_dict(self) -> dict:
        return {"counts": dict(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        self.counts = dict(state["counts"])
