"""Pendulum: gymnasium's Pendulum-v1 step for step, its reward parts, success, potentials, episodic id."""

import math

import gymnasium as gym
import numpy as np
import pytest

import align_gym  # noqa: F401
from align_gym.envs.pendulum import BALANCE_STEPS, UPRIGHT_ANGLE, PendulumEnv, angle_from_upright

TOP = {"theta": 0.0, "theta_dot": 0.0}
BOTTOM = {"theta": math.pi, "theta_dot": 0.0}


def torque(value):
    return np.array([value], dtype=np.float32)


def random_torques(seed, n=200):
    return np.random.default_rng(seed).uniform(-2.0, 2.0, size=(n, 1)).astype(np.float32)


def swing_up_and_balance(state):
    """A hand-made controller: pump energy towards the upright's, then a PD hold near the top."""
    theta, theta_dot = state["theta"], state["theta_dot"]
    if abs(theta) < 0.5:
        return torque(np.clip(-10.0 * theta - 2.0 * theta_dot, -2.0, 2.0))
    energy = theta_dot**2 / 6.0 + 5.0 * math.cos(theta)  # E(up, at rest) = 5
    return torque(2.0 if (5.0 - energy) * theta_dot > 0 else -2.0) if abs(theta_dot) > 1e-3 else torque(2.0)


@pytest.mark.parametrize("seed", range(5))
def test_same_start_and_torques_give_pendulum_v1_observations_and_rewards(seed):
    ours = gym.make("Align/Pendulum-v0")
    reference = gym.make("Pendulum-v1")
    obs, _ = ours.reset(seed=seed)
    expected, _ = reference.reset(seed=seed)
    np.testing.assert_allclose(obs, expected, atol=1e-6)  # the same start draw, too
    base = ours.unwrapped
    reference.unwrapped.state = np.array([base.theta, base.theta_dot])
    for t, action in enumerate(random_torques(seed), start=1):
        obs, reward, terminated, truncated, _ = ours.step(action)
        expected, expected_reward, *_ = reference.step(action)
        np.testing.assert_allclose(obs, expected, atol=1e-5)
        assert reward == pytest.approx(float(expected_reward), abs=1e-5)
        assert not terminated and truncated == (t == 200)


def test_start_is_uniform_in_angle_and_slow():
    env = PendulumEnv()
    starts = [env.reset(seed=seed)[1]["state"] for seed in range(300)]
    thetas = np.array([s["theta"] for s in starts])
    speeds = np.array([s["theta_dot"] for s in starts])
    assert thetas.min() < -2.8 and thetas.max() > 2.8 and np.all(np.abs(speeds) <= 1.0)
    assert np.all([s["steps"] == 0 and s["torque"] == 0.0 and s["balanced_steps"] == 0 for s in starts])


@pytest.mark.parametrize("seed", range(3))
def test_reward_parts_are_the_angle_velocity_and_torque_costs_and_sum_to_the_reward(seed):
    env = gym.make("Align/Pendulum-v0")
    _, info = env.reset(seed=seed)
    for action in random_torques(seed, 50):
        before = info["state"]
        _, reward, _, _, info = env.step(action)
        parts = info["reward_parts"]
        assert set(parts) == {"angle", "velocity", "torque"}
        assert sum(parts.values()) == pytest.approx(reward, abs=1e-12)
        assert parts["angle"] == pytest.approx(-before["theta"] ** 2)  # the cost of the state stepped from
        assert parts["velocity"] == pytest.approx(-0.1 * before["theta_dot"] ** 2)
        assert parts["torque"] == pytest.approx(-0.001 * float(action[0]) ** 2)
        assert info["state"]["torque"] == pytest.approx(float(action[0]))


def test_state_wraps_theta_and_upright_is_its_cosine():
    env = PendulumEnv()
    _, info = env.reset(seed=0, options={"theta": 3 * math.pi - 0.1, "theta_dot": 0.0})
    assert info["state"]["theta"] == pytest.approx(math.pi - 0.1)
    assert info["state"]["upright"] == pytest.approx(math.cos(math.pi - 0.1))
    assert angle_from_upright(math.pi) == pytest.approx(-math.pi)  # [-pi, pi)


def test_a_swing_up_controller_succeeds_and_its_captions_tell_the_story():
    env = gym.make("Align/Pendulum-v0")
    _, info = env.reset(seed=0, options=BOTTOM)
    assert info["caption"] == "The pendulum hangs straight down, 180 degrees from upright, at rest."
    captions, total = [], 0.0
    while True:
        _, reward, terminated, truncated, info = env.step(swing_up_and_balance(info["state"]))
        captions.append(info["caption"])
        total += reward
        if terminated or truncated:
            break
    assert not terminated and truncated and env.unwrapped._steps == 200
    assert info["success"] and info["state"]["balanced_steps"] >= BALANCE_STEPS
    assert captions[-1].endswith(f"Time is up: the pendulum stayed upright for the last {BALANCE_STEPS} steps.")
    text = " ".join(captions)
    assert "swings up" in text and "swings through the bottom" in text and "balances upright" in text
    assert total > -800  # the uncontrolled pendulum, hanging still, pays about -1974


def test_no_success_when_it_falls_before_the_end_or_never_rises():
    env = PendulumEnv()
    env.reset(seed=0, options=BOTTOM)
    for _ in range(200):
        *_, truncated, info = env.step(torque(0.0))
    assert truncated and info["success"] is False and info["caption"].endswith("Time is up.")

    # upright at rest for 199 steps, then knocked over on the very last one: not balanced at the end
    env.reset(seed=0, options=TOP)
    for _ in range(199):
        _, _, _, truncated, info = env.step(torque(0.0))
    assert not truncated and "success" not in info and info["state"]["balanced_steps"] == 199
    env.unwrapped.theta = UPRIGHT_ANGLE + 0.1
    *_, truncated, info = env.step(torque(0.0))
    assert truncated and info["success"] is False and info["state"]["balanced_steps"] == 0


