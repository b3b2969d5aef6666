"""Intrinsic rewards: the classic bonuses (count, RND, E3B) and their term, through every adapter."""

import csv

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.logger import configure

import align_gym  # noqa: F401
from align_gym.agents import RewardTermsCallback, make_vec_env
from align_gym.wrappers import (
    CountBonus,
    EpisodeStarts,
    IntrinsicReward,
    TransitionBatch,
    is_invariant,
    shape_env,
    shape_vector_env,
)
from align_gym.wrappers.e3b import E3BBonus
from align_gym.wrappers.rnd import RNDBonus

BOX10 = gym.spaces.Box(-np.inf, np.inf, shape=(10,), dtype=np.float32)
PICKUP = 4  # on KeyDoor, picking up with no key underfoot changes nothing: the same state again


def batch_of(next_obs, episode_ids=None, obs=None, actions=None):
    n = len(next_obs)
    return TransitionBatch(obs if obs is not None else next_obs, actions if actions is not None else [0] * n,
                           next_obs, [""] * n, [{}] * n, [{}] * n, np.zeros(n), np.zeros(n, bool), np.zeros(n, bool),
                           np.asarray(episode_ids if episode_ids is not None else [0] * n))


@pytest.mark.parametrize("scope", ["global", "episode"])
def test_count_decays_as_one_over_sqrt_n(scope):
    env = IntrinsicReward(gym.make("Align/KeyDoor-5x5-v0"), CountBonus(key="state", scope=scope), coef=1.0)
    env.reset(seed=0)
    terms = [env.step(PICKUP)[-1]["reward_terms"]["count"] for _ in range(5)]
    np.testing.assert_allclose(terms, [1 / np.sqrt(k) for k in range(1, 6)])
    env.reset(seed=0)  # the same state in a new episode
    again = env.step(PICKUP)[-1]["reward_terms"]["count"]
    assert again == pytest.approx(1.0 if scope == "episode" else 1 / np.sqrt(6))
    assert not is_invariant("count")


def test_rnd_error_falls_on_seen_observations_not_on_new_ones():
    rng = np.random.default_rng(0)
    seen = rng.normal(0.0, 1.0, size=(512, 10)).astype(np.float32)
    new = rng.normal(2.0, 1.0, size=(256, 10)).astype(np.float32)
    rnd = RNDBonus(BOX10, warmup=0, proportion=1.0, epochs=10, lr=1e-3, seed=0)
    rnd.obs_moments.update(seen)
    before_seen, before_new = rnd.errors(seen).mean(), rnd.errors(new).mean()
    for _ in range(20):
        rnd.update(batch_of(list(seen)))
    after_seen, after_new = rnd.errors(seen).mean(), rnd.errors(new).mean()
    assert after_seen < 0.1 * before_seen  # familiar: the predictor has learnt them
    assert after_new > 5 * after_seen  # unfamiliar ones stay several times more surprising
    assert before_new > before_seen
    # the bonus is the error over a running std of intrinsic returns, after the warm-up
    fresh = RNDBonus(BOX10, warmup=4, seed=1)
    assert list(fresh.reward(batch_of(list(seen[:4])))) == [0.0] * 4
    assert (fresh.reward(batch_of(list(new[:8]), episode_ids=range(8))) > 0).all()


def test_e3b_bonus_shrinks_for_repeats_and_resets_each_episode():
    e3b = E3BBonus(BOX10, n_actions=4, seed=0)
    obs = [np.ones(10, np.float32)]
    e3b.start_episodes(EpisodeStarts([0], obs, [""], [{}]))
    bonuses = [float(e3b.reward(batch_of(obs, [0]))[0]) for _ in range(5)]
    assert all(a > b for a, b in zip(bonuses, bonuses[1:]))  # the same embedding, less each time
    e3b.start_episodes(EpisodeStarts([1], obs, [""], [{}]))
    assert float(e3b.reward(batch_of(obs, [1]))[0]) == pytest.approx(bonuses[0])  # a new episode starts afresh
    other = [np.linspace(-1, 1, 10).astype(np.float32)]
    assert float(e3b.reward(batch_of(other, [0]))[0]) > bonuses[-1]  # a new direction pays more
    # inverse dynamics trains: its loss falls on a fixed set of transitions
    rng = np.random.default_rng(0)
    before = rng.normal(size=(256, 10)).astype(np.float32)
    actions = rng.integers(4, size=256)
    after = before + np.eye(10, dtype=np.float32)[actions]  # each action moves one coordinate
    first = e3b.update(batch_of(list(after), obs=list(before), actions=list(actions)))["inverse_dynamics_loss"]
    for _ in range(30):
        last = e3b.update(batch_of(list(after), obs=list(before), actions=list(actions)))["inverse_dynamics_loss"]
    assert last < 0.5 * first


SPEC = ("pbrs(potential=reference)+count(coef=0.05)+rnd(coef=0.1, warmup=32, update_every=128)"
        "+e3b(coef=0.01, update_every=128)")


def test_every_bonus_through_the_vector_adapter_stacked_with_pbrs():
    envs = shape_vector_env(gym.make_vec("Align/KeyDoor-5x5-v0", num_envs=3, vectorization_mode="sync"), SPEC, gamma=0.99)
    envs.reset(seed=0)
    for _ in range(100):
        _, rewards, _, _, infos = envs.step(envs.action_space.sample())
        assert set(infos["reward_terms"]) == {"pbrs", "count", "rnd", "e3b"}
        np.testing.assert_allclose(rewards, infos["env_reward"] + sum(infos["reward_terms"].values()), atol=1e-9)
    assert (infos["reward_terms"]["rnd"] > 0).all() and (infos["reward_terms"]["e3b"] > 0).all()


def test_every_bonus_trains_with_ppo_on_the_sb3_adapter(tmp_path):
    venv = make_vec_env("Align/KeyDoor-5x5-v0", n_envs=4, shaping=SPEC, gamma=0.99, seed=0)
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=128, gamma=0.99, seed=0, device="cpu")
    model.set_logger(configure(str(tmp_path), ["csv"]))
    callback = RewardTermsCallback()
    model.learn(1024, callback=callback)
    with open(tmp_path / "progress.csv") as f:
        last = list(csv.DictReader(f))[-1]
    assert float(last["align/rnd/predictor_loss"]) > 0 and float(last["align/e3b/inverse_dynamics_loss"]) > 0
    for episode in callback.episodes:
        assert episode["shaped_return"] == pytest.approx(episode["true_return"] + sum(episode["terms"].values()), abs=1e-3)


def test_a_single_env_stack_keeps_the_contract():
    env = shape_env(gym.make("Align/KeyDoor-5x5-v0"), SPEC, gamma=0.99)
    env.reset(seed=0)
    for _ in range(300):
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert reward == pytest.approx(info["env_reward"] + sum(info["reward_terms"].values()), abs=1e-12)
        if terminated or truncated:
            env.reset()
