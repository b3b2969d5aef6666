"""Return redistribution: RRD and IRCR, and their relabelling inside real SB3 agents."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO, RecurrentPPO
from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecNormalize

import align_gym  # noqa: F401
from align_gym.agents import EnvSession, RewardTermsCallback, install_credit, make_vec_env
from align_gym.agents.credit import RelabellingReplayBuffer, ReplayTermReport, RolloutRelabelling
from align_gym.cell import Cell, run_cell
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


class RolloutRecorder(BaseCallback):
    """Records, for each rollout of an on-policy agent: the rewards SB3 put into its buffer (its
    own, before any relabelling), V(s_T) of the observation the rollout ended on, and the buffer as
    ``train()`` then reads it. Under VecNormalize (``normaliser``) also each step's raw reward,
    normalised reward and the normaliser's scale. And every episode summary, with its episode id
    (with ``pending``, checking that each says its term is pending when it arrives)."""

    def __init__(self, credit, normaliser=None, pending=False):
        super().__init__(0)
        self.credit, self.normaliser, self.pending = credit, normaliser, pending
        self.rollouts, self.summaries = [], []

    def _init_callback(self):
        train = self.model.train

        def train_and_record():
            buffer = self.model.rollout_buffer  # as train() finds it: not yet flattened
            self.rollouts[-1].update({name: getattr(buffer, name).copy() for name in
                                      ("rewards", "advantages", "returns", "values", "episode_starts")})
            self.rollouts[-1]["r_hat"] = r_hat_of(self.credit.module, self.rollouts[-1])  # by the model it was relabelled by
            train()

        self.model.train = train_and_record

    def _on_rollout_start(self):
        self.current = {"sb3_rewards": [], "raw": [], "normalised": [], "scale": []}

    def _on_step(self):
        # SB3 adds its truncation bootstrap to this very array after the callbacks: keep the array
        self.current["sb3_rewards"].append(self.locals["rewards"])
        if self.normaliser is not None:
            self.current["raw"].append(self.normaliser.get_original_reward())
            self.current["normalised"].append(self.locals["rewards"].copy())
            self.current["scale"].append(np.sqrt(self.normaliser.ret_rms.var + self.normaliser.epsilon))
        ids = self.credit.module.last_step.episode_ids
        for i, info in enumerate(self.locals["infos"]):
            if "episode_summary" in info:
                summary = info["episode_summary"]
                if self.pending:  # its term is not known until the rollout is relabelled, and it says so
                    assert summary.get("pending_terms") == [self.credit.module.name]
                self.summaries.append((int(ids[i]), summary))
        return True

    def _on_rollout_end(self):
        model = self.model
        obs = obs_as_tensor(model._last_obs, model.device)
        with torch.no_grad():
            if isinstance(model, RecurrentPPO):
                starts = torch.as_tensor(model._last_episode_starts, dtype=torch.float32)
                last_values = model.policy.predict_values(obs, model._last_lstm_states.vf, starts)
            else:
                last_values = model.policy.predict_values(obs)
        steps = self.credit.steps
        self.rollouts.append({**{k: np.stack(v) for k, v in self.current.items() if v},
                              "last_values": last_values.numpy().ravel(),
                              "last_dones": np.asarray(model._last_episode_starts, dtype=np.float32),
                              "ids": np.stack([s.episode_ids for s in steps]),
                              "env_rewards": np.stack([s.env_rewards for s in steps]),
                              "features": np.stack([s.features for s in steps])})


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


def assert_advantages_are_gae(rollout, gamma, lam):
    """The advantages train() saw are GAE of the rewards it saw, bootstrapped from V(s_T)."""
    expected = gae(rollout["rewards"], rollout["values"], rollout["episode_starts"], rollout["last_values"],
                   rollout["last_dones"], gamma, lam)
    np.testing.assert_allclose(rollout["advantages"], expected, atol=1e-4)
    np.testing.assert_allclose(rollout["returns"], rollout["advantages"] + rollout["values"], atol=1e-5)


def r_hat_of(module, rollout):
    """The redistributed reward of each step of the rollout, from the method's definition."""
    if isinstance(module.method, IRCR):
        # Each step's guidance from its episode's return, computed here from the task rewards alone.
        known = module.store.step_returns()
        if len(known) == 0 or known.min() == known.max():
            return np.zeros(rollout["ids"].shape)  # no episode better than another yet
        low, high = known.min(), known.max()
        r_hat = (module.step_returns(rollout["ids"]) - low) / (high - low)
        r_hat[np.isnan(r_hat)] = ((known - low) / (high - low)).mean()  # episodes cut by the rollout's end
        return r_hat
    with torch.no_grad():
        return module.method.net(torch.as_tensor(rollout["features"])).squeeze(-1).double().numpy()


