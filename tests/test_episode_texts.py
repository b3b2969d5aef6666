"""Every adapter hands a module each episode's own task and the surroundings, step by step and at
episode starts, under both autoreset modes of gymnasium's vector envs and in SB3's VecEnv."""

from collections import defaultdict

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from stable_baselines3.common.vec_env import DummyVecEnv

import align_gym  # noqa: F401
from align_gym.wrappers import RewardModule, ShapingWrapper
from align_gym.wrappers.sb3 import ShapingVecEnvWrapper
from align_gym.wrappers.vector import ShapingVectorWrapper

ENV = "Align/TextQuest-medium-v0"


class Recorder(RewardModule):
    """Keeps what it is handed: (episode, task, surroundings) of each start and each transition."""

    name = "recorder"
    needs = frozenset({"captions", "tasks", "surroundings", "episode_ids", "terminated", "truncated"})

    def __init__(self):
        self.starts, self.rows = {}, defaultdict(list)

    def start_episodes(self, starts):
        for episode, task, surroundings in zip(starts.episode_ids, starts.tasks, starts.surroundings):
            self.starts[int(episode)] = (task, surroundings)

    def reward(self, batch):
        for episode, task, surroundings in zip(batch.episode_ids, batch.tasks, batch.surroundings):
            self.rows[int(episode)].append((task, surroundings))
        return np.zeros(len(batch))


def make_env():
    return gym.make(ENV, max_steps=6)


def commands(n, rng):
    return [f"go {rng.choice(['north', 'south', 'east', 'west'])}" for _ in range(n)]


def check(recorder):
    ended = [e for e in recorder.rows if e in recorder.starts and len(recorder.rows[e]) == 6]
    assert len(ended) >= 4
    for episode in ended:
        task, surroundings = recorder.starts[episode]
        assert task and surroundings.startswith("You are in the ")
        assert {row[0] for row in recorder.rows[episode]} == {task}  # the episode's own task on every step
        assert all(row[1].startswith("You are in the ") for row in recorder.rows[episode])
    assert len({recorder.starts[e][0] for e in ended}) >= 2  # episodes differ in their task


def test_the_gymnasium_adapter():
    recorder, rng = Recorder(), np.random.default_rng(0)
    env = ShapingWrapper(make_env(), recorder)
    for seed in (0, 3, 9, 11):
        env.reset(seed=seed)
        for command in commands(6, rng):
            env.step(command)
    check(recorder)


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_the_vector_adapter(mode):
    recorder, rng = Recorder(), np.random.default_rng(0)
    env = ShapingVectorWrapper(SyncVectorEnv([make_env] * 2, autoreset_mode=mode), recorder)
    env.reset(seed=3)
    for _ in range(30):
        env.step(np.array(commands(2, rng), dtype=object))
    check(recorder)


def test_the_sb3_adapter():
    recorder, rng = Recorder(), np.random.default_rng(0)
    venv = DummyVecEnv([lambda: gym.make("Align/TextQuest-medium-Choice-v0", max_steps=6)] * 2)  # SB3 takes no text
    venv.seed(3)
    env = ShapingVecEnvWrapper(venv, recorder)
    env.reset()
    for _ in range(30):
        env.step(rng.integers(venv.action_space.n, size=2))
    check(recorder)
