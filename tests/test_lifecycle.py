"""Stacks of shaping layers on every adapter, and the reward-module lifecycle they drive:
updates on the documented schedule with exactly the transitions that happened, episode starts,
module state saved with an SB3 model and restored."""

import csv
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from recording_module import CountBonus
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.callbacks import CheckpointCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor, VecNormalize

from align_gym.agents import (
    RewardTermsCallback,
    ShapingCheckpointCallback,
    load_checkpoint,
    load_reward_modules,
    make_vec_env,
    save_checkpoint,
)
from align_gym.wrappers import (
    PotentialShaping,
    PotentialShapingVector,
    ShapingSpec,
    register_shaping,
    shape_env,
    shape_vec_env,
    shape_vector_env,
    shaping_entries,
    shaping_layers,
)

GAMMA = 0.97

if "count_bonus" not in {entry.name for entry in shaping_entries()}:
    register_shaping("count_bonus", lambda env, gamma, **kwargs: CountBonus(**kwargs), invariant=False,
                     summary="a learning test module (tests/recording_module.py)")


def phi(obs):
    return 0.5 * float(obs[0]) - abs(float(obs[2])) + 0.1 * float(obs[1])


def speed(obs):
    return float(obs[1]) ** 2


# pbrs, a learning module, and pbrs again under another name
STACKS = {
    2: [ShapingSpec("pbrs", {"potential": phi}), ShapingSpec("count_bonus", {"update_every": 40})],
    3: [ShapingSpec("pbrs", {"potential": phi}), ShapingSpec("count_bonus", {"update_every": 40}),
        ShapingSpec("pbrs", {"potential": speed, "scale": 0.5, "name": "speed"})],
}
NAMES = {2: {"pbrs", "bonus"}, 3: {"pbrs", "bonus", "speed"}}


def short_cartpole():
    # A short time limit so that both terminations and truncations happen.
    return gym.make("CartPole-v1", max_episode_steps=12)


class Recorder(gym.Wrapper):
    """Keeps every transition a sub-env really made: (obs, action, next obs, terminated, truncated)."""

    def __init__(self, env, log):
        super().__init__(env)
        self.log, self.last = log, None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.last = obs
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.log.append((self.last, int(action), obs, bool(terminated), bool(truncated)))
        self.last = obs
        return obs, reward, terminated, truncated, info


def _key(obs, action, next_obs, terminated, truncated):
    return (np.asarray(obs).tobytes(), int(action), np.asarray(next_obs).tobytes(), bool(terminated), bool(truncated))


def recorded_episodes(logs, sb3=False):
    """Each sub-env's transitions cut into episodes (the last one may be unfinished). SB3 reports
    a step that both terminates and truncates as terminated only (``TimeLimit.truncated`` is
    ``truncated and not terminated``)."""
    episodes = []
    for log in logs:
        current = []
        for obs, action, next_obs, terminated, truncated in log:
            current.append(_key(obs, action, next_obs, terminated, truncated and not (sb3 and terminated)))
            if terminated or truncated:
                episodes.append(tuple(current))
                current = []
        if current:
            episodes.append(tuple(current))
    return sorted(episodes)


def module_episodes(module):
    """The transitions the module's updates received, grouped by episode id, in order."""
    by_id = {}
    for batch in module.updates:
        for i in range(len(batch)):
            by_id.setdefault(int(batch.episode_ids[i]), []).append(_key(
                batch.obs[i], batch.actions[i], batch.next_obs[i], batch.terminated[i], batch.truncated[i]))
    for transitions in by_id.values():  # an episode id never outlives its episode
        assert all(t[3] is False and t[4] is False for t in transitions[:-1])
    return sorted(tuple(t) for t in by_id.values())


def the_module(env):
    return next(layer.module for layer in shaping_layers(env) if isinstance(layer.module, CountBonus))


class EpisodeSums:
    """Per-step sums of each sub-env's episode, to compare with the adapters' summaries."""

    def __init__(self, n):
        self.sums = [self._fresh() for _ in range(n)]
        self.checked = 0

    @staticmethod
    def _fresh():
        return {"true_return": 0.0, "shaped_return": 0.0, "terms": {}, "length": 0}

    def add(self, i, env_reward, reward, terms):
        current = self.sums[i]
        current["true_return"] += env_reward
        current["shaped_return"] += reward
        current["length"] += 1
        for name, value in terms.items():
            current["terms"][name] = current["terms"].get(name, 0.0) + value

    def finish(self, i, summary, tolerance):
        current = self.sums[i]
        assert summary["length"] == current["length"]
        assert summary["true_return"] == pytest.approx(current["true_return"], abs=tolerance)
        assert summary["shaped_return"] == pytest.approx(current["shaped_return"], abs=tolerance)
        assert summary["terms"] == pytest.approx(current["terms"], abs=tolerance)
        self.sums[i] = self._fresh()
        self.checked += 1