AGENTS = {"ppo": (PPO, "MlpPolicy", {"batch_size": 64, "n_epochs": 1}), "a2c": (A2C, "MlpPolicy", {}),
          "maskable_ppo": (MaskablePPO, "MlpPolicy", {"batch_size": 64, "n_epochs": 1}),
          "recurrent_ppo": (RecurrentPPO, "MlpLstmPolicy", {"batch_size": 64, "n_epochs": 1,
                                                            "policy_kwargs": {"lstm_hidden_size": 16}})}


def on_policy_agent(agent, venv, gamma, lam, n_steps=32):
    algorithm, policy, kwargs = AGENTS[agent]
    return algorithm(policy, venv, n_steps=n_steps, gamma=gamma, gae_lambda=lam, seed=0, device="cpu", **kwargs)


@pytest.mark.parametrize("agent, spec", [("ppo", "pbrs(potential=reference)+rrd(episodes=16, fit_rounds=4)"),
                                         ("ppo", "ircr"), ("a2c", "rrd(episodes=16, fit_rounds=4)"),
                                         ("maskable_ppo", "rrd(episodes=16, fit_rounds=4)"),
                                         ("recurrent_ppo", "rrd(episodes=16, fit_rounds=4)")])
def test_relabelled_advantages_are_a_gae_of_the_relabelled_rewards_bootstrapped_from_v_of_the_last_observation(agent, spec):
    """For every on-policy agent, the rollout train() reads holds SB3's rewards with exactly the
    task reward replaced by r_hat, and advantages that are GAE of those rewards with V(s_T) of the
    observation the rollout ended on (its LSTM state included, for RecurrentPPO): not V(s_{T-1})."""
    gamma, lam = 0.99, 0.95
    venv = make_vec_env(EPISODIC, n_envs=2, shaping=spec, gamma=gamma, seed=0, env_kwargs=SHORT)
    model = on_policy_agent(agent, venv, gamma, lam)
    credit = install_credit(model)
    assert [type(c) for c in credit] == [RolloutRelabelling]
    recorder = RolloutRecorder(credit[0])
    model.learn(3 * 64, callback=[RewardTermsCallback(), recorder, *credit])
    module = credit[0].module
    assert len(recorder.rollouts) == 3 and len(module.store) > 0
    assert any(np.abs(rollout["r_hat"] - rollout["env_rewards"]).max() > 1e-3 for rollout in recorder.rollouts)
    if isinstance(module.method, IRCR):  # steps of finished episodes, and of episodes cut by the rollout's end
        known = np.concatenate([module.step_returns(rollout["ids"]).ravel() for rollout in recorder.rollouts])
        assert np.isfinite(known).any() and np.isnan(known).any()
    for rollout in recorder.rollouts:
        np.testing.assert_allclose(rollout["rewards"] - rollout["sb3_rewards"], rollout["r_hat"] - rollout["env_rewards"],
                                   atol=1e-5)
        assert_advantages_are_gae(rollout, gamma, lam)


