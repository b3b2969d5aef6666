"""Paired cells (bench protocol 2): every shaping of one env, agent and seed meets the same env
streams, initial weights and evaluation episodes; seeds share nothing, module networks included."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback

from align_gym.agents import env_seeds, evaluate, make_vec_env, seeded_model
from align_gym.cell import PROTOCOL, Cell, run_cell
from align_gym.wrappers import make_modules, module_seed, shaping_layers

SMALL = {"n_steps": 32, "batch_size": 64, "n_epochs": 2}  # 128-step rollouts: 16 updates in 2,048 steps


def small_cell(shaping: str, seed: int = 1000, env_id: str = "Align/KeyDoor-5x5-v0", steps: int = 2048,
               n_envs: int = 4) -> Cell:
    return Cell(env_id, shaping, "ppo", seed, steps, steps // 4, eval_episodes=4, n_envs=n_envs, hyperparams=dict(SMALL))


def scores(rows: list[dict]) -> list[tuple]:
    """Everything a row measures (the cell's definition and wall time aside)."""
    keys = ("step", "return_mean", "return_std", "success_rate", "return_mean_sampled", "success_rate_sampled",
            "train_true_return")
    return [tuple(row[k] for k in keys) for row in rows]


def test_a_layer_that_pays_nothing_reproduces_none_bit_for_bit_and_placebo_does_not():
    none = run_cell(small_cell("none"))
    silent = run_cell(small_cell("rnd(coef=0)"))  # trains its networks, pays exactly 0
    placebo = run_cell(small_cell("placebo"))
    assert scores(silent) == scores(none)
    assert silent[-1]["train_term_abs.rnd"] == 0.0 and silent[-1]["protocol"] == PROTOCOL
    # the placebo carries no information but moves the trajectory, as any real shaping does
    assert scores(placebo) != scores(none)
    assert placebo[-1]["train_term_abs.placebo"] > 0 and abs(placebo[-1]["train_term.placebo"]) < 0.01
    assert [r["step"] for r in none] == [0, 512, 1024, 1536, 2048]  # scored at the budget, never past it


def test_a_watching_callback_leaves_the_cells_rows_as_they_are():
    """`run_cell(callbacks=...)` (what docs/results/intrinsic/paid.py records payments with) sees
    every training step's infos, and the cell's rows stay the bench's."""

    class Captions(BaseCallback):
        def __init__(self):
            super().__init__()
            self.seen: dict[str, float] = {}

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                self.seen[info["caption"]] = self.seen.get(info["caption"], 0.0) + info["reward_terms"]["placebo"]
            return True

    watcher = Captions()
    watched = run_cell(small_cell("placebo"), callbacks=[watcher])
    assert scores(watched) == scores(run_cell(small_cell("placebo")))
    assert len(watcher.seen) > 3 and any(value != 0 for value in watcher.seen.values())


def test_the_real_oni_with_the_embedded_model_pays_nothing_and_matches_none():
    """The embedded SmolLM2-135M parses no ONI label on KeyDoor-16x16, so ONI pays 0: under paired
    streams its cell is `none`'s, bit for bit (the layer has no side effect on the agent)."""
    # Two envs, so that episodes (2,560 steps at most) end and their terms are summed.
    oni = run_cell(small_cell("oni(variant=classification)", env_id="Align/KeyDoor-16x16-v0", steps=6144, n_envs=2))
    none = run_cell(small_cell("none", env_id="Align/KeyDoor-16x16-v0", steps=6144, n_envs=2))
    assert oni[-1]["train_term_abs.oni"] == 0.0
    assert scores(oni) == scores(none)


def test_two_seeds_share_no_stream_and_get_different_module_networks():
    first, second = small_cell("rnd", seed=1000).seeds(), small_cell("rnd", seed=1001).seeds()
    assert not set(env_seeds(first.train, 4)) & set(env_seeds(second.train, 4))
    assert not set(env_seeds(first.evaluation, 10)) & set(env_seeds(second.evaluation, 10))
    assert first.agent != second.agent

    def target_weights(seed_sequence: np.random.SeedSequence, spec: str) -> torch.Tensor:
        venv = make_vec_env("Align/KeyDoor-5x5-v0", n_envs=2, shaping=spec, gamma=0.99, seed=seed_sequence)
        module = next(layer.module for layer in shaping_layers(venv) if layer.module.name == "rnd")
        return next(module.bonus.target.parameters()).detach().clone()

    mine = target_weights(first.train, "rnd")
    assert not torch.equal(mine, target_weights(second.train, "rnd"))
    # the same module gets the same network in another stack of the same seed
    assert torch.equal(mine, target_weights(first.train, "count+rnd"))
    assert module_seed(first.train, "rnd") != module_seed(first.train, "e3b")
    # a seed written in the spec is folded into the run's: it still differs between run seeds
    assert not torch.equal(target_weights(first.train, "rnd(seed=3)"), target_weights(second.train, "rnd(seed=3)"))
    ircr = [make_modules("ircr", None, gamma=0.99, seed=s)[0].rng.integers(2**31) for s in (first.train, second.train)]
    assert ircr[0] != ircr[1]  # every module with a generator takes the run's seed


def test_training_envs_keep_the_streams_make_vec_env_drew_with_a_model_attached():
    """SB3's PPO(seed=s) reseeds sub-env i with s + i at the first reset inside learn(); the
    model built by seeded_model keeps the envs' own streams."""

    class FirstObservation(BaseCallback):
        def _on_training_start(self) -> None:
            self.obs = self.model._last_obs.copy()

        def _on_step(self) -> bool:
            return True

    env_id, seed = "Align/KeyDoor-5x5-v0", np.random.SeedSequence(7)
    expected = []
    for sub_seed in env_seeds(seed, 4):
        env = gym.make(env_id)
        env.reset(seed=sub_seed)  # the reset make_vec_env does ...
        expected.append(env.reset()[0])  # ... then the one learn() does, continuing its stream
    for attach in (seeded_model, lambda algorithm, venv, s, **kw: algorithm("MlpPolicy", venv, seed=s, **kw)):
        first = FirstObservation()
        model = attach(PPO, make_vec_env(env_id, n_envs=4, gamma=0.99, seed=seed), 5, n_steps=8, batch_size=32)
        model.learn(32, callback=first)
        kept = all(np.array_equal(a, b) for a, b in zip(first.obs, expected))
        assert kept == (attach is seeded_model)


def test_sampled_evaluation_is_reproducible_and_leaves_the_training_stream_alone():
    model = seeded_model(PPO, make_vec_env("Align/KeyDoor-5x5-v0", n_envs=2, gamma=0.99, seed=0), 3, n_steps=16)
    state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    space_state = model.action_space.np_random.bit_generator.state
    once = evaluate(model, "Align/KeyDoor-5x5-v0", 6, seed=11, deterministic=False)
    assert torch.equal(torch.get_rng_state(), state) and np.array_equal(np.random.get_state()[1], numpy_state)
    assert model.action_space.np_random.bit_generator.state == space_state
    assert evaluate(model, "Align/KeyDoor-5x5-v0", 6, seed=11, deterministic=False) == once
    # an untrained policy's samples wander where its argmax repeats one move: the modes differ
    assert evaluate(model, "Align/KeyDoor-5x5-v0", 6, seed=11, deterministic=True) != once


def test_action_ppo_cells_pair_and_report_both_modes():
    def cell(shaping: str) -> Cell:
        return Cell("Align/TextQuest-easy-v0", shaping, "action_ppo", 1000, 64, 32, eval_episodes=2, n_envs=1)

    none, silent = run_cell(cell("none")), run_cell(cell("count(coef=0)"))
    assert {"return_mean", "return_mean_sampled", "success_rate_sampled"} <= set(none[-1])
    assert scores(silent) == scores(none) and silent[-1]["train_term_abs.count"] == 0.0


def test_the_placebo_is_zero_mean_noise_of_its_stated_scale_from_its_own_seed():
    from align_gym.wrappers.core import TransitionBatch
    from align_gym.wrappers.placebo import PlaceboNoise

    n = 100_000
    batch = TransitionBatch([0] * n, [0] * n, [0] * n, [0] * n, [{}] * n, [{}] * n, [0.0] * n, [False] * n, [False] * n,
                            [0] * n)
    terms = PlaceboNoise(scale=1e-3, seed=4).reward(batch)
    assert abs(terms.mean()) < 4 * 1e-3 / np.sqrt(n)  # zero-mean: no information about anything
    assert abs(terms.std() - 1e-3) < 2e-5
    assert np.array_equal(PlaceboNoise(seed=4).reward(batch), terms)
    assert not np.array_equal(PlaceboNoise(seed=5).reward(batch), terms)
