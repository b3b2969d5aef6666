"""ToolRL's reward: the paper's formula, an optimal matching of parallel calls, and the shaping on
the tool tasks through the single and vector adapters."""

import json

import gymnasium as gym
import numpy as np
import pytest

import align_gym  # noqa: F401
from align_gym.wrappers import shape_env, shape_vector_env
from align_gym.wrappers.toolrl import parse_calls, toolrl_reward


def call(name, **arguments):
    return json.dumps({"name": name, "arguments": arguments})


def test_the_formula_at_its_levels():
    reference = call("query", sql="SELECT 1", limit=5)
    assert toolrl_reward(reference, reference) == 4.0  # format 1 + correct 3
    # right name and keys, one of two values: score 1 + 1 + 1 of max 1 + 1 + 2 -> 6*3/4 - 3 = 1.5
    assert toolrl_reward(call("query", sql="SELECT 2", limit=5), reference) == pytest.approx(2.5)
    # wrong tool: nothing matches, only the format point
    assert toolrl_reward(call("describe", table="t"), reference) == -2.0
    assert toolrl_reward("SELECT 1", reference) == -3.0 and parse_calls('{"name": 1}') is None


def test_parallel_calls_are_matched_optimally_not_greedily():
    reference = call("add", a=1, b=2) + call("add", a=1, b=3)
    swapped = call("add", a=1, b=3) + call("add", a=1, b=2)
    assert toolrl_reward(swapped, reference) == 4.0  # order does not matter
    assert toolrl_reward(call("add", a=1, b=2), reference) < toolrl_reward(swapped, reference)


def test_the_shaping_on_toolcalc_leaves_the_task_reward_alone():
    env = shape_env(gym.make("Align/ToolCalc-v0"), "toolrl", gamma=0.99)
    _, info = env.reset(seed=0)
    terms = []
    for _ in range(4):
        reference = info["state"]["reference_call"]
        wrong = reference.replace(" * ", " + ") if "*" in reference else "no call"
        *_, info = env.step(wrong)
        terms.append(info["reward_terms"]["toolrl"])
        _, reward, terminated, _, info = env.step(reference)
        terms.append(info["reward_terms"]["toolrl"])
        assert reward == info["env_reward"] + info["reward_terms"]["toolrl"]
        if terminated:
            break
    assert terms[:2] == [2.0, 4.0] and terms[2] == -3.0 and info["env_reward"] == 1.0 and info["success"]


def test_the_vector_adapter_scores_each_sub_env():
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("Align/ToolCalc-v0")] * 2)
    shaped = shape_vector_env(envs, "toolrl(coef=0.5)", gamma=0.99)
    _, infos = shaped.reset(seed=[0, 1])
    actions = (infos["state"]["reference_call"][0], "not a call")
    _, rewards, *_ , infos = shaped.step(actions)
    assert np.allclose(infos["reward_terms"]["toolrl"], [2.0, -1.5]) and np.allclose(rewards, [2.0, -1.5])


def test_choice_views_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="use the text id"):
        shape_env(gym.make("Align/ToolCalc-Choice-v0"), "toolrl", gamma=0.99)
