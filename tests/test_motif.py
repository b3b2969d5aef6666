"""Motif: the Bradley-Terry reward model recovers a known ranking; the oracle and the embedded
model's offline phase end to end, with a cache file and a replay."""

import gymnasium as gym
import numpy as np
import pytest

import align_gym  # noqa: F401
from align_gym.llm_rewards.cache import LLMCache
from align_gym.llm_rewards.clients.cached import CachedClient
from align_gym.llm_rewards.motif import MotifBonus, collect_captions, llm_preferences
from align_gym.wrappers import shape_vector_env

RANKED = [f"event {name}" for name in ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")]


def test_bradley_terry_recovers_a_known_ranking():
    rank = {caption: k for k, caption in enumerate(RANKED)}  # later in the list is better

    def prefer(pairs):  # synthetic preferences drawn from the Bradley-Terry model of the ranking
        return [1.0 / (1.0 + np.exp(rank[a] - rank[b])) for _, a, b in pairs]

    motif = MotifBonus([("", c) for c in RANKED * 10], prefer, pairs=2000, seed=0, steps=600, batch_size=128)
    scores = motif.normalised([("", c) for c in RANKED])
    assert list(np.argsort(scores)) == list(range(len(RANKED)))  # the order is recovered
    assert motif.stats["ties"] > 0 and motif.stats["unparsed"] == 0
    # the top half passes the median threshold and pays, divided by N_ep(c)^3 within an episode
    from align_gym.wrappers import TransitionBatch

    batch = TransitionBatch([0] * 3, [0] * 3, [0] * 3, [RANKED[-1], RANKED[-1], RANKED[0]], [{}] * 3, [{}] * 3,
                            np.zeros(3), np.zeros(3, bool), np.zeros(3, bool), np.zeros(3))
    rewards = motif.reward(batch)
    assert rewards[0] > 0 and rewards[1] == rewards[0] / 8 and rewards[2] == 0.0


def test_motif_with_the_oracle_prefers_subgoal_captions_through_the_vector_adapter():
    envs = shape_vector_env(gym.make_vec("Align/KeyDoor-5x5-v0", num_envs=2, vectorization_mode="sync"),
                            "pbrs(potential=reference)+motif(llm=oracle, pairs=400, offline_steps=3000, steps=300, batch_size=128)", gamma=0.99)
    motif = next(layer.module.bonus for layer in align_gym.wrappers.shaping_layers(envs) if layer.module.name == "motif")
    task = "Pick up the key, unlock the door with it, and walk to the green goal square."
    scores = dict(zip(["You pick up the key.", "You bump into the wall."],
                      motif.normalised([(task, "You pick up the key."), (task, "You bump into the wall.")])))
    assert scores["You pick up the key."] > scores["You bump into the wall."]
    envs.reset(seed=0)
    for _ in range(50):
        _, rewards, _, _, infos = envs.step(envs.action_space.sample())
        np.testing.assert_allclose(rewards, infos["env_reward"] + sum(infos["reward_terms"].values()), atol=1e-9)


def test_the_embedded_models_preferences_replay_from_the_cache(tmp_path, embedded):
    env = gym.make("Align/KeyDoor-5x5-v0")
    dataset = [(t, c) for t, c, _ in collect_captions(env, 300, seed=0)]
    path = tmp_path / "motif.sqlite"

    def offline(mode, preference):
        prefer = llm_preferences(CachedClient(embedded, LLMCache(path, mode)), preference, max_tokens=24)
        motif = MotifBonus(dataset, prefer, pairs=6, seed=0, steps=50)
        return motif.normalised(sorted(set(dataset))), motif.stats

    for preference in ("logprob", "generate"):
        first, stats = offline("readwrite", preference)
        assert stats["pairs"] == 6
        again, _ = offline("replay", preference)
        np.testing.assert_array_equal(first, again)


def test_the_offline_phase_is_paid_from_the_cells_budget():
    from align_gym.cell import Cell, run_cell

    rows = run_cell(Cell("Align/KeyDoor-5x5-v0", "motif(llm=oracle, pairs=50, offline_steps=1000, steps=30, batch_size=32)",
                         "ppo", seed=1000, steps=3048, eval_every=1024, eval_episodes=2, n_envs=4,
                         hyperparams={"n_steps": 128, "gamma": 0.99}))
    assert rows[0]["step"] == 1000  # the curve starts after the offline steps
    assert 3048 <= rows[-1]["step"] < 3048 + 512  # and the agent trained for the rest of the budget


def test_normalisation_and_threshold_are_over_the_datasets_occurrences():
    """As the paper: the mean, std and median threshold are taken over every collected step, so a
    caption met often weighs as often (not over the distinct captions); empty captions (no event)
    are left out and pay nothing."""
    rank = {c: k for k, c in enumerate(RANKED)}
    dataset = [("", RANKED[0])] * 50 + [("", c) for c in RANKED] + [("", "")] * 30

    def prefer(pairs):
        return [1.0 / (1.0 + np.exp(rank[a] - rank[b])) for _, a, b in pairs]

    motif = MotifBonus(dataset, prefer, pairs=500, seed=0, steps=300, batch_size=128)
    raw = motif.model(motif.features([item for item in dataset if item[1]]))
    assert motif.mean == pytest.approx(raw.mean()) and motif.std == pytest.approx(raw.std() + 1e-8)
    occurrences = np.quantile((raw - raw.mean()) / (raw.std() + 1e-8), 0.5)
    assert motif.threshold == pytest.approx(occurrences)
    distinct = motif.model(motif.features([("", c) for c in RANKED]))
    assert not np.isclose(motif.threshold, np.quantile((distinct - distinct.mean()) / distinct.std(), 0.5))
    from align_gym.wrappers import TransitionBatch

    empty = TransitionBatch([0], [0], [0], [""], [{}], [{}], np.zeros(1), np.zeros(1, bool), np.zeros(1, bool), np.zeros(1))
    assert motif.reward(empty)[0] == 0.0
