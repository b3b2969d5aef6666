"""LLM-written potentials and rewards as shapings: the prompt, components as terms, loading."""

import json

import gymnasium as gym
import pytest

import align_gym  # noqa: F401
from align_gym.llm_rewards.reward_code import LLMPotential, code_path, reward_prompt
from align_gym.wrappers import is_invariant, shape_env

TWO_PARTS = "def potential(state):\n    return {'key': 0.5 * state['has_key'], 'door': 0.5 * state['door_open']}\n"
SUMMED = "def potential(state):\n    return 0.5 * state['has_key'] + 0.5 * state['door_open']\n"


def play(spec, seed=0, steps=200):
    env = shape_env(gym.make("Align/KeyDoor-5x5-v0"), spec, gamma=0.99)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return [env.step(env.action_space.sample())[1:] for _ in range(steps)]


def test_components_are_terms_that_sum_to_the_potential_of_their_total(tmp_path):
    (tmp_path / "parts.py").write_text(TWO_PARTS)
    (tmp_path / "total.py").write_text(SUMMED)
    parts = play(f"llm_potential(path={str(tmp_path / 'parts.py')!r})")
    total = play(f"llm_potential(path={str(tmp_path / 'total.py')!r})")
    for (r_parts, *_, info_parts), (r_total, *_, info_total) in zip(parts, total):
        assert set(info_parts["reward_terms"]) == {"llm_potential.key", "llm_potential.door"}
        assert sum(info_parts["reward_terms"].values()) == pytest.approx(info_total["reward_terms"]["llm_potential"])
        assert r_parts == pytest.approx(r_total)
    assert any(info["reward_terms"]["llm_potential.key"] > 0 for *_, info in parts)  # the key was picked up


def test_an_llm_reward_is_added_raw_and_marked_non_invariant(tmp_path):
    (tmp_path / "r.py").write_text("def reward(state, action, next_state):\n"
                                   "    return {'moved': float(next_state['agent_x'] != state['agent_x']), 'act': action * 0.0}\n")
    rows = play(f"llm_reward(path={str(tmp_path / 'r.py')!r}, coef=0.1)", steps=50)
    terms = [info["reward_terms"] for *_, info in rows]
    assert set(terms[0]) == {"llm_reward.moved", "llm_reward.act"}
    assert {t["llm_reward.moved"] for t in terms} <= {0.0, 0.1}
    assert is_invariant("llm_potential(path=x)") and not is_invariant("llm_reward(path=x)")


def test_a_search_folder_loads_its_best_candidate(tmp_path):
    (tmp_path / "candidate_1.py").write_text(SUMMED)
    (tmp_path / "summary.json").write_text(json.dumps({"best": "candidate_1.py", "candidates": []}))
    assert code_path(tmp_path) == tmp_path / "candidate_1.py"
    phi = LLMPotential.load(tmp_path)
    assert phi({"has_key": True, "door_open": False}) == 0.5
    (tmp_path / "summary.json").write_text(json.dumps({"best": None, "candidates": []}))
    with pytest.raises(ValueError, match="no valid candidate"):
        LLMPotential.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="without summary.json"):
        code_path(tmp_path / "..")


def test_the_prompt_describes_the_state_as_a_class_and_carries_feedback():
    env = gym.make("Align/PointMaze-v0")
    _, info = env.reset(seed=0)
    [system, user] = reward_prompt(env, "reward", info["state"], feedback="Your last code scored 0.1.")
    assert system["role"] == "system" and "class State:" in user["content"]
    for key in env.unwrapped.state_schema:
        assert f"    {key}: " in user["content"]
    assert "reward(state: dict, action, next_state: dict) -> float" in user["content"]
    assert "Your last code scored 0.1." in user["content"] and env.unwrapped.task in user["content"]
    with pytest.raises(ValueError, match="kind"):
        reward_prompt(env, "value")
