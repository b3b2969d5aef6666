"""Plain SB3 algorithms on every Align env, the helper, the callback, and real learning."""

import csv

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import A2C, DQN, PPO, SAC
from stable_baselines3.common.logger import configure

from align_gym import ENV_TABLE
from align_gym.agents import RewardTermsCallback, evaluate, make_vec_env, policy_for
from align_gym.cell import Cell, run_cell


def algorithms_for(env_id):
    space = gym.make(env_id).action_space
    return [PPO, A2C, DQN] if isinstance(space, gym.spaces.Discrete) else [PPO, A2C, SAC]


SB3_IDS = [env_id for env_id in ENV_TABLE if not isinstance(gym.make(env_id).observation_space, gym.spaces.Text)]


@pytest.mark.parametrize("env_id", SB3_IDS)
def test_plain_sb3_algorithms_run_with_shaping(env_id):
    for algorithm in algorithms_for(env_id):
        venv = make_vec_env(env_id, n_envs=2, shaping="pbrs(potential=reference)", gamma=0.95, seed=0)
        extra = {"learning_starts": 32, "batch_size": 32} if algorithm in (DQN, SAC) else {}
        model = algorithm(policy_for(venv), venv, gamma=0.95, seed=0, device="cpu", **extra)
        model.learn(128)
        assert model.num_timesteps >= 128


def test_callback_logs_true_return_and_terms(tmp_path):
    venv = make_vec_env("Align/KeyDoor-5x5-v0", n_envs=4, shaping="pbrs(potential=reference)", gamma=0.99, seed=0)
    model = PPO("MlpPolicy", venv, gamma=0.99, n_steps=256, seed=0, device="cpu")
    model.set_logger(configure(str(tmp_path), ["csv"]))
    callback = RewardTermsCallback()
    model.learn(1024, callback=callback)
    assert len(callback.episodes) > 0
    with open(tmp_path / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"align/true_return", "align/shaped_return", "align/success_rate", "align/term_pbrs"} <= set(rows[-1])
    assert 0.0 <= float(rows[-1]["align/success_rate"]) <= 1.0
    # the reward the agent saw is the task reward plus the term, episode by episode
    for episode in callback.episodes:
        assert episode["shaped_return"] == pytest.approx(episode["true_return"] + episode["terms"]["pbrs"], abs=1e-4)


def test_missing_gamma_is_refused():
    with pytest.raises(ValueError, match="gamma"):
        make_vec_env("Align/KeyDoor-5x5-v0", n_envs=2, shaping="pbrs(potential=reference)")


def test_evaluate_scores_by_task_reward_with_distinct_seeds():
    model = PPO("MlpPolicy", make_vec_env("Align/KeyDoor-5x5-v0", n_envs=2), device="cpu", seed=0)
    result = evaluate(model, "Align/KeyDoor-5x5-v0", n_episodes=4)
    assert 0.0 <= result.success_rate <= 1.0 and result.mean_length > 0
    assert np.isfinite(result.mean_return)


def test_ppo_with_the_reference_potential_learns_keydoor_5x5():
    hyper = {"n_steps": 128, "batch_size": 256, "n_epochs": 10, "ent_coef": 0.003, "learning_rate": 7e-4, "gamma": 0.99}
    rows = run_cell(Cell("Align/KeyDoor-5x5-v0", "pbrs(potential=reference)", "ppo", seed=0, steps=72_000,
                         eval_every=24_000, eval_episodes=20, hyperparams=hyper))
    assert rows[0]["success_rate"] < 0.5  # its argmax starts out unable
    # An argmax policy can lose the goal again between evaluations: it learned if it got there.
    assert max(row["success_rate"] for row in rows) >= 0.9, rows
    assert rows[-1]["return_mean_sampled"] > rows[0]["return_mean_sampled"], rows  # and it finishes sooner


def test_maskable_ppo_trains_and_evaluates_with_the_env_masks():
    pytest.importorskip("sb3_contrib")
    rows = run_cell(Cell("Align/KeyDoor-5x5-v0", "pbrs(potential=reference)", "maskable_ppo", seed=0, steps=2048,
                         eval_every=1024, eval_episodes=3, n_envs=4, hyperparams={"n_steps": 128, "gamma": 0.99}))
    assert rows[-1]["step"] >= 2048 and 0.0 <= rows[-1]["success_rate"] <= 1.0
