"""ONI: labels from an annotator become rewards (retrieval, classification), with the oracle, the
embedded model, a cache file and a replay in synchronous delivery."""

import gymnasium as gym
import numpy as np
import pytest

import align_gym  # noqa: F401
from align_gym.llm_rewards.cache import LLMCache
from align_gym.llm_rewards.clients.cached import CachedClient
from align_gym.llm_rewards.oni import ONIBonus, llm_labeller
from align_gym.wrappers import EpisodeStarts, TransitionBatch, shape_env, shape_vector_env
from align_gym.wrappers.core import ShapingWrapper
from align_gym.wrappers.intrinsic import IntrinsicTerm

HELPFUL = {"You pick up the key.", "You unlock the door with the key."}


def known_labels(items):
    """A labeller for the reward path alone (what the annotator produced is what must be paid)."""
    return [c in HELPFUL for _, c in items]


def batch(captions, episode=0):
    n = len(captions)
    return TransitionBatch([0] * n, [0] * n, [0] * n, captions, [{}] * n, [{}] * n, np.zeros(n), np.zeros(n, bool),
                           np.zeros(n, bool), np.full(n, episode))


def test_retrieval_pays_the_labels_the_annotator_produced_divided_by_the_episode_count_cubed():
    oni = ONIBonus(known_labels, "retrieval", delivery="sync", delay=1)
    oni.start_episodes(EpisodeStarts([0], [None], [""], [{}]))
    captions = ["You pick up the key.", "You move left."]
    assert list(oni.reward(batch(captions))) == [0.0, 0.0]  # asked, not arrived yet
    assert list(oni.reward(batch(captions))) == [1.0 / 2 ** 3, 0.0]  # arrived; second sight this episode
    assert oni.labels == {("", "You pick up the key."): True, ("", "You move left."): False}


def test_retrieval_with_async_delivery_uses_the_real_annotator():
    oni = ONIBonus(known_labels, "retrieval", delivery="async")
    captions = ["You unlock the door with the key.", "You bump into the wall."]
    oni.reward(batch(captions, episode=1))
    assert oni.wait_for_labels(10)
    assert list(oni.reward(batch(captions, episode=2))) == [1.0, 0.0]


def test_classification_learns_the_labels_and_generalises():
    captions = [f"You pick up the key number {i}." for i in range(10)] + [f"You bump into wall {i}." for i in range(10)]
    oni = ONIBonus(lambda items: ["key" in c for _, c in items], "classification", delivery="sync", delay=0, seed=0)
    for step in range(15):  # labels arrive, and the classifier takes 32 steps each time
        oni.reward(batch(captions, episode=100 + step))
    rewards = oni.reward(batch(["You pick up the key at last.", "You bump into the wall again."], episode=999))
    assert rewards[0] == 1.0 and rewards[1] == 0.0
    assert oni.update(batch(captions))["classifier_loss"] < 0.5