def test_relabelling_under_vecnormalize_is_in_the_buffers_normalised_units():
    """VecNormalize(norm_reward=True) on top: the buffer holds clip(r / sigma_t), sigma_t the running
    std of returns at step t. The relabelled step is clip((r - env_reward + r_hat) / sigma_t), with
    SB3's truncation bootstrap kept, and the advantages are recomputed from it."""
    gamma, lam = 0.99, 0.95
    venv = VecNormalize(make_vec_env(EPISODIC, n_envs=2, shaping="rrd(episodes=16, fit_rounds=4)", gamma=gamma, seed=0,
                                     env_kwargs=SHORT), gamma=gamma)
    model = on_policy_agent("ppo", venv, gamma, lam)
    credit = install_credit(model)
    recorder = RolloutRecorder(credit[0], normaliser=venv)
    model.learn(3 * 64, callback=[recorder, *credit])
    for rollout in recorder.rollouts:
        delta = rollout["r_hat"] - rollout["env_rewards"]
        bootstrap = rollout["sb3_rewards"] - rollout["normalised"]  # SB3's gamma * V(final obs) at truncations
        assert np.abs(bootstrap).max() > 0  # the short episodes are truncated inside rollouts
        expected = np.clip((rollout["raw"] + delta) / rollout["scale"][:, None], -venv.clip_reward, venv.clip_reward) + bootstrap
        np.testing.assert_allclose(rollout["rewards"], expected, rtol=1e-5, atol=1e-5)
        # raw units added to normalised rewards would be far off: the scale is far from 1 here
        assert np.abs(rollout["rewards"] - (rollout["sb3_rewards"] + delta)).max() > 0.1
        assert_advantages_are_gae(rollout, gamma, lam)


def test_episode_summaries_report_each_episodes_relabelled_term_on_policy():
    """An in-agent redistribution pays 0 as the env steps; its episode's term in the summary (and in
    the shaped return) becomes the sum of r_hat - env_reward the agent trained on, over the
    rollouts the episode spanned, once the rollout holding its end is relabelled."""
    gamma = 0.99
    venv = make_vec_env(EPISODIC, n_envs=2, shaping="pbrs(potential=reference)+rrd(episodes=16, fit_rounds=4)",
                        gamma=gamma, seed=0, env_kwargs=SHORT)
    model = on_policy_agent("ppo", venv, gamma, 0.95)
    credit = install_credit(model)
    recorder, terms = RolloutRecorder(credit[0], pending=True), RewardTermsCallback()
    model.learn(4 * 64, callback=[*credit, terms, recorder])  # credit first: it marks the pending terms
    trained_on: dict[int, float] = {}
    for rollout in recorder.rollouts:
        for episode, delta in zip(rollout["ids"].ravel(), (rollout["rewards"] - rollout["sb3_rewards"]).ravel()):
            trained_on[int(episode)] = trained_on.get(int(episode), 0.0) + float(delta)
    assert len(recorder.summaries) >= 8 and [s for _, s in recorder.summaries] == list(terms.episodes)
    for episode, summary in recorder.summaries:
        assert "pending_terms" not in summary
        assert summary["terms"]["rrd"] == pytest.approx(trained_on[episode], abs=1e-4)
        assert abs(summary["terms"]["rrd"]) > 1e-3
        assert summary["shaped_return"] == pytest.approx(summary["true_return"] + sum(summary["terms"].values()), abs=1e-4)


def test_episode_summaries_report_each_episodes_relabelled_term_off_policy():
    """Off-policy, each minibatch is relabelled by the model of its time; an episode's summary
    reports the relabelling of the model at the episode's end: here IRCR's guidance, T times the
    min-max normalised R/T of the episode, less its return."""
    venv = make_vec_env(EPISODIC, n_envs=2, shaping="ircr", gamma=0.99, seed=0, env_kwargs=SHORT)
    model = DQN("MlpPolicy", venv, learning_starts=100, buffer_size=2000, train_freq=4, batch_size=32, seed=0, device="cpu")
    credit = install_credit(model)
    expected = {}

    class AtEpisodeEnd(BaseCallback):
        def _on_step(self):
            module = credit[0].module
            for info in self.locals["infos"]:
                if "episode_summary" in info:
                    known = module.store.step_returns()
                    low, high = known.min(), known.max()
                    ret, length = info["episode_summary"]["true_return"], info["episode_summary"]["length"]
                    guidance = (ret / length - low) / (high - low) if high > low else 0.0
                    expected[id(info["episode_summary"])] = length * guidance - ret
            return True

    terms = RewardTermsCallback()
    model.learn(600, callback=[*credit, terms, AtEpisodeEnd()])
    assert len(terms.episodes) >= 20
    assert any(abs(e["terms"]["ircr"]) > 1e-3 for e in terms.episodes)
    for summary in terms.episodes:
        assert "pending_terms" not in summary
        assert summary["terms"]["ircr"] == pytest.approx(expected[id(summary)], abs=1e-6)
        assert summary["shaped_return"] == pytest.approx(summary["true_return"] + summary["terms"]["ircr"], abs=1e-6)


