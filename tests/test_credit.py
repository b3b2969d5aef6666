"""Return redistribution: RRD and IRCR, and their relabelling inside real SB3 agents."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.callbacks import BaseCallback

import align_gym  # noqa: F401
from align_gym.agents import EnvSession, RewardTermsCallback, install_credit, make_vec_env
from align_gym.agents.credit import RelabellingReplayBuffer, RolloutRelabelling
from align_gym.wrappers import shape_env
from align_gym.wrappers.credit import Episode, EpisodeStore, Redistribution, RewardRedistribution
from align_gym.wrappers.ircr import IRCR
from align_gym.wrappers.rrd import RRD

EPISODIC = "Align/KeyDoorSubgoals-Episodic-v0"
SHORT = {"size": 5, "max_steps": 20}  # episodes that end inside a rollout


def true_reward(x: np.ndarray) -> np.ndarray:
    """The synthetic task's hidden per-step reward: x0 plus half of x1 (x2 is a distractor)."""
    return x[..., 0] + 0.5 * x[..., 1]


def synthetic_episodes(rng, n):
    episodes = []
    for _ in range(n):
        x = rng.uniform(size=(int(rng.integers(5, 20)), 3)).astype(np.float32)
        episodes.append(Episode(x, float(true_reward(x).sum())))
    return episodes


@pytest.mark.parametrize("unbiased", [False, True])
def test_rrd_recovers_a_known_per_step_reward_from_returns_alone(unbiased):
    rng = np.random.default_rng(0)
    store = EpisodeStore()
    for episode in synthetic_episodes(rng, 1000):
        store.add(episode)
    method = RRD(features=lambda batch: None, feature_size=3, hidden=64, k=16, episodes=64, unbiased=unbiased, lr=1e-3)
    losses = [method.fit(store, rng)["loss"] for _ in range(800)]
    assert np.mean(losses[-50:]) < 0.5 * np.mean(losses[:10])  # down to the subsampling noise
    held_out = synthetic_episodes(np.random.default_rng(1), 50)
    steps = np.concatenate([e.features for e in held_out])
    r_hat = method.rewards(steps, np.full(len(steps), np.nan), store)
    assert np.corrcoef(r_hat, true_reward(steps))[0, 1] > 0.98  # it found which steps earn how much
    sums = np.array([method.rewards(e.features, np.full(e.length, np.nan), store).sum() for e in held_out])
    returns = np.array([e.ret for e in held_out])
    assert np.abs(sums - returns).mean() < 0.06 * returns.mean()  # redistributed sums match the returns


def test_ircr_guidance_is_the_min_max_normalised_step_return_of_finished_episodes():
    """A hand-made replay buffer: three finished episodes and one still running. Every sampled
    transition is paid (R/T - min)/(max - min) of its episode; the running one is never sampled."""
    space = gym.spaces.Box(-1e6, 1e6, (1,), np.float32)
    module = Redistribution(IRCR())
    buffer = RelabellingReplayBuffer(100, space, gym.spaces.Discrete(2), module=module, device="cpu")
    episodes = {0: [0.0, 0.0, 1.0, 3.0], 1: [0.0, 2.0], 2: [0.0, 0.0, 0.0], 3: [5.0, 5.0]}  # 3 never ends
    step_return = {e: sum(r) / len(r) for e, r in episodes.items() if e != 3}
    low, high = min(step_return.values()), max(step_return.values())
    for episode, rewards in episodes.items():
        for t, reward in enumerate(rewards):
            last = t == len(rewards) - 1 and episode != 3
            batch = transitions([float(episode)], [reward], [episode], [last])
            module.reward(batch)
            buffer.add(np.array([[episode]]), np.array([[episode]]), np.array([0]), np.array([reward]),
                       np.array([last]), [{}])
    samples = buffer.sample(200)
    sampled = samples.observations.numpy().ravel().astype(int)
    assert set(sampled) == {0, 1, 2}
    expected = [(step_return[e] - low) / (high - low) for e in sampled]
    # stored reward - env reward + guidance: the guidance alone, since nothing else was paid
    np.testing.assert_allclose(samples.rewards.numpy().ravel(), expected, rtol=1e-6)