def test_ranking_learns_online_from_pair_preferences_and_pays_motifs_normalised_reward():
    ranked = [f"event {name}" for name in ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf")]
    rank = {caption: k for k, caption in enumerate(ranked)}  # later is better

    def prefer(pairs):
        return [1.0 / (1.0 + np.exp(rank[a] - rank[b])) for _, a, b in pairs]

    oni = ONIBonus(prefer, "ranking", delivery="sync", delay=0, seed=0)
    for step in range(300):  # a stream of captions; every 10th joins the pool
        oni.reward(batch([ranked[(step + k) % len(ranked)] for k in range(7)], episode=step))
    assert set(oni._pool) == {("", c) for c in ranked} and len(oni.labels) >= 30  # distinct pairs, each asked once
    assert len(oni._pool) == 300 * 7 // 10  # every 10th caption met, repeats kept: the normalisation weighs occurrences
    assert all(len(k) == 3 for k in oni.labels)
    scores = oni._helpful([("", c) for c in ranked])
    assert scores[-1] > 0 and scores[0] == 0.0  # the best pays, below the median pays nothing
    assert oni.update(batch(ranked))["classifier_loss"] < 0.69


def test_oni_with_the_oracle_through_the_vector_adapter_stacked_with_pbrs():
    spec = "pbrs(potential=reference)+oni(llm=oracle, delivery=sync, delay=1)"
    envs = shape_vector_env(gym.make_vec("Align/KeyDoor-5x5-v0", num_envs=4, vectorization_mode="sync"), spec, gamma=0.99)
    envs.reset(seed=0)
    for _ in range(400):
        _, rewards, _, _, infos = envs.step(envs.action_space.sample())
        np.testing.assert_allclose(rewards, infos["env_reward"] + sum(infos["reward_terms"].values()), atol=1e-9)
    oni = next(layer for layer in align_gym.wrappers.shaping_layers(envs) if layer.module.name == "oni").module.bonus
    # the oracle's helpful captions are the subgoal events, never a bump into a wall
    task = gym.make("Align/KeyDoor-5x5-v0").unwrapped.task
    assert oni.labels.get((task, "You bump into the wall.")) is False
    assert all(caption in {"You step onto the key.", "You pick up the key.", "You unlock the door with the key.",
                           "You walk through the open door.", "You reach the goal."}
               for (_, caption), helpful in oni.labels.items() if helpful)


def test_oni_with_the_embedded_model_replays_the_same_rewards(tmp_path, embedded):
    path = tmp_path / "oni.sqlite"

    def run(mode):
        client = CachedClient(embedded, LLMCache(path, mode))
        env = gym.make("Align/KeyDoor-5x5-v0")
        oni = ONIBonus(llm_labeller(client, max_tokens=24), "retrieval", delivery="sync", delay=2, task=env.unwrapped.task)
        env = ShapingWrapper(env, IntrinsicTerm(oni, coef=0.4))
        env.reset(seed=0)
        env.action_space.seed(0)
        return [env.step(env.action_space.sample())[-1]["reward_terms"]["oni"] for _ in range(25)], oni

    recorded, oni = run("readwrite")
    assert len(oni._attempts) >= 2
    replayed, _ = run("replay")
    assert replayed == recorded


def test_oni_needs_a_task_and_a_known_variant():
    with pytest.raises(ValueError, match="task in words"):
        shape_env(gym.make("CartPole-v1"), "oni(llm=oracle)", gamma=0.99)
    with pytest.raises(ValueError, match="variant"):
        ONIBonus(known_labels, "regression")


def test_the_papers_annotator_settings_batches_of_100_a_label_cap_and_bounded_resubmission():
    """As ONI's paper: the annotator labels batches of 100, labelling stops at the label cap, and a
    caption whose labelling failed is asked again, at most MAX_ATTEMPTS times in all."""
    from align_gym.llm_rewards.oni import BATCH, MAX_ATTEMPTS, MAX_LABELS

    assert (BATCH, MAX_LABELS) == (100, 25_000)
    sizes = []

    def record(items):
        sizes.append(len(items))
        return [True for _ in items]

    oni = ONIBonus(record, "retrieval", delivery="async")
    oni.reward(batch([f"You see thing {i}." for i in range(250)]))
    assert oni.wait_for_labels(10) and sizes[0] == 100 and sum(sizes) == 250
    asked = []

    def unparsable(items):  # every answer fails to parse
        asked.extend(items)
        return [None for _ in items]

    oni = ONIBonus(unparsable, "retrieval", delivery="sync", delay=0)
    for episode in range(10):
        oni.reward(batch(["You pick up the key."], episode=episode))
    assert len(asked) == MAX_ATTEMPTS and oni.update(batch([]))["asked_again"] == MAX_ATTEMPTS - 1
    capped = ONIBonus(known_labels, "retrieval", delivery="sync", delay=0, max_labels=3)
    for episode in range(4):
        capped.reward(batch([f"You see thing {episode}-{i}." for i in range(2)], episode=episode))
    assert len(capped.labels) == 4  # two batches of two arrived; then the cap stopped the asking


def test_the_prompt_holds_labelled_examples_and_the_episodes_task(embedded):
    """The real embedded model answers the paper's prompt: a few labelled examples, then the caption
    under the episode's own task."""
    from align_gym.llm_rewards.oni import EXAMPLES

    seen = []

    class Recording:  # the real model, with the prompts it was sent kept for the test
        def generate(self, prompts, **params):
            seen.extend(prompts)
            return embedded.generate(prompts, **params)

    labels = llm_labeller(Recording(), max_tokens=16)([("take the jade statue", "You take the jade statue.")])
    assert len(labels) == 1 and labels[0] in (True, False, None)
    text = "\n".join(message["content"] for message in seen[0])
    assert EXAMPLES in text and "take the jade statue" in text and "Example 4" in text
