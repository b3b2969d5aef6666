"""The MiniHack adapter: endings, captions, state, seeding, a clear error without the extra, and
SB3 with every classic module over its dict observations."""

import sys

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO

import align_gym
from align_gym.agents import make_vec_env, policy_for
from align_gym.envs.minihack import MiniHackEnv
from align_gym.wrappers.core import shaping_layers

SOUTH_EAST = 5  # MiniHack's action order: N, E, S, W, NE, SE, SW, NW


def test_reaching_the_staircase_is_a_success_with_a_readable_last_step():
    env = gym.make("Align/MiniHack-Room-5x5-v0")  # a fixed layout: start top-left, staircase bottom-right
    _, info = env.reset(seed=0)
    assert info["state"]["stairs_dist"] == 4
    for _ in range(3):
        _, reward, terminated, truncated, info = env.step(SOUTH_EAST)
        assert (reward, terminated, truncated) == (0.0, False, False) and "success" not in info
    assert info["caption"] == "You come next to the staircase down."  # an event: it has just come next
    assert info["surroundings"] == "Next to you: the staircase down."  # what persists
    assert info["state"]["adjacent"] == "the staircase down (south-east)"
    _, reward, terminated, truncated, info = env.step(SOUTH_EAST)
    # NetHack blanks its screen when the game ends: the adapter rebuilds the last frame
    assert (reward, terminated, truncated, info["success"]) == (1.0, True, False, True)
    assert info["caption"].startswith("You reach the staircase down.")
    assert info["state"]["stairs_dist"] == 0 and (info["state"]["x"], info["state"]["y"]) != (0, 0)
    assert env.unwrapped.potentials["reference"](info["state"]) == 1.0


def test_captions_are_events_and_surroundings_persist():
    """A step that changes nothing the agent perceives has the empty caption; what stays next to
    the agent is in ``info["surroundings"]`` and never repeats as a caption."""
    env = gym.make("Align/MiniHack-KeyRoom-S5-v0")
    _, info = env.reset(seed=0)
    env.action_space.seed(0)
    assert info["task"] == env.unwrapped.task and info["surroundings"]
    before, empty = info["surroundings"], 0
    for _ in range(2000):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        caption = info["caption"]
        assert "Next to you" not in caption
        if info["surroundings"] == before and "You come next to" in caption:
            raise AssertionError(f"a thing already next to the agent captioned again: {caption!r}")
        empty += caption == ""
        before = info["surroundings"]
        if terminated or truncated:
            _, info = env.reset()
            before = info["surroundings"]
    assert empty > 500  # most random steps change nothing the agent perceives


def test_the_step_limit_is_a_truncation_not_a_termination():
    env = gym.make("Align/MiniHack-Room-5x5-v0", max_steps=3)
    env.reset(seed=0)
    ends = [env.step(0)[2:4] for _ in range(3)]  # walking north into the wall
    assert ends == [(False, False), (False, False), (False, True)]


def test_picking_up_the_key_shows_in_state_caption_and_observation():
    env = gym.make("Align/MiniHack-KeyRoom-S5-v0")
    obs, info = env.reset(seed=1)
    env.action_space.seed(1)
    assert info["state"]["key_dist"] >= 0 and not info["state"]["holds_key"] and obs["stats"][2] == 0.0
    for _ in range(5000):
        obs, _, terminated, truncated, info = env.step(env.action_space.sample())
        if info["state"]["holds_key"]:
            break
        if terminated or truncated:
            obs, info = env.reset()
    assert info["state"]["holds_key"] and obs["stats"][2] == 1.0
    assert "key" in info["caption"]  # NetHack's "f - a skeleton key."
    assert env.observation_space.contains(obs)


def test_layouts_follow_the_seed():
    def layout(seed):
        env = gym.make("Align/MiniHack-KeyRoom-S5-v0", render_mode="ansi")
        env.reset(seed=seed)
        return env.render()

    assert layout(3) == layout(3)
    assert len({layout(seed) for seed in range(4)}) > 1


def test_tasks_are_listed_in_words():
    listed = align_gym.list_envs()
    assert "key" in listed["Align/MiniHack-KeyRoom-S5-v0"] and "boulder" in listed["Align/MiniHack-River-v0"]
    assert gym.make("Align/MiniHack-River-v0").unwrapped.task == listed["Align/MiniHack-River-v0"]