@pytest.mark.parametrize("depth", [2, 3])
def test_a_stack_keeps_the_contract_on_the_gymnasium_adapter(depth):
    env = shape_env(short_cartpole(), STACKS[depth], gamma=GAMMA)
    assert len(shaping_layers(env)) == depth
    sums, rng = EpisodeSums(1), np.random.default_rng(depth)
    env.reset(seed=0)
    for _ in range(300):
        _, reward, terminated, truncated, info = env.step(int(rng.integers(2)))
        assert set(info["reward_terms"]) == NAMES[depth]
        assert reward == pytest.approx(info["env_reward"] + sum(info["reward_terms"].values()), abs=1e-12)
        sums.add(0, info["env_reward"], reward, info["reward_terms"])
        if terminated or truncated:
            sums.finish(0, info["episode_summary"], 1e-9)
            env.reset()
    assert sums.checked > 10


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
@pytest.mark.parametrize("depth", [2, 3])
def test_a_stack_keeps_the_contract_on_the_vector_adapter(depth, mode):
    n = 3
    envs = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="sync", max_episode_steps=12,
                        vector_kwargs={"autoreset_mode": mode})
    envs = shape_vector_env(envs, STACKS[depth], gamma=GAMMA)
    sums, rng = EpisodeSums(n), np.random.default_rng(depth)
    envs.reset(seed=0)
    starting = np.zeros(n, dtype=bool)
    for _ in range(150):
        _, rewards, terminated, truncated, infos = envs.step(rng.integers(2, size=n))
        assert set(infos["reward_terms"]) == NAMES[depth]
        total = infos["env_reward"] + sum(infos["reward_terms"].values())
        np.testing.assert_allclose(rewards, total, atol=1e-12)
        for i in np.flatnonzero(~starting):
            sums.add(i, infos["env_reward"][i], rewards[i], {k: v[i] for k, v in infos["reward_terms"].items()})
            if terminated[i] or truncated[i]:
                summary = infos["episode_summary"]
                sums.finish(i, {"length": summary["length"][i], "true_return": summary["true_return"][i],
                                "shaped_return": summary["shaped_return"][i],
                                "terms": {k: v[i] for k, v in summary["terms"].items()}}, 1e-9)
        starting = (terminated | truncated) if mode == AutoresetMode.NEXT_STEP else starting
    assert sums.checked > 20


@pytest.mark.parametrize("depth", [2, 3])
def test_a_stack_keeps_the_contract_on_sb3_over_vecmonitor_and_inside_vecnormalize(depth):
    n = 3
    venv = VecMonitor(DummyVecEnv([short_cartpole] * n))
    venv = VecNormalize(shape_vec_env(venv, STACKS[depth], gamma=GAMMA), gamma=GAMMA)
    sums, rng = EpisodeSums(n), np.random.default_rng(depth)
    venv.reset()
    for _ in range(150):
        _, normalized, dones, infos = venv.step(rng.integers(2, size=n))
        original = venv.get_original_reward()  # the shaped reward, before VecNormalize
        assert not np.allclose(normalized, original)
        for i, info in enumerate(infos):
            assert set(info["reward_terms"]) == NAMES[depth]
            assert original[i] == pytest.approx(info["env_reward"] + sum(info["reward_terms"].values()), abs=1e-5)
            sums.add(i, info["env_reward"], original[i], info["reward_terms"])
            if dones[i]:
                assert "episode" in info  # VecMonitor below still reports
                sums.finish(i, info["episode_summary"], 1e-4)
    assert sums.checked > 20


