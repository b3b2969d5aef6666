"""LLM-written potentials and rewards as shapings: the prompt, components as terms, loading."""

import json

import gymnasium as gym
import numpy as np
import pytest

import align_gym  # noqa: F401
from align_gym.llm_rewards.reward_code import LLMPotential, code_path, reward_prompt
from align_gym.wrappers import is_invariant, shape_env, shaping_layers

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


# Progress towards the key, but NaN once KeyDoor's door is open: a random policy rarely gets there
# before the check's states run out, PPO gets there within a few rollouts.
DOOR_NAN = ("def potential(state):\n    if state['door_open']:\n        return float('nan')\n"
            "    return 0.1 * state['has_key']\n")


def ppo_on_keydoor(spec, tmp_path):
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import configure

    from align_gym.agents import make_vec_env

    venv = make_vec_env("Align/KeyDoor-5x5-v0", n_envs=4, seed=0, shaping=spec, gamma=0.99)
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=256, n_epochs=4, gamma=0.99, seed=0, device="cpu")
    model.set_logger(configure(str(tmp_path / "log"), ["csv"]))
    return model


def test_a_potential_nan_once_the_door_is_open_stops_ppo_with_an_error_naming_potential_state_and_step(tmp_path):
    from align_gym.agents import RewardTermsCallback

    (tmp_path / "door_nan.py").write_text(DOOR_NAN)
    model = ppo_on_keydoor(f"llm_potential(path={str(tmp_path / 'door_nan.py')!r})", tmp_path)
    with pytest.raises(ValueError) as caught:  # today: "Expected parameter logits ... invalid values" later on
        model.learn(4096, callback=RewardTermsCallback())
    error, message = caught.value, str(caught.value)
    assert error.state["door_open"] is True and error.term == "llm_potential"
    assert "door_nan.py" in message and "'llm_potential'" in message and "'door_open': True" in message
    assert f"step {error.episode_step} of its episode" in message and f"transition {error.transition}" in message
    assert 0 < error.transition <= model.num_timesteps + 4  # the step being taken when it broke


def test_with_on_nonfinite_zero_ppo_trains_through_and_logs_the_count(tmp_path):
    import csv

    from align_gym.agents import RewardTermsCallback

    (tmp_path / "door_nan.py").write_text(DOOR_NAN)
    model = ppo_on_keydoor(f"llm_potential(path={str(tmp_path / 'door_nan.py')!r}, on_nonfinite='zero')", tmp_path)
    with pytest.warns(RuntimeWarning, match="door_nan.py"):
        model.learn(1024, callback=RewardTermsCallback())
    [layer] = [layer for layer in shaping_layers(model.get_env()) if layer.module is not None]
    assert layer.module.nonfinite > 0
    rows = list(csv.DictReader((tmp_path / "log" / "progress.csv").open()))
    logged = [float(row["align/llm_potential/nonfinite"]) for row in rows if row.get("align/llm_potential/nonfinite")]
    assert logged and logged[-1] == layer.module.nonfinite
    assert all(np.isfinite(p.detach().numpy()).all() for p in model.policy.parameters())


def test_llm_reward_code_that_goes_nan_stops_naming_its_transition_or_pays_zero_counted(tmp_path):
    (tmp_path / "r.py").write_text("def reward(state, action, next_state):\n"
                                   "    return float('nan') if next_state['door_open'] else 0.01\n")
    spec = f"llm_reward(path={str(tmp_path / 'r.py')!r}"
    with pytest.raises(ValueError, match=r"term 'llm_reward' \(LLMCode\('.*r\.py'.*next state \{.*'door_open': True"):
        play(spec + ")", steps=300)
    with pytest.warns(RuntimeWarning, match="paid as 0"):
        env = shape_env(gym.make("Align/KeyDoor-5x5-v0"), spec + ", on_nonfinite='zero')", gamma=0.99)
        env.reset(seed=0)
        env.action_space.seed(0)
        rows = [env.step(env.action_space.sample())[1:] for _ in range(300)]
    opened = [info["state"]["door_open"] for *_, info in rows]
    assert 0 < sum(opened) < len(rows)  # the door opened on the way
    assert [info["reward_terms"]["llm_reward"] for *_, info in rows] == [0.0 if o else 0.01 for o in opened]
    assert env.get_wrapper_attr("module").nonfinite == sum(opened)
    assert env.get_wrapper_attr("driver").update() == {"nonfinite": float(sum(opened))}
