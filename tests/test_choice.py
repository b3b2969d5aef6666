"""The -Choice view and TextObservation: masks that match valid_actions, encoders, and MaskablePPO
learning the easiest TextQuest well above a random masked policy."""

import gymnasium as gym
import numpy as np
import pytest
from sb3_contrib import MaskablePPO

import align_gym  # noqa: F401
from align_gym.agents import evaluate, make_vec_env
from align_gym.wrappers.text import HashingEncoder, TextObservation


def test_masks_and_commands_follow_the_text_env():
    env = gym.make("Align/TextQuest-medium-Choice-v0").unwrapped
    _, info = env.reset(seed=2)
    rng = np.random.default_rng(0)
    for _ in range(200):
        masks = env.action_masks()
        assert sorted(env.command(i) for i in np.flatnonzero(masks)) == sorted(info["valid_actions"])
        action = int(rng.choice(np.flatnonzero(masks)))
        obs, _, terminated, truncated, info = env.step(action)
        assert info["action_valid"] and info["command"] == env.command(action)
        assert env.observation_space.contains(obs)
        if terminated or truncated:
            _, info = env.reset()
    masked = int(np.flatnonzero(~env.action_masks())[0])
    before = info["state_hash"]
    *_, info = env.step(masked)  # an inadmissible command changes nothing, as in the text env
    assert not info["action_valid"] and info["state_hash"] == before
    assert env.task == env.text_env.task and env.state_dict() == env.text_env.state_dict()
    with pytest.raises(ValueError, match="action"):
        env.step(999)


def test_text_observation_encoders():
    hashing = HashingEncoder()
    a, b = hashing.encode(["You carry: a brass key.", "You see: a brass key."])
    assert np.isclose(np.linalg.norm(a), 1.0) and 0.0 < float(a @ b) < 1.0
    env = TextObservation(gym.make("Align/TextQuest-easy-v0"), encoder="minilm")  # the real embedded encoder
    obs, _ = env.reset(seed=0)
    assert obs.shape == (384,) and np.isclose(np.linalg.norm(obs), 1.0, atol=1e-3)
    with pytest.raises(ValueError, match="unknown encoder 'bow'"):
        TextObservation(gym.make("Align/TextQuest-easy-v0"), encoder="bow")
    with pytest.raises(ValueError, match="text observation space"):
        TextObservation(gym.make("CartPole-v1"))


def random_masked_success(env_id, n_episodes, seed):
    env = gym.make(env_id).unwrapped
    rng = np.random.default_rng(seed)
    successes = 0
    for episode in range(n_episodes):
        env.reset(seed=seed + episode)
        while True:
            *_, terminated, truncated, info = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
            if terminated or truncated:
                successes += info["success"]
                break
    return successes / n_episodes


def test_maskable_ppo_learns_the_easiest_quest_well_above_random():
    env_id = "Align/TextQuest-easy-Choice-v0"
    venv = make_vec_env(env_id, n_envs=8, gamma=0.99, seed=0)
    model = MaskablePPO("MlpPolicy", venv, n_steps=128, batch_size=256, learning_rate=7e-4, ent_coef=0.01,
                        gamma=0.99, seed=0, device="cpu")
    model.learn(12_000)
    learned = evaluate(model, env_id, n_episodes=200, seed=10_000, deterministic=False).success_rate
    random = random_masked_success(env_id, n_episodes=200, seed=10_000)
    # Measured: learned 0.925, random 0.615 over these 200 episodes (seed 0; seeds 1 and 2 reach 0.92).
    assert learned >= random + 0.2, (learned, random)


def test_tool_tasks_fill_slots_from_the_menu_and_show_it():
    env = gym.make("Align/ToolCalc-Choice-v0").unwrapped
    obs, info = env.reset(seed=0)
    assert env.action_space.n == 16 and int(env.action_masks().sum()) == len(info["valid_actions"])
    assert [env.command(k) for k in range(len(info["valid_actions"]))] == info["valid_actions"]
    assert env.command(15) == ""  # an empty slot: masked, and refused if taken
    solution = info["valid_actions"].index(info["state"]["reference_call"])
    obs2, _, _, _, info = env.step(solution)
    assert info["action_valid"] and info["state"]["steps_done"] == 1
    assert not np.allclose(obs, obs2)  # new results and a new menu
