"""EpisodicReward and KeyDoorSubgoals: the dense task, and the same task paid only at the end."""

import gymnasium as gym
import pytest

import align_gym  # noqa: F401
from align_gym.envs.keydoor import DOWN, LEFT, PICKUP, RIGHT, TOGGLE, UP
from align_gym.wrappers import shape_env
from align_gym.wrappers.episodic import EpisodicReward


def walk(env, to):
    """Moves from the agent's cell to ``to``, x first (no obstacle inside either room)."""
    base = env.unwrapped
    moves = []
    dx, dy = to[0] - base.agent[0], to[1] - base.agent[1]
    moves += [RIGHT if dx > 0 else LEFT] * abs(dx) + [DOWN if dy > 0 else UP] * abs(dy)
    return moves


def solve(env):
    """The actions that solve a freshly reset KeyDoor, planned from its layout."""
    base = env.unwrapped
    start = base.agent
    plan = walk(env, base.key) + [PICKUP]
    base.agent = base.key
    beside = (base.door[0] - 1, base.door[1])
    plan += walk(env, beside) + [TOGGLE, RIGHT, RIGHT]
    base.agent = (base.door[0] + 1, base.door[1])
    plan += walk(env, base.goal)
    base.agent = start
    return plan


@pytest.mark.parametrize("seed", range(5))
def test_subgoals_pay_once_each_and_sum_to_the_dense_return(seed):
    env = gym.make("Align/KeyDoorSubgoals-v0")
    env.reset(seed=seed)
    rewards, parts = [], {"key": 0.0, "door": 0.0, "goal": 0.0}
    for action in solve(env) + [PICKUP, TOGGLE]:  # repeating a subgoal's action pays nothing more
        _, reward, terminated, _, info = env.step(action)
        rewards.append(reward)
        for name, value in info["reward_parts"].items():
            parts[name] += value
        if terminated:
            break
    assert terminated and info["success"]
    steps = env.unwrapped._steps
    assert parts == pytest.approx({"key": 0.25, "door": 0.25, "goal": 0.5 * (1 - 0.9 * steps / env.unwrapped.max_steps)})
    assert sum(rewards) == pytest.approx(sum(parts.values()))
    assert sum(r > 0 for r in rewards) == 3  # spread over the episode: three paying steps


@pytest.mark.parametrize("finish", ["terminated", "truncated"])
def test_the_episodic_task_pays_the_sum_on_the_last_step_only(finish):
    dense = gym.make("Align/KeyDoorSubgoals-v0", max_steps=None if finish == "terminated" else 12)
    episodic = EpisodicReward(gym.make("Align/KeyDoorSubgoals-v0", max_steps=None if finish == "terminated" else 12))
    dense.reset(seed=1)
    episodic.reset(seed=1)
    plan = solve(dense)
    withheld, dense_rewards = [], []
    for action in plan + [RIGHT] * 20:
        _, r_dense, *_ = dense.step(action)
        _, r_episodic, terminated, truncated, info = episodic.step(action)
        dense_rewards.append(r_dense)
        withheld.append(r_episodic)
        assert info["dense_reward"] == r_dense and info["env_reward"] == r_episodic
        if terminated or truncated:
            break
    assert (terminated, truncated) == ((True, False) if finish == "terminated" else (False, True))
    assert all(r == 0.0 for r in withheld[:-1]) and withheld[-1] == pytest.approx(sum(dense_rewards))
    assert sum(dense_rewards) > 0  # the key at least, even when cut short


def test_shaping_layers_keep_the_episodic_reward_as_the_task_reward():
    env = shape_env(gym.make("Align/KeyDoorSubgoals-Episodic-v0"), "pbrs(potential=reference)", gamma=0.99)
    env.reset(seed=2)
    for action in solve(env):
        _, reward, terminated, _, info = env.step(action)
        assert reward == pytest.approx(info["env_reward"] + info["reward_terms"]["pbrs"])
    summary = info["episode_summary"]
    assert terminated and summary["true_return"] == pytest.approx(info["env_reward"]) and info["env_reward"] > 0.5