def transitions(obs, rewards, ids, done):
    from align_gym.wrappers.core import TransitionBatch

    n = len(obs)
    return TransitionBatch(obs=obs, actions=[0] * n, next_obs=obs, captions=[""] * n, states=[{}] * n,
                           next_states=[{}] * n, env_rewards=rewards, terminated=done, truncated=[False] * n,
                           episode_ids=ids)


class RolloutSnapshot(BaseCallback):
    """Copies the rollout buffer's rewards and advantages as SB3 left them (before relabelling)."""

    def __init__(self):
        super().__init__(0)
        self.rewards = self.advantages = None

    def _on_step(self):
        return True

    def _on_rollout_end(self):
        self.rewards = self.model.rollout_buffer.rewards.copy()
        self.advantages = self.model.rollout_buffer.advantages.copy()
        self.last_values = self.locals["values"].numpy().ravel().copy()  # V(s_n_steps) as SB3 computed it
        self.last_dones = self.locals["dones"].copy()


def gae(rewards, values, starts, last_values, last_dones, gamma, lam):
    """GAE written out from its definition (Schulman et al. 2016), per env."""
    n_steps = len(rewards)
    advantages, running = np.zeros_like(rewards), 0.0
    for t in reversed(range(n_steps)):
        not_done = 1.0 - (last_dones if t == n_steps - 1 else starts[t + 1])
        next_value = last_values if t == n_steps - 1 else values[t + 1]
        delta = rewards[t] + gamma * next_value * not_done - values[t]
        running = delta + gamma * lam * not_done * running
        advantages[t] = running
    return advantages


@pytest.mark.parametrize("spec", ["pbrs(potential=reference)+rrd(episodes=16, fit_rounds=4)", "ircr"])
def test_ppo_rollout_relabelling_changes_exactly_the_task_rewards_and_recomputes_advantages(spec):
    gamma, lam = 0.99, 0.95
    venv = make_vec_env(EPISODIC, n_envs=2, shaping=spec, gamma=gamma, seed=0, env_kwargs=SHORT)
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, gamma=gamma, gae_lambda=lam, seed=0,
                device="cpu")
    relabelling = install_credit(model)
    assert [type(c) for c in relabelling] == [RolloutRelabelling]
    snapshot = RolloutSnapshot()
    model.learn(3 * 128, callback=[RewardTermsCallback(), snapshot, *relabelling])
    module, steps = relabelling[0].module, relabelling[0].steps
    buffer = model.rollout_buffer
    rewards, starts = buffer.rewards, buffer.episode_starts
    # PPO's training flattened these to (n_envs * n_steps, 1), env by env: back to (n_steps, n_envs)
    values, advantages, returns = (getattr(buffer, name).reshape(2, 64).T for name in ("values", "advantages", "returns"))
    ids = np.stack([s.episode_ids for s in steps])
    env_rewards = np.stack([s.env_rewards for s in steps])
    if isinstance(module.method, IRCR):
        # Each step's guidance from its episode's return, computed here from the task rewards alone.
        known = module.store.step_returns()
        low, high = known.min(), known.max()
        assert high > low and np.isfinite(module.step_returns(ids)).any() and np.isnan(module.step_returns(ids)).any()
        r_hat = (module.step_returns(ids) - low) / (high - low)
        r_hat[np.isnan(r_hat)] = ((known - low) / (high - low)).mean()  # episodes cut by the rollout's end
    else:
        features = torch.as_tensor(np.stack([s.features for s in steps]))
        with torch.no_grad():
            r_hat = module.method.net(features).squeeze(-1).double().numpy()
    np.testing.assert_allclose(rewards - snapshot.rewards, r_hat - env_rewards, atol=1e-5)
    assert not np.allclose(advantages, snapshot.advantages)
    expected = np.stack([gae(rewards[:, i], values[:, i], starts[:, i], snapshot.last_values[i],
                             snapshot.last_dones[i], gamma, lam) for i in range(2)], axis=1)
    np.testing.assert_allclose(advantages, expected, atol=1e-4)
    np.testing.assert_allclose(returns, advantages + values, atol=1e-5)


