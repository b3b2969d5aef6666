"""A reward module that learns, stacked on potential-based shaping and trained with SB3 PPO.

The module pays a small novelty bonus ``scale / sqrt(1 + N(cell))`` for the grid cell the agent
moves into, with the visit counts ``N`` learned in ``update``. PPO's ``RewardTermsCallback``
updates it at each rollout's end with exactly that rollout's transitions and logs its stats as
``align/novelty/<stat>``; ``save_checkpoint`` keeps the counts beside the model and
``load_checkpoint`` restores both. (The bonus is not potential-based, so the stack is marked as
able to change the optimal policy.)

    python examples/learning_module.py
"""

import tempfile
from pathlib import Path

import numpy as np
from stable_baselines3 import PPO

from align_gym.agents import (
    RewardTermsCallback,
    evaluate,
    load_checkpoint,
    make_vec_env,
    save_checkpoint,
)
from align_gym.wrappers import RewardModule, TransitionBatch, is_invariant, register_shaping


class CellNovelty(RewardModule):
    """A visit-count bonus on the agent's cell, learned from each rollout."""

    invariant = False
    needs = frozenset({"next_states"})

    def __init__(self, scale: float = 0.02, name: str = "novelty"):
        self.scale, self.name = scale, name
        self.counts: dict[tuple[int, int], int] = {}

    def reward(self, batch: TransitionBatch) -> np.ndarray:
        cells = [(s["agent_x"], s["agent_y"]) for s in batch.next_states]
        return np.array([self.scale / np.sqrt(1 + self.counts.get(cell, 0)) for cell in cells])

    def update(self, batch: TransitionBatch) -> dict[str, float]:
        for s in batch.next_states:
            cell = (s["agent_x"], s["agent_y"])
            self.counts[cell] = self.counts.get(cell, 0) + 1
        return {"cells_seen": len(self.counts), "transitions": len(batch)}

    def state_dict(self) -> dict:
        return {"counts": dict(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        self.counts = dict(state["counts"])


register_shaping("novelty", lambda env, gamma, **kwargs: CellNovelty(**kwargs), invariant=False,
                 summary="a count bonus on the agent's cell (examples/learning_module.py)")

GAMMA = 0.99
SPEC = "pbrs(potential=reference)+novelty(scale=0.02)"
print(f"{SPEC}: policy-invariant? {is_invariant(SPEC)}")
venv = make_vec_env("Align/KeyDoor-5x5-v0", n_envs=8, shaping=SPEC, gamma=GAMMA, seed=0)
model = PPO("MlpPolicy", venv, gamma=GAMMA, n_steps=128, batch_size=256, ent_coef=0.003, learning_rate=7e-4,
            seed=0, device="cpu", verbose=1)
model.learn(40_000, callback=RewardTermsCallback())  # logs align/novelty/cells_seen, align/term_novelty, ...
print(evaluate(model, "Align/KeyDoor-5x5-v0", n_episodes=20))  # scored on the unshaped task

with tempfile.TemporaryDirectory() as folder:
    modules_file = save_checkpoint(model, Path(folder) / "ppo_keydoor")
    fresh = make_vec_env("Align/KeyDoor-5x5-v0", n_envs=8, shaping=SPEC, gamma=GAMMA, seed=1)
    restored = load_checkpoint(PPO, Path(folder) / "ppo_keydoor", fresh, device="cpu")
    print(f"restored the model and the novelty counts ({modules_file.name}) at step {restored.num_timesteps}")
