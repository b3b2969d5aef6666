"""Every registered Align env keeps the task contract and passes both env checkers."""

import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import align_gym
from align_gym import ENV_TABLE

ENV_IDS = list(ENV_TABLE)


def as_list(obs):
    if isinstance(obs, str):
        return obs
    return {key: value.tolist() for key, value in obs.items()} if isinstance(obs, dict) else obs.tolist()


def rollout(env_id: str, seed: int, steps: int = 300):
    env = gym.make(env_id)
    env.action_space.seed(seed)
    obs, info = env.reset(seed=seed)
    trace = [(as_list(obs), 0.0, info["caption"])]
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        trace.append((as_list(obs), reward, info["caption"]))
        if terminated or truncated:
            obs, info = env.reset()
            trace.append((as_list(obs), 0.0, info["caption"]))
    return trace


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_and_sb3_checkers_pass(env_id):
    gym_check_env(gym.make(env_id).unwrapped, skip_render_check=False)
    if not isinstance(gym.make(env_id).observation_space, gym.spaces.Text):  # SB3 takes the -Choice ids
        sb3_check_env(gym.make(env_id).unwrapped, warn=True)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_actions_same_everything(env_id):
    assert rollout(env_id, seed=3) == rollout(env_id, seed=3)
    assert rollout(env_id, seed=3) != rollout(env_id, seed=4)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_task_contract(env_id):
    env = gym.make(env_id)
    base = env.unwrapped
    assert isinstance(base.task, str) and len(base.task) > 10
    assert {"reference", "distance"} <= set(base.potentials)
    _, info = env.reset(seed=0)
    episodes = 0
    assert info["caption"]  # a reset is an event: the episode starts
    for _ in range(3000):
        # an event, or the empty caption where nothing changed and the surroundings say what persists
        assert isinstance(info["caption"], str) and (info["caption"] or info["surroundings"])
        assert isinstance(info["task"], str) and info["task"]
        assert set(info["state"]) == set(base.state_schema)
        assert all(isinstance(v, (bool, int, float, str)) for v in info["state"].values())
        for potential in base.potentials.values():
            assert np.isfinite(potential(dict(info["state"])))
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        if terminated or truncated:
            assert isinstance(info["success"], bool)  # (Pendulum succeeds on truncation: it never terminates)
            episodes += 1
            _, info = env.reset()
        else:
            assert "success" not in info
    assert episodes > 0


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_invalid_action_is_refused_with_a_message(env_id):
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(np.full(99, 7.0) if isinstance(env.action_space, gym.spaces.Box) else 99)


def test_list_envs_names_every_id_with_its_task():
    listed = align_gym.list_envs()
    assert list(listed) == ENV_IDS and all(listed.values())


def test_make_with_module_prefix_needs_no_import():
    code = "import gymnasium as gym; env = gym.make('align_gym:Align/KeyDoor-v0'); print(env.unwrapped.size)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "8"
