"""ELLM with the real sentence encoder and the real embedded model, through a cache file and a replay."""

import gymnasium as gym
import numpy as np
import pytest

import align_gym  # noqa: F401
from align_gym.llm_rewards.cache import LLMCache
from align_gym.llm_rewards.clients.cached import CachedClient
from align_gym.llm_rewards.ellm import THRESHOLD, ELLMBonus, separating_thresholds
from align_gym.wrappers import EpisodeStarts, ShapingWrapper, TransitionBatch
from align_gym.wrappers.intrinsic import IntrinsicTerm


@pytest.fixture(scope="module")
def encoder():
    from align_gym.llm_rewards.encoder import SentenceEncoder

    return SentenceEncoder()


def test_the_stated_threshold_separates_the_held_out_pairs(encoder):
    low, high = separating_thresholds(encoder)
    assert low < THRESHOLD < high


def test_matching_captions_are_rewarded_and_others_not(encoder):
    bonus = ELLMBonus("Open the door.", llm="unused: goals are given", encoder=encoder)
    bonus._goals["Open the door.", "A key lies here."] = ["pick up key", "open door"]  # as if the LLM had suggested them
    bonus.start_episodes(EpisodeStarts([0, 1, 2], [None] * 3, ["A key lies here."] * 3, [{}] * 3))
    captions = ["You pick up the key.", "You bump into the wall.", "You move left."]
    batch = TransitionBatch([0] * 3, [0] * 3, [0] * 3, captions, [{}] * 3, [{}] * 3, np.zeros(3),
                            np.zeros(3, bool), np.zeros(3, bool), np.arange(3))
    rewards = bonus.reward(batch)
    assert rewards[0] > THRESHOLD and rewards[1] == rewards[2] == 0.0
    # the goal achieved in episode 0 is not suggested again there, and other goals still pay
    assert bonus._achieved[0] == {"pick up key"}
    assert bonus.goals("A key lies here.") == ["pick up key", "open door"]


def test_ellm_end_to_end_with_the_embedded_model_and_its_replay(tmp_path, embedded, encoder):
    path = tmp_path / "ellm.sqlite"

    def run(mode):
        client = CachedClient(embedded, LLMCache(path, mode, run_id="ellm-test"))
        env = gym.make("Align/KeyDoor-5x5-v0")
        bonus = ELLMBonus(env.unwrapped.task, client, encoder)
        env = ShapingWrapper(env, IntrinsicTerm(bonus, coef=1.0))
        env.reset(seed=0)
        env.action_space.seed(0)
        terms = [env.step(env.action_space.sample())[-1]["reward_terms"]["ellm"] for _ in range(60)]
        return terms, bonus

    recorded, bonus = run("readwrite")
    assert bonus.stats["queries"] >= 2 and 0 <= bonus.stats["unparsed"] <= bonus.stats["queries"]
    assert all(t == 0.0 or t > THRESHOLD for t in recorded)
    stats = bonus.update(None)  # the LLM's cost is reported with the module's stats
    assert stats["queries"] == bonus.stats["queries"] and stats["llm_calls"] >= 1 and "llm_cache_hits" in stats
    replayed, replay_bonus = run("replay")  # every suggestion comes from the file: the same rewards, in order
    assert replayed == recorded
    assert replay_bonus.update(None)["llm_cache_hits"] >= bonus.stats["queries"]


def test_goals_are_asked_for_each_episodes_own_task_and_surroundings(embedded, encoder):
    """On TextQuest every episode has its own quest: ELLM asks for goals under that quest, about
    what the agent sees (the surroundings), and matches only events (the empty caption pays 0)."""
    env = gym.make("Align/TextQuest-medium-v0")
    bonus = ELLMBonus(env.unwrapped.task, embedded, encoder)
    env = ShapingWrapper(env, IntrinsicTerm(bonus, coef=1.0))
    rng = np.random.default_rng(0)
    tasks = set()
    for seed in (0, 3, 9):  # three quests: the jade statue, the old map, the ruby amulet
        _, info = env.reset(seed=seed)
        tasks.add(info["task"])
        situations = set()
        for _ in range(4):  # each valid command is an event: goals are asked for what the agent saw before it
            situations.add(info["surroundings"])
            *_, info = env.step(info["valid_actions"][int(rng.integers(len(info["valid_actions"])))])
        _, *_, info = env.step("dance")  # changes nothing: no event
        assert info["caption"] == "" and info["reward_terms"]["ellm"] == 0.0
        assert {(info["task"], s) for s in situations} <= set(bonus._goals)
    assert len(tasks) == 3 and {task for task, _ in bonus._goals} == tasks
