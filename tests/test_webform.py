"""WebForm: every task kind solvable from its instruction, valid actions that work, a parser that never raises."""

import copy

import gymnasium as gym
import numpy as np
import pytest

import align_gym  # noqa: F401
from align_gym.envs.text.core import CHARSET
from align_gym.envs.web.webform import KINDS, scripted_solver


@pytest.mark.parametrize("kind", KINDS)
def test_the_scripted_solver_does_every_task_on_seeds_0_to_99(kind):
    env = gym.make("Align/WebForm-v0", task=kind)
    for seed in range(100):
        _, info = env.reset(seed=seed)
        for action in scripted_solver(env.unwrapped):
            assert action in info["valid_actions"], action
            _, reward, terminated, _, info = env.step(action)
        assert terminated and info["success"] and reward == 1.0 and info["reward_parts"] == {"task": 1.0}


def test_mistakes_fail_the_task():
    env = gym.make("Align/WebForm-v0", task="sequence")
    env.reset(seed=0)
    wrong = next(b for b in env.unwrapped.buttons if b != env.unwrapped.target_clicks[0])
    _, reward, terminated, _, info = env.step(f"click[{wrong}]")
    assert terminated and reward == 0.0 and not info["success"]
    env = gym.make("Align/WebForm-v0", task="form")
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step("click[Submit]")  # nothing typed
    assert terminated and reward == 0.0


def test_valid_actions_all_work_and_change_something():
    env = gym.make("Align/WebForm-v0")
    _, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(300):
        for action in info["valid_actions"]:
            probe = copy.deepcopy(env.unwrapped)
            _, _, terminated, _, probe_info = probe.step(action)
            assert probe_info["action_valid"] and (terminated or probe_info["state_hash"] != info["state_hash"]), action
        _, _, terminated, truncated, info = env.step(info["valid_actions"][int(rng.integers(len(info["valid_actions"])))])
        if terminated or truncated:
            _, info = env.reset()


def test_ten_thousand_random_strings_never_raise_nor_change_the_state():
    env = gym.make("Align/WebForm-v0")
    _, info = env.reset(seed=1)
    rng = np.random.default_rng(1)
    chars = np.array(list(CHARSET))
    words = ["type", "click", "select", "search", "submit", "city=", "first name=Ada", "Oslo", "alpha", "=", ""]
    for i in range(10_000):
        if i % 2:
            command = "".join(rng.choice(chars, size=int(rng.integers(0, 40))))
        else:
            command = f"{rng.choice(words)}[{''.join(rng.choice(words, size=int(rng.integers(0, 3))))}]"
        before = info["state_hash"]
        _, reward, terminated, truncated, info = env.step(command)
        if not info["action_valid"]:
            assert info["state_hash"] == before and reward == 0.0 and info["invalid_action"]
        if terminated or truncated:
            _, info = env.reset()


def test_two_instances_never_see_each_others_state():
    def play(env, seed):
        env.reset(seed=seed)
        return [env.step(a)[0] for a in scripted_solver(env.unwrapped)]

    alone = {seed: play(gym.make("Align/WebForm-v0", task="form"), seed) for seed in (1, 2)}
    a, b = gym.make("Align/WebForm-v0", task="form"), gym.make("Align/WebForm-v0", task="form")
    a.reset(seed=1)
    b.reset(seed=2)
    plans = {1: scripted_solver(a.unwrapped), 2: scripted_solver(b.unwrapped)}
    seen = {1: [], 2: []}
    for step in range(max(map(len, plans.values()))):
        for seed, env in ((1, a), (2, b)):
            if step < len(plans[seed]):
                seen[seed].append(env.step(plans[seed][step])[0])
    assert seen == alone