def test_bench_rows_report_the_relabelled_term_and_leave_out_pending_episodes():
    """Pendulum's episodes last 200 steps: with 2 envs they end at steps 400 and 800, inside the
    rollouts of steps 385-512 and 769-896. The evaluation at step 420 falls before the first
    two are relabelled, so they are left out; the later rows report what the agent trained on."""
    rows = run_cell(Cell("Align/Pendulum-Episodic-v0", "rrd(episodes=16, fit_rounds=4)", "ppo", seed=0, steps=1024,
                         eval_every=210, eval_episodes=1, n_envs=2,
                         hyperparams={"n_steps": 64, "batch_size": 64, "n_epochs": 1}))
    by_step = {row["step"]: row for row in rows}
    assert by_step[420]["train_true_return"] is None  # two episodes have ended, their terms still pending
    for step in (630, 840, 1024):
        row = by_step[step]
        assert abs(row["train_term.rrd"]) > 1e-3  # what the agent trained on, not the 0 the env paid
        assert row["train_shaped_return"] == pytest.approx(row["train_true_return"] + row["train_term.rrd"], rel=1e-6)
    assert by_step[840]["train_true_return"] == by_step[630]["train_true_return"]  # the episodes of step 800 wait
    assert by_step[1024]["train_true_return"] != by_step[630]["train_true_return"]


def test_replay_relabelling_with_dqn_pays_the_current_models_reward_in_each_minibatch():
    venv = make_vec_env(EPISODIC, n_envs=2, shaping="rrd(episodes=16)", gamma=0.99, seed=0, env_kwargs=SHORT)
    model = DQN("MlpPolicy", venv, learning_starts=200, buffer_size=5000, train_freq=4, batch_size=32, seed=0,
                device="cpu")
    credit = install_credit(model)
    assert [type(c) for c in credit] == [ReplayTermReport]
    buffer = model.replay_buffer
    assert isinstance(buffer, RelabellingReplayBuffer)
    model.learn(3000, callback=credit)  # a few thousand steps of real training, one reward-model step per minibatch
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
    model = PPO("MlpPolicy", venv, n_steps=16, batch_size=16, device="cpu")
    install_credit(model)
    with pytest.raises(RuntimeError, match="pass the callbacks install_credit returned"):
        model.learn(32)  # without them nothing would relabel the rollouts, or report their terms
    with pytest.raises(ValueError, match="already installed"):
        install_credit(model)
    normalised = VecNormalize(VecNormalize(make_vec_env(EPISODIC, n_envs=1, shaping="ircr", gamma=0.99)))
    with pytest.raises(ValueError, match="two VecNormalize"):
        install_credit(PPO("MlpPolicy", normalised, n_steps=16, batch_size=16, device="cpu"))
    with pytest.raises(ValueError, match="-Choice id"):
        shape_env(gym.make("Align/TextQuest-easy-v0"), "rrd(online=true)", gamma=0.99)
    with pytest.raises(ValueError, match="trainer session"):
        EnvSession("Align/TextQuest-easy-v0", "ircr")
    with pytest.raises(ValueError, match="optimize_memory_usage"):
        install_credit(DQN("MlpPolicy", venv, optimize_memory_usage=True, replay_buffer_kwargs={"handle_timeout_termination": False}, device="cpu"))