@pytest.mark.filterwarnings("ignore:The environment is already wrapped with a `Monitor`")
def test_sb3_layers_stack_over_wrappers_that_keep_no_reset_infos():
    # Each layer reads the reset info (the new episode's state) from the base VecEnv.
    venv = make_vec_env("Align/KeyDoor-5x5-v0", n_envs=2, shaping="pbrs(potential=reference)", gamma=0.99)
    venv = shape_vec_env(VecMonitor(venv), "pbrs(potential=distance, name=d)", gamma=0.99)
    venv = shape_vec_env(venv, "pbrs(potential=reference, name=r2, scale=2)", gamma=0.99)
    venv.reset()
    assert [info["state"]["size"] for info in venv.reset_infos] == [5, 5]
    rng = np.random.default_rng(0)
    ended = 0
    for _ in range(300):
        _, rewards, dones, infos = venv.step(rng.integers(6, size=2))
        for i, info in enumerate(infos):
            assert rewards[i] == pytest.approx(info["env_reward"] + sum(info["reward_terms"].values()), abs=1e-5)
            # both pbrs layers see the same states: the scaled copy's term is exactly twice the first
            assert info["reward_terms"]["r2"] == pytest.approx(2 * info["reward_terms"]["pbrs"], abs=1e-6)
        ended += int(dones.sum())
    assert ended > 0


def test_a_vector_adapter_over_shaped_sub_envs_adds_no_mask_terms():
    envs = gym.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync", max_episode_steps=12,
                        wrappers=[lambda env: PotentialShaping(env, phi, GAMMA, name="inner")])
    envs = PotentialShapingVector(envs, speed, GAMMA, name="outer")
    envs.reset(seed=0)
    summaries = 0
    for _ in range(60):
        _, rewards, _, _, infos = envs.step(envs.action_space.sample())
        assert set(infos["reward_terms"]) == {"inner", "outer"}
        np.testing.assert_allclose(rewards, infos["env_reward"] + sum(infos["reward_terms"].values()), atol=1e-12)
        if "episode_summary" in infos:
            assert set(infos["episode_summary"]["terms"]) == {"inner", "outer"}
            summaries += 1
    assert summaries > 0


def test_gymnasium_adapter_updates_every_n_transitions_with_exactly_those_transitions():
    log = []
    env = shape_env(Recorder(short_cartpole(), log), [ShapingSpec("count_bonus", {"update_every": 50})], gamma=GAMMA)
    module, driver = the_module(env), shaping_layers(env)[0].driver
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    resets = 1
    for _ in range(237):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(2)))
        if terminated or truncated:
            env.reset()
            resets += 1
    assert [len(batch) for batch in module.updates] == [50, 50, 50, 50]
    assert driver.last_stats["transitions"] == 50.0
    driver.update()  # the 37 logged since
    assert len(module.updates[-1]) == 37
    assert module_episodes(module) == recorded_episodes([log])
    assert sum(len(s.episode_ids) for s in module.starts) == resets
    assert len({int(s.episode_ids[0]) for s in module.starts}) == resets


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_vector_adapter_updates_with_real_transitions_and_true_final_observations(mode):
    n = 3
    logs = [[] for _ in range(n)]
    envs = SyncVectorEnv([lambda i=i: Recorder(short_cartpole(), logs[i]) for i in range(n)], autoreset_mode=mode)
    envs = shape_vector_env(envs, [ShapingSpec("count_bonus", {"update_every": 50})], gamma=GAMMA)
    module, driver = the_module(envs), shaping_layers(envs)[0].driver
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(120):
        envs.step(rng.integers(2, size=n))
    assert len(module.updates) >= 5
    assert all(50 <= len(batch) < 50 + n for batch in module.updates)
    driver.update()
    assert module_episodes(module) == recorded_episodes(logs)  # no fake autoreset step, true final obs
    started = sum(len(s.episode_ids) for s in module.starts)
    # every episode's start was signalled (up to n may have started without a transition yet)
    assert len(recorded_episodes(logs)) <= started <= len(recorded_episodes(logs)) + n


def test_ppo_updates_modules_at_each_rollout_end_and_logs_their_stats(tmp_path):
    n_envs, n_steps, rollouts = 2, 16, 3
    logs = [[] for _ in range(n_envs)]
    venv = DummyVecEnv([lambda i=i: Recorder(short_cartpole(), logs[i]) for i in range(n_envs)])
    venv = shape_vec_env(venv, [ShapingSpec("pbrs", {"potential": phi}), ShapingSpec("count_bonus", {"update_every": 5})],
                         gamma=GAMMA)
    module = the_module(venv)
    model = PPO("MlpPolicy", venv, n_steps=n_steps, batch_size=32, gamma=GAMMA, seed=0, device="cpu")
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(n_envs * n_steps * rollouts, callback=RewardTermsCallback())
    # one update per rollout, with that rollout's transitions, not every update_every=5
    assert [len(batch) for batch in module.updates] == [n_envs * n_steps] * rollouts
    assert module.rewarded_after == [k for k in range(rollouts) for _ in range(n_steps)]  # rollout k is scored after k updates
    assert module_episodes(module) == recorded_episodes(logs, sb3=True)
    with open(tmp_path / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[-1]["align/bonus/transitions"]) == n_envs * n_steps
    assert float(rows[-1]["align/bonus/states"]) == len(module.counts) > 0