def test_replay_relabelling_with_dqn_pays_the_current_models_reward_in_each_minibatch():
    venv = make_vec_env(EPISODIC, n_envs=2, shaping="rrd(episodes=16)", gamma=0.99, seed=0, env_kwargs=SHORT)
    model = DQN("MlpPolicy", venv, learning_starts=200, buffer_size=5000, train_freq=4, batch_size=32, seed=0,
                device="cpu")
    assert install_credit(model) == []
    buffer = model.replay_buffer
    assert isinstance(buffer, RelabellingReplayBuffer)
    model.learn(3000)  # a few thousand steps of real training, one reward-model step per minibatch
    module = buffer.module
    assert module.method.steps == model._n_updates and len(module.store) > 100
    state = buffer.rng.bit_generator.state
    samples = buffer.sample(64)
    buffer.rng.bit_generator.state = state
    rows, envs = buffer._positions(64)  # the same draw
    np.testing.assert_array_equal(samples.observations.numpy(), buffer.observations[rows, envs])
    r_hat = module.method.rewards(buffer.features[rows, envs], np.full(64, np.nan), module.store)
    expected = buffer.rewards[rows, envs] + r_hat - buffer.env_rewards[rows, envs]
    np.testing.assert_allclose(samples.rewards.numpy().ravel(), expected, atol=1e-5)
    # the stored rewards are the task's own: episodic sums at episode ends, 0 elsewhere
    stored = buffer.rewards[: buffer.pos]
    np.testing.assert_allclose(stored, buffer.env_rewards[: buffer.pos], atol=1e-6)
    assert (stored[~buffer.dones[: buffer.pos].astype(bool)] == 0).all()


def test_online_redistribution_pays_r_hat_and_learns():
    env = gym.make(EPISODIC, **SHORT)
    method = RRD(env.observation_space, env.action_space, episodes=16, k=16)
    env = RewardRedistribution(env, method, update_every=240, fit_rounds=8)
    env.action_space.seed(0)
    _, info = env.reset(seed=0)
    for _ in range(2000):
        trained = method.steps
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert info["reward_terms"]["rrd"] == pytest.approx(reward - info["env_reward"], abs=1e-6)
        if method.steps == trained:  # (the model learns after paying on every 240th step)
            r_hat = method.rewards(env.driver.module.last_step.features, np.full(1, np.nan), None)[0]
            assert reward == pytest.approx(r_hat, abs=1e-6)
        if terminated or truncated:
            env.reset()
    assert method.steps == 8 * (2000 // 240)


def test_misuse_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="cannot run online"):
        Redistribution(IRCR(), online=True)
    env = shape_env(gym.make(EPISODIC), "rrd", gamma=0.99)
    env.reset(seed=0)
    with pytest.raises(RuntimeError, match="install_credit"):
        env.step(0)
    venv = make_vec_env(EPISODIC, n_envs=1, shaping="rrd+ircr", gamma=0.99)
    with pytest.raises(ValueError, match="only one can"):
        install_credit(PPO("MlpPolicy", venv, n_steps=16, batch_size=16, device="cpu"))
    venv = make_vec_env(EPISODIC, n_envs=1, shaping="ircr", gamma=0.99)
    with pytest.raises(ValueError, match="-Choice id"):
        shape_env(gym.make("Align/TextQuest-easy-v0"), "rrd(online=true)", gamma=0.99)
    with pytest.raises(ValueError, match="trainer session"):
        EnvSession("Align/TextQuest-easy-v0", "ircr")
    with pytest.raises(ValueError, match="optimize_memory_usage"):
        install_credit(DQN("MlpPolicy", venv, optimize_memory_usage=True, replay_buffer_kwargs={"handle_timeout_termination": False}, device="cpu"))