def test_unknown_task_and_missing_extra_are_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match="unknown MiniHack task"):
        MiniHackEnv("Room-99x99")
    monkeypatch.setitem(sys.modules, "minihack", None)  # as if the extra were not installed
    with pytest.raises(ImportError, match=r"align-gym\[minihack\]"):
        MiniHackEnv("Room-5x5")


def test_ppo_with_classic_modules_over_dict_observations():
    spec = "pbrs(potential=reference)+count(coef=0.01)+rnd(coef=0.01, warmup=64, update_every=256)+e3b(coef=0.001)"
    venv = make_vec_env("Align/MiniHack-KeyRoom-S5-v0", n_envs=2, shaping=spec, gamma=0.99, seed=0)
    assert policy_for(venv) == "MultiInputPolicy"
    model = PPO(policy_for(venv), venv, n_steps=128, batch_size=128, gamma=0.99, seed=0, device="cpu")
    model.learn(512)
    rnd = next(layer.module.bonus for layer in shaping_layers(venv) if layer.module.name == "rnd")
    # one-hot symbol classes as SB3 reads them: 81 cells x N_CLASSES, then the 3 stats
    assert rnd.flat.size == 81 * 14 + 3 and rnd.obs_moments.count >= 512  # trained on what PPO saw
    assert np.isfinite(rnd.errors([venv.observation_space.sample()])).all()


def ignored_signals():
    with open("/proc/self/status") as status:
        mask = int(next(line for line in status if line.startswith("SigIgn")).split()[1], 16)
    return {number for number in range(1, 65) if mask >> (number - 1) & 1}


def test_a_game_end_leaves_the_process_signals_as_they_were():
    import signal

    before = ignored_signals()
    env = gym.make("Align/MiniHack-Room-5x5-v0")
    env.reset(seed=0)
    for _ in range(4):
        *_, terminated, _, _ = env.step(SOUTH_EAST)
    assert terminated  # NetHack ignores SIGHUP and SIGXCPU when a game ends; the adapter undoes it
    assert ignored_signals() == before and signal.SIGXCPU not in before


def test_the_flat_ids_show_the_dict_observation_one_hot_in_one_box():
    flat, nested = gym.make("Align/MiniHack-KeyRoom-S5-Flat-v0"), gym.make("Align/MiniHack-KeyRoom-S5-v0")
    (a, info_a), (b, info_b) = flat.reset(seed=4), nested.reset(seed=4)
    n_classes = int(nested.observation_space["crop"].nvec[0])
    for _ in range(5):
        assert flat.observation_space.contains(a) and info_a["state"] == info_b["state"]
        assert np.array_equal(a[:-3].reshape(-1, n_classes).argmax(1), b["crop"]) and np.array_equal(a[-3:], b["stats"])
        action = int(flat.action_space.sample())
        a, *_, info_a = flat.step(action)
        b, *_, info_b = nested.step(action)


def test_a_cleanrl_shaped_loop_builds_its_mlp_from_the_flat_space_and_trains():
    """The shape of CleanRL's ppo.py: a sync vector env, an MLP sized by
    ``np.array(envs.single_observation_space.shape).prod()``, sampled actions, a policy-gradient step."""
    import torch
    from torch import nn

    envs = gym.vector.SyncVectorEnv([lambda: gym.wrappers.RecordEpisodeStatistics(gym.make("Align/MiniHack-Room-5x5-Flat-v0"))
                                     for _ in range(2)])
    assert isinstance(envs.single_action_space, gym.spaces.Discrete)
    inputs = int(np.array(envs.single_observation_space.shape).prod())
    actor = nn.Sequential(nn.Linear(inputs, 64), nn.Tanh(), nn.Linear(64, int(envs.single_action_space.n)))
    optimizer = torch.optim.Adam(actor.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in actor.parameters()]
    obs, _ = envs.reset(seed=0)
    log_probs, rewards = [], []
    for _ in range(64):
        dist = torch.distributions.Categorical(logits=actor(torch.as_tensor(obs, dtype=torch.float32)))
        action = dist.sample()
        obs, reward, terminated, truncated, infos = envs.step(action.numpy())
        log_probs.append(dist.log_prob(action))
        rewards.append(torch.as_tensor(reward, dtype=torch.float32))
    returns = torch.stack(rewards).flip(0).cumsum(0).flip(0)
    loss = -(torch.stack(log_probs) * (returns - returns.mean())).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert obs.shape == (2, inputs) and torch.isfinite(loss)
    assert any(not torch.equal(p, q) for p, q in zip(actor.parameters(), before))
    envs.close()