def test_off_policy_agents_leave_the_schedule_to_the_module():
    venv = shape_vec_env(DummyVecEnv([short_cartpole] * 2), [ShapingSpec("count_bonus", {"update_every": 40})], gamma=GAMMA)
    model = DQN("MlpPolicy", venv, learning_starts=50, gamma=GAMMA, seed=0, device="cpu")
    model.learn(200, callback=RewardTermsCallback())
    module = the_module(venv)
    assert len(module.updates) == 5 and all(len(batch) == 40 for batch in module.updates)


def test_module_state_is_saved_beside_the_checkpoint_and_restored_to_the_same_rewards(tmp_path):
    spec = "pbrs(potential=reference)+count_bonus(update_every=64, scale=0.5)"

    def fresh_env():
        return make_vec_env("Align/KeyDoor-5x5-v0", n_envs=2, shaping=spec, gamma=0.99, seed=7)

    venv = fresh_env()
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=64, gamma=0.99, seed=0, device="cpu")
    checkpoints = ShapingCheckpointCallback(save_freq=32, save_path=str(tmp_path / "ckpt"))
    model.learn(128, callback=[RewardTermsCallback(), checkpoints])
    trained = the_module(venv)
    assert len(trained.counts) > 0
    save_checkpoint(model, tmp_path / "model")

    restored_env = fresh_env()
    restored = load_checkpoint(PPO, tmp_path / "model", restored_env, device="cpu")
    assert restored.num_timesteps == model.num_timesteps
    assert the_module(restored_env).counts == trained.counts

    # the same rewards as the trained module, on the transitions it learned from (and a fresh
    # module, the control, pays others)
    visited = SimpleNamespace(next_obs=[o for batch in trained.updates for o in batch.next_obs])
    expected = np.asarray(trained.reward(visited))
    np.testing.assert_array_equal(the_module(restored_env).reward(visited), expected)
    assert not np.allclose(the_module(fresh_env()).reward(visited), expected)
    # the periodic checkpoints carry the modules as they were then (after the first rollout's update)
    saved = sorted((tmp_path / "ckpt").glob("*reward_modules_*_steps.pkl"))
    assert len(saved) == 2 and len(list((tmp_path / "ckpt").glob("rl_model_*_steps.zip"))) == 2
    from_callback = fresh_env()
    load_reward_modules(from_callback, tmp_path / "ckpt" / "rl_model_reward_modules_128_steps.pkl")
    assert sum(the_module(from_callback).counts.values()) == 64


def test_plain_checkpoint_callback_keeps_working_without_modules(tmp_path):
    venv = make_vec_env("Align/KeyDoor-5x5-v0", n_envs=2, shaping="pbrs(potential=reference)", gamma=0.99)
    PPO("MlpPolicy", venv, n_steps=32, batch_size=64, device="cpu").learn(
        64, callback=CheckpointCallback(save_freq=32, save_path=str(tmp_path)))
    assert list(tmp_path.glob("*.zip"))


class DictObservation(gym.ObservationWrapper):
    def __init__(self, env):
        super().__init__(env)
        self.observation_space = gym.spaces.Dict({"x": env.observation_space})

    def observation(self, observation):
        return {"x": observation}


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_vector_pbrs_on_dict_observations(mode):
    envs = SyncVectorEnv([lambda: DictObservation(short_cartpole())] * 2, autoreset_mode=mode)
    envs = PotentialShapingVector(envs, lambda obs: phi(obs["x"]), GAMMA)
    obs, _ = envs.reset(seed=0)
    previous = [phi(x) for x in obs["x"]]
    starting = np.zeros(2, dtype=bool)
    for _ in range(40):
        obs, rewards, terminated, truncated, infos = envs.step(envs.action_space.sample())
        for i in np.flatnonzero(~starting):
            final = infos["final_obs"][i]["x"] if mode == AutoresetMode.SAME_STEP and (terminated[i] or truncated[i]) else obs["x"][i]
            expected = GAMMA * (0.0 if terminated[i] else phi(final)) - previous[i]
            assert infos["reward_terms"]["pbrs"][i] == pytest.approx(expected, abs=1e-9)
        previous = [phi(x) for x in obs["x"]]
        starting = (terminated | truncated) if mode == AutoresetMode.NEXT_STEP else starting
