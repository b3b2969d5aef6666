"""EpisodicReward on gymnasium's MuJoCo locomotion (the [mujoco] extra) and the episodic_mujoco recipe."""

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from align_gym.wrappers import EpisodicReward

pytest.importorskip("mujoco")

ROOT = Path(__file__).resolve().parents[1]
ENV_IDS = ["Hopper-v5", "HalfCheetah-v5", "Walker2d-v5"]


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    """MuJoCo writes MUJOCO_LOG.TXT into the working directory on warnings: keep it out of the tree."""
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_the_episodic_task_pays_nothing_until_the_last_step_then_the_dense_sum(env_id):
    env = EpisodicReward(gym.make(env_id, max_episode_steps=50))
    dense = gym.make(env_id, max_episode_steps=50)
    env.reset(seed=0)
    dense.reset(seed=0)
    rng = np.random.default_rng(0)
    paid, dense_rewards = [], []
    while True:
        action = rng.uniform(env.action_space.low, env.action_space.high).astype(env.action_space.dtype)
        _, reward, terminated, truncated, info = env.step(action)
        _, dense_reward, *_ = dense.step(action)
        assert info["dense_reward"] == pytest.approx(dense_reward)  # the wrapper changes no dynamics
        assert info["env_reward"] == reward
        paid.append(reward)
        dense_rewards.append(info["dense_reward"])
        if terminated or truncated:
            break
    assert 0 < len(paid) <= 50 and (terminated or len(paid) == 50)
    assert all(r == 0.0 for r in paid[:-1])
    assert paid[-1] == pytest.approx(sum(dense_rewards)) and paid[-1] != 0.0


def test_the_recipe_trains_sac_with_rrd_briefly_and_reports_the_episodic_return(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "episodic_mujoco.py"), "--env", "Hopper-v5", "--steps", "300",
         "--max-episode-steps", "100", "--eval-episodes", "2", "--shaping", "rrd(episodes=8)"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "Hopper-v5, episodic reward, SAC with rrd(episodes=8) after 300 steps: episodic return" in out.stdout, out.stdout