def test_success_needs_the_last_balance_steps_upright():
    env = PendulumEnv()
    env.reset(seed=0, options=BOTTOM)
    for _ in range(200 - BALANCE_STEPS):
        env.step(torque(0.0))
    env.unwrapped.theta, env.unwrapped.theta_dot = 0.0, 0.0  # placed upright with exactly 50 steps left
    for _ in range(BALANCE_STEPS):
        *_, truncated, info = env.step(torque(0.0))
    assert truncated and info["success"] is True and info["state"]["balanced_steps"] == BALANCE_STEPS

    short = PendulumEnv(max_steps=10)  # shorter than BALANCE_STEPS: all of its steps
    short.reset(seed=0, options=TOP)
    for _ in range(10):
        *_, truncated, info = short.step(torque(0.0))
    assert truncated and info["success"] is True


@pytest.mark.parametrize("action", [
    np.array([2.5], dtype=np.float32), np.array([-2.01], dtype=np.float32), np.array([np.nan], dtype=np.float32),
    np.zeros(2, dtype=np.float32), np.zeros((1, 1), dtype=np.float32), "push", None, 1.0,
])
def test_invalid_torques_are_refused_with_a_message(action):
    env = PendulumEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"invalid action .*shape \(1,\) in \[-2, 2\]"):
        env.step(action)


def test_a_list_or_float64_torque_in_range_is_accepted():
    env = PendulumEnv()
    env.reset(seed=0)
    env.step([1.5])
    env.step(np.array([-2.0]))
    assert env.state_dict()["torque"] == -2.0


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="render_mode"):
        PendulumEnv(render_mode="human")
    with pytest.raises(ValueError, match="max_steps"):
        PendulumEnv(max_steps=0)
    with pytest.raises(ValueError, match="reset options"):
        PendulumEnv().reset(seed=0, options={"angle": 0.0})


@pytest.mark.parametrize("seed", range(3))
def test_the_episodic_id_pays_nothing_until_step_200_then_the_dense_sum(seed):
    env = gym.make("Align/Pendulum-Episodic-v0")
    dense = gym.make("Align/Pendulum-v0")
    env.reset(seed=seed)
    dense.reset(seed=seed)
    paid, dense_rewards = [], []
    for action in random_torques(seed):
        _, reward, terminated, truncated, info = env.step(action)
        _, dense_reward, *_ = dense.step(action)
        assert info["dense_reward"] == dense_reward and info["env_reward"] == reward
        paid.append(reward)
        dense_rewards.append(info["dense_reward"])
        assert "reward_parts" in info and "caption" in info
    assert truncated and not terminated and isinstance(info["success"], bool)
    assert all(r == 0.0 for r in paid[:-1]) and paid[-1] == pytest.approx(sum(dense_rewards))
    assert paid[-1] < 0  # the costs of 200 steps


def test_reference_potential_is_one_upright_at_rest_and_rises_as_energy_is_pumped():
    phi = PendulumEnv.potentials["reference"]

    def state(theta, theta_dot=0.0):
        return {"theta": theta, "theta_dot": theta_dot, "upright": math.cos(theta)}

    assert phi(state(0.0)) == pytest.approx(1.0) and phi(state(-math.pi)) == pytest.approx(-1.0)
    assert phi(state(0.0)) > phi(state(math.pi / 4)) > phi(state(math.pi / 2)) > phi(state(-math.pi))
    # hanging low: more speed (towards the energy of resting upright, 60 = 6 g / l) is progress
    speeds = [0.0, 2.0, 4.0, 6.0, math.sqrt(60.0)]
    assert all(phi(state(-math.pi, a)) < phi(state(-math.pi, b)) for a, b in zip(speeds, speeds[1:]))
    assert phi(state(-math.pi, math.sqrt(60.0))) == pytest.approx(0.0)  # exactly the energy to reach the top
    # at the top, speed that would carry it over is not progress
    assert phi(state(0.0, 3.0)) < phi(state(0.0, 1.0)) < phi(state(0.0))
    grid = [phi(state(t, w)) for t in np.linspace(-math.pi, math.pi, 41) for w in np.linspace(-8, 8, 41)]
    assert -1.0 - 1e-12 <= min(grid) and max(grid) <= 1.0 + 1e-12


def test_distance_potential_is_minus_the_angle_from_upright_over_pi():
    phi = PendulumEnv.potentials["distance"]
    assert phi({"theta": 0.0}) == 0.0
    assert phi({"theta": math.pi / 2}) == pytest.approx(-0.5) == phi({"theta": -math.pi / 2})
    assert phi({"theta": -math.pi}) == pytest.approx(-1.0)


def test_potentials_read_only_the_state_in_info():
    env = gym.make("Align/Pendulum-v0")
    _, info = env.reset(seed=1)
    for name, phi in env.unwrapped.potentials.items():
        value = phi(dict(info["state"]))
        assert np.isfinite(value), name


def test_rgb_array_render_draws_the_rod_where_it_points():
    env = PendulumEnv(render_mode="rgb_array")
    env.reset(seed=0, options=TOP)
    up = env.render()
    assert up.shape == (80, 80, 3) and up.dtype == np.uint8
    env.reset(seed=0, options=BOTTOM)
    down = env.render()
    background = np.array([235, 235, 235])
    assert not np.all(up[10] == background) and np.all(up[70] == background)  # rod above the pivot
    assert np.all(down[10] == background) and not np.all(down[70] == background)
    assert PendulumEnv().render() is None
