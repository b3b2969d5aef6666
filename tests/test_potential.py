"""Potential-based shaping through all three adapters, on a foreign env (CartPole)."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env

from align_gym.wrappers import (
    PotentialShaping,
    PotentialShapingVecEnv,
    PotentialShapingVector,
    ShapingWrapper,
)

GAMMA = 0.97


def phi(obs):
    return 0.5 * float(obs[0]) - abs(float(obs[2])) + 0.1 * float(obs[1])


def short_cartpole():
    # A short time limit so that both terminations and truncations happen.
    return gym.make("CartPole-v1", max_episode_steps=12)


def expected_term(prev_obs, next_obs, terminated):
    return GAMMA * (0.0 if terminated else phi(next_obs)) - phi(prev_obs)


def test_pbrs_term_on_every_step_of_a_foreign_env():
    env = PotentialShaping(short_cartpole(), potential=phi, gamma=GAMMA)
    rng = np.random.default_rng(0)
    seen = {"terminated": 0, "truncated": 0}
    obs, _ = env.reset(seed=0)
    for _ in range(400):
        next_obs, reward, terminated, truncated, info = env.step(int(rng.integers(2)))
        assert reward - info["env_reward"] == pytest.approx(expected_term(obs, next_obs, terminated), abs=1e-9)
        assert info["reward_terms"]["pbrs"] == pytest.approx(reward - info["env_reward"], abs=1e-12)
        if terminated or truncated:
            seen["terminated" if terminated else "truncated"] += 1
            if truncated and not terminated:  # Phi(s') is kept on truncation, not zeroed
                assert info["reward_terms"]["pbrs"] != pytest.approx(-phi(obs), abs=1e-9)
            obs, _ = env.reset()
        else:
            obs = next_obs
    assert seen["terminated"] > 0 and seen["truncated"] > 0


def test_terms_add_up_to_the_returned_reward_and_summary_sums_them():
    env = PotentialShaping(short_cartpole(), potential=phi, gamma=GAMMA)
    env = PotentialShaping(env, potential=lambda o: float(o[1]) ** 2, gamma=GAMMA, scale=0.3, name="speed")
    env.reset(seed=1)
    sums = {"env": 0.0, "shaped": 0.0, "pbrs": 0.0, "speed": 0.0}
    rng = np.random.default_rng(1)
    while True:
        _, reward, terminated, truncated, info = env.step(int(rng.integers(2)))
        assert set(info["reward_terms"]) == {"pbrs", "speed"}
        assert reward == pytest.approx(info["env_reward"] + sum(info["reward_terms"].values()), abs=1e-12)
        sums["env"] += info["env_reward"]
        sums["shaped"] += reward
        for name in ("pbrs", "speed"):
            sums[name] += info["reward_terms"][name]
        if terminated or truncated:
            break
    summary = info["episode_summary"]
    assert summary["true_return"] == pytest.approx(sums["env"])
    assert summary["shaped_return"] == pytest.approx(sums["shaped"])
    assert summary["terms"] == pytest.approx({"pbrs": sums["pbrs"], "speed": sums["speed"]})
    assert summary["success"] is None  # CartPole reports none
    assert summary["length"] == info["episode_summary"]["length"] > 0


def test_unshaped_wrapper_reports_the_task_reward_unchanged():
    env = ShapingWrapper(short_cartpole(), module=None)
    env.reset(seed=0)
    _, reward, *_, info = env.step(0)
    assert reward == info["env_reward"] == 1.0 and info["reward_terms"] == {}


def test_two_layers_with_one_name_are_refused():
    env = PotentialShaping(PotentialShaping(short_cartpole(), phi, GAMMA), phi, GAMMA)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="both named 'pbrs'"):
        env.step(0)


@pytest.mark.parametrize("gamma", [None, 0.0, 1.5])
def test_gamma_must_be_a_discount(gamma):
    with pytest.raises(ValueError, match="gamma"):
        PotentialShaping(short_cartpole(), phi, gamma)


def test_named_potential_on_a_foreign_env_says_what_to_do():
    with pytest.raises(ValueError, match="pass a callable"):
        PotentialShaping(short_cartpole(), "reference", GAMMA)


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_vector_adapter_skips_autoreset_steps_and_zeroes_terminal_potential(mode):
    n = 3
    envs = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="sync", max_episode_steps=12,
                        vector_kwargs={"autoreset_mode": mode})
    envs = PotentialShapingVector(envs, potential=phi, gamma=GAMMA)
    obs, _ = envs.reset(seed=0)
    prev = obs.copy()
    needs_reset = np.zeros(n, dtype=bool)
    rng = np.random.default_rng(0)
    ended = {"terminated": 0, "truncated": 0, "summaries": 0}
    for _ in range(200):
        obs, rewards, terminated, truncated, infos = envs.step(rng.integers(2, size=n))
        terms = infos["reward_terms"]["pbrs"]
        for i in range(n):
            if needs_reset[i]:  # next-step autoreset: not a transition, no term
                assert terms[i] == 0.0 and rewards[i] == infos["env_reward"][i] == 0.0
                continue
            final = infos["final_obs"][i] if (mode == AutoresetMode.SAME_STEP and (terminated[i] or truncated[i])) else obs[i]
            assert terms[i] == pytest.approx(expected_term(prev[i], final, terminated[i]), abs=1e-9)
            assert rewards[i] == pytest.approx(infos["env_reward"][i] + terms[i], abs=1e-12)
            ended["terminated"] += int(terminated[i])
            ended["truncated"] += int(truncated[i] and not terminated[i])
        if "episode_summary" in infos:
            ended["summaries"] += int(infos["_episode_summary"].sum())
        prev = obs.copy()
        if mode == AutoresetMode.NEXT_STEP:
            needs_reset = terminated | truncated
    assert ended["terminated"] > 0 and ended["truncated"] > 0
    assert ended["summaries"] == ended["terminated"] + ended["truncated"]


def test_sb3_adapter_uses_the_terminal_observation():
    n = 3
    venv = sb3_make_vec_env(short_cartpole, n_envs=n, seed=0)
    venv = PotentialShapingVecEnv(venv, potential=phi, gamma=GAMMA)
    prev = venv.reset().copy()
    rng = np.random.default_rng(0)
    ended = {"terminated": 0, "truncated": 0}
    for _ in range(200):
        obs, rewards, dones, infos = venv.step(rng.integers(2, size=n))
        for i in range(n):
            truncated = infos[i].get("TimeLimit.truncated", False)
            terminated = dones[i] and not truncated
            final = infos[i]["terminal_observation"] if dones[i] else obs[i]
            assert infos[i]["reward_terms"]["pbrs"] == pytest.approx(expected_term(prev[i], final, terminated), abs=1e-6)
            assert rewards[i] == pytest.approx(infos[i]["env_reward"] + infos[i]["reward_terms"]["pbrs"], abs=1e-6)
            if dones[i]:
                ended["truncated" if truncated else "terminated"] += 1
                assert "episode_summary" in infos[i]
        prev = obs.copy()
    assert ended["terminated"] > 0 and ended["truncated"] > 0


class BatchedPhi:
    """phi with a batch form, counting calls of each."""

    def __init__(self):
        self.single_calls, self.batch_calls, self.values = 0, 0, 0

    def __call__(self, obs):
        self.single_calls += 1
        return phi(obs)

    def batch(self, items):
        self.batch_calls += 1
        self.values += len(items)
        return [phi(obs) for obs in items]


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_vector_adapter_calls_a_batch_potential_once_per_step_and_each_state_once(mode):
    n, steps = 4, 100
    envs = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="sync", max_episode_steps=12,
                        vector_kwargs={"autoreset_mode": mode})
    potential = BatchedPhi()
    envs = PotentialShapingVector(envs, potential=potential, gamma=GAMMA)
    obs, _ = envs.reset(seed=0)
    prev, rng = obs.copy(), np.random.default_rng(0)
    starting, fresh = np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
    transitions = first_steps = terminations = 0
    for _ in range(steps):
        obs, _, terminated, truncated, infos = envs.step(rng.integers(2, size=n))
        for i in np.flatnonzero(~starting):  # the terms are still exact
            final = infos["final_obs"][i] if mode == AutoresetMode.SAME_STEP and (terminated[i] or truncated[i]) else obs[i]
            assert infos["reward_terms"]["pbrs"][i] == pytest.approx(expected_term(prev[i], final, terminated[i]), abs=1e-9)
            transitions, first_steps, terminations = transitions + 1, first_steps + fresh[i], terminations + terminated[i]
            fresh[i] = terminated[i] or truncated[i]
        prev = obs.copy()
        starting = (terminated | truncated) if mode == AutoresetMode.NEXT_STEP else np.zeros(n, dtype=bool)
    assert potential.single_calls == 0 and potential.batch_calls <= steps
    # one value per state reached, nothing recomputed: Phi(s') of every non-terminal transition,
    # and Phi(s0) of every episode's first transition
    assert potential.values == transitions - terminations + first_steps


def test_single_env_and_sb3_adapters_evaluate_each_state_once():
    counted = BatchedPhi()
    env = PotentialShaping(short_cartpole(), potential=lambda obs: counted(obs), gamma=GAMMA)
    env.reset(seed=0)
    steps = first_steps = terminations = 0
    fresh = True
    for _ in range(100):
        _, _, terminated, truncated, _ = env.step(0)
        steps, first_steps, terminations = steps + 1, first_steps + fresh, terminations + int(terminated)
        fresh = terminated or truncated
        if fresh:
            env.reset()
    assert counted.single_calls == steps - terminations + first_steps
    counted = BatchedPhi()
    venv = PotentialShapingVecEnv(sb3_make_vec_env(short_cartpole, n_envs=3, seed=0), potential=counted, gamma=GAMMA)
    venv.reset()
    for _ in range(50):
        venv.step(np.zeros(3, dtype=int))
    # at most one call per vector step (none where every row is terminal and Phi(s) is known)
    assert 40 <= counted.batch_calls <= 50 and counted.single_calls == 0


def tipping(obs):
    """phi, but NaN once the pole leans past 0.1 rad: a potential that breaks only at run time."""
    return float("nan") if abs(float(obs[2])) > 0.1 else phi(obs)


def test_a_nonfinite_potential_raises_naming_the_potential_the_state_and_the_step():
    env = PotentialShaping(gym.make("CartPole-v1"), potential=tipping, gamma=GAMMA)
    assert not env.driver.learns  # the default setting keeps no transition log
    obs, _ = env.reset(seed=0)
    steps = 0
    with pytest.raises(ValueError) as caught:  # a NonFinitePotential
        for _ in range(30):
            obs, *_ = env.step(1)  # push right until the pole leans past 0.1 rad
            steps += 1
    error = caught.value
    # the state reached by the failing step, its step in the episode and in the shaping's life
    assert abs(float(error.state[2])) > 0.1 and abs(float(obs[2])) <= 0.1
    assert error.episode_step == steps + 1 and error.transition == steps + 1 and error.term == "pbrs"
    message = str(error)
    assert "'pbrs'" in message and "tipping" in message and "nan" in message
    assert f"step {steps + 1} of its episode" in message and "on_nonfinite='zero'" in message
    assert np.array2string(np.asarray(error.state), precision=4)[:20] in message


def test_the_sb3_adapter_raises_for_the_sub_env_whose_state_is_nonfinite():
    from align_gym.wrappers.potential import PotentialReward
    from align_gym.wrappers.sb3 import ShapingVecEnvWrapper

    n = 3
    venv = ShapingVecEnvWrapper(sb3_make_vec_env("CartPole-v1", n_envs=n, seed=0), PotentialReward(tipping, GAMMA))
    obs = venv.reset()
    steps = 0
    with pytest.raises(ValueError) as caught:
        for _ in range(30):
            obs, *_ = venv.step(np.ones(n, dtype=int))
            steps += 1
    error = caught.value
    assert abs(float(error.state[2])) > 0.1 and np.all(np.abs(obs[:, 2]) <= 0.1)
    assert error.episode_step == steps + 1 and steps * n < error.transition <= (steps + 1) * n


def test_on_nonfinite_zero_pays_a_potential_of_zero_there_counts_it_and_reports_the_count():
    def guarded(obs):  # the potential the agent is then shaped with: still a function of the state
        value = tipping(obs)
        return 0.0 if value != value else value

    env = PotentialShaping(gym.make("CartPole-v1"), potential=tipping, gamma=GAMMA, on_nonfinite="zero")
    assert env.driver.learns  # its update reports the count
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    nonfinite, fresh = 0, True
    with pytest.warns(RuntimeWarning, match="returned nan .* paid as 0"):
        for _ in range(300):
            next_obs, reward, terminated, truncated, info = env.step(int(rng.integers(2)))
            # each state is evaluated once: Phi(s0) at an episode's first step, then Phi(s')
            nonfinite += (fresh and tipping(obs) != tipping(obs)) + (not terminated and tipping(next_obs) != tipping(next_obs))
            assert np.isfinite(reward)
            assert info["reward_terms"]["pbrs"] == pytest.approx(expected_term_of(guarded, obs, next_obs, terminated), abs=1e-9)
            fresh = terminated or truncated
            obs = env.reset()[0] if fresh else next_obs
    assert nonfinite > 0 and env.module.nonfinite == nonfinite
    assert env.driver.update() == {"nonfinite": float(nonfinite)}
    with pytest.raises(ValueError, match="on_nonfinite must be 'raise' or 'zero'"):
        PotentialShaping(gym.make("CartPole-v1"), potential=phi, gamma=GAMMA, on_nonfinite="skip")


def expected_term_of(potential, prev_obs, next_obs, terminated):
    return GAMMA * (0.0 if terminated else potential(next_obs)) - potential(prev_obs)
