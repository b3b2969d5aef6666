"""Redistributed rewards inside Stable-Baselines3 agents (see :mod:`align_gym.wrappers.credit`).

:func:`install_credit` finds the redistribution in a model's shaping stack (``ircr``, ``rrd``,
``lare`` specs) and puts it where whole episodes are known:

- **on-policy** (PPO, A2C, sb3-contrib's MaskablePPO and RecurrentPPO): the rollout buffer's
  ``compute_returns_and_advantage``, which each of their rollout loops calls once, right after
  the rollout's last step, with the loop's own V(s_T) (from the observation the rollout ended on,
  and for RecurrentPPO its LSTM state). :func:`install_credit` wraps that method: it first has
  :class:`RolloutRelabelling` (the callback that recorded the rollout) train the method on the
  episodes that have ended and replace the task reward of every step by ``r_hat`` (keeping what
  else the reward held: other shaping terms, and SB3's value bootstrap at truncations), then
  computes the returns and advantages once, from the relabelled rewards and that V(s_T). Design
  choice: relabelling there rather than in ``on_rollout_end`` serves every loop's V(s_T) as the
  loop computed it (sb3-contrib's loops never refresh the ``values`` local a callback could read,
  which holds V(s_{T-1}); RecurrentPPO's needs the LSTM state besides), and the rollout is
  relabelled before any callback's ``on_rollout_end`` reads it. Episodes cut by the rollout's
  end: a reward model (RRD, LaRe) relabels their steps like any other (it needs no return); IRCR
  gives them its neutral value (see :mod:`align_gym.wrappers.ircr`), and each method trains only
  on episodes that have ended, joined across rollouts.
- **off-policy** (SAC, TD3, DQN): :class:`RelabellingReplayBuffer` replaces the model's replay
  buffer. It keeps each transition's features, task reward and episode; each ``sample`` first
  trains the method one step (one reward-model step per critic step, as LaRe's and RRD's code do),
  then returns the minibatch with its rewards relabelled by the current model. IRCR samples only
  transitions of episodes that have ended.

**Under** ``VecNormalize(norm_reward=True)`` (on top of the shaping stack, as the SB3 adapter
suggests) the relabelling is in the buffer's units. SB3's on-policy buffer holds
``clip(r_t / sigma_t)``, ``sigma_t`` VecNormalize's running std of discounted returns at step t;
a relabelled step holds ``clip((r_t - env_reward_t + r_hat_t) / sigma_t)`` (plus SB3's truncation
bootstrap, already in those units): what VecNormalize would have stored had the env paid
``r_hat``. Design choice: ``sigma_t`` stays VecNormalize's own, the std of the returns of the
reward the env pays, as in the off-policy path (SB3 stores raw rewards there and normalises each
relabelled minibatch with the current statistics); keeping a second normaliser of ``r_hat``'s
returns would give the value function a scale that changes with the reward model. Early on, while
few episodes have ended, that std is small, and relabelled rewards can reach the clip
(``clip_reward``).

**Reported terms.** The method's term is ``r_hat - env_reward``, which the env cannot know as it
steps (it pays 0). The relabelling writes each episode's term into that episode's summary (its
``info["episode_summary"]`` dict, which :class:`~align_gym.agents.RewardTermsCallback` and the
bench keep), with the shaped return: on-policy, the sum of what the agent trained on over the
rollouts the episode spanned, once the rollout holding its end is relabelled (until then the
summary lists the term under ``pending_terms``); off-policy, where every minibatch is relabelled
anew, the relabelling of its steps by the model at the episode's end (:class:`ReplayTermReport`).
So ``align/term_<name>`` and the bench's ``train_term.<name>`` and ``train_shaped_return`` show
what the agent trained on, not the task return.

>>> from stable_baselines3 import PPO
>>> from align_gym.agents import make_vec_env
>>> venv = make_vec_env("Align/KeyDoorSubgoals-Episodic-v0", n_envs=2, shaping="rrd(episodes=8)", gamma=0.99)
>>> model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, verbose=0)
>>> callbacks = install_credit(model)
>>> _ = model.learn(256, callback=callbacks)
>>> callbacks[0].relabelled
2
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.buffers import ReplayBuffer, RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from ..wrappers.credit import Redistribution, Step, redistribution_modules
from ..wrappers.terms import EPISODE_SUMMARY, PENDING_TERMS


def install_credit(model: BaseAlgorithm) -> list[BaseCallback]:
    """Put the redistribution of ``model``'s env (if any) into ``model``; returns the callbacks to
    pass to ``model.learn`` (none where the stack has no redistribution). Training without them
    stops at the first step with the reason. Pass them before any callback that reads episode
    summaries as they arrive (as the bench's evaluator does): they mark an on-policy episode's term
    pending until its rollout is relabelled, and settle an off-policy episode's term at its end.
    ValueError for an agent it cannot serve, for two redistributions in one stack, for two reward
    normalisers above it, or for a model that already has one installed."""
    modules = redistribution_modules(model.get_env())
    if not modules:
        return []
    if len(modules) > 1:
        raise ValueError(f"{len(modules)} redistributions ({', '.join(m.name for m in modules)}) in one shaping stack: "
                         "each replaces the task reward, so only one can")
    module = modules[0]
    if isinstance(model, OnPolicyAlgorithm):
        buffer = model.rollout_buffer
        if not isinstance(buffer, RolloutBuffer):
            raise ValueError(f"{module.name} relabels SB3's RolloutBuffer; this agent uses {type(buffer).__name__}")
        if "compute_returns_and_advantage" in vars(buffer):
            raise ValueError(f"{module.name} is already installed in this model: call install_credit once")
        callback = RolloutRelabelling(module, reward_normaliser(model.get_env(), module))
        module.relabeller = callback
        sb3_compute = buffer.compute_returns_and_advantage

        def compute_returns_and_advantage(last_values: Any, dones: np.ndarray) -> None:
            # SB3's rollout loop calls this once, right after its last step, with its own V(s_T):
            # relabel first, so the returns and advantages are computed once, from r_hat.
            callback.relabel(buffer)
            sb3_compute(last_values=last_values, dones=dones)

        buffer.compute_returns_and_advantage = compute_returns_and_advantage
        return [callback]
    if isinstance(model, OffPolicyAlgorithm):
        old = model.replay_buffer
        if isinstance(old, RelabellingReplayBuffer):
            raise ValueError(f"{module.name} is already installed in this model: call install_credit once")
        if type(old) is not ReplayBuffer or old.optimize_memory_usage:
            raise ValueError(f"{module.name} relabels SB3's plain ReplayBuffer (box or discrete observations, without "
                             f"optimize_memory_usage); this agent uses {type(old).__name__}")
        report = ReplayTermReport(module)
        model.replay_buffer = RelabellingReplayBuffer(
            old.buffer_size, old.observation_space, old.action_space, module=module, device=old.device,
            n_envs=old.n_envs, handle_timeout_termination=old.handle_timeout_termination, report=report)
        return [report]
    raise ValueError(f"{module.name} needs an on-policy or off-policy SB3 agent, not {type(model).__name__}")


def reward_normaliser(env: VecEnv, module: Redistribution) -> VecNormalize | None:
    """The ``VecNormalize(norm_reward=True)`` between ``env``'s top and ``module``'s shaping layer,
    if any: the rollout buffer then holds its normalised rewards. ValueError for two."""
    found, current = [], env
    while current is not None and getattr(vars(current).get("driver"), "module", None) is not module:
        if isinstance(current, VecNormalize) and current.norm_reward:
            found.append(current)
        current = vars(current).get("venv")
    if len(found) > 1:
        raise ValueError(f"two VecNormalize(norm_reward=True) above {module.name}: normalise the rewards once")
    return found[0] if found else None


def settle_term(summary: dict[str, Any], name: str, term: float) -> None:
    """Write the relabelled ``term`` of layer ``name`` into an episode's ``summary`` (in place: the
    summary is the one the episode's info carried, which callbacks keep), with the shaped return."""
    terms = summary["terms"]
    summary["shaped_return"] += term - terms.get(name, 0.0)
    terms[name] = term
    pending = [n for n in summary.get(PENDING_TERMS, []) if n != name]
    if pending:
        summary[PENDING_TERMS] = pending
    else:
        summary.pop(PENDING_TERMS, None)


class CreditCallback(BaseCallback):
    """What both relabellings share: the module, a check that the callback is in ``model.learn``,
    and the episode summaries of each step (:meth:`_episode_ended`)."""

    def __init__(self, module: Redistribution):
        super().__init__(0)
        self.module = module
        self.active = False  # whether model.learn is running with this callback

    def _on_training_start(self) -> None:
        self.active = True

    def _on_training_end(self) -> None:
        self.active = False

    def check_active(self) -> None:
        """Raise unless ``model.learn`` runs with this callback (called as the env steps)."""
        if not self.active:
            raise RuntimeError(f"{self.module.name} is installed in the agent: pass the callbacks install_credit returned "
                               "to model.learn (callback=[*install_credit(model), ...]); without them nothing would "
                               "relabel the rollouts, or report their terms")

    def _on_step(self) -> bool:
        ids = self.module.last_step.episode_ids  # the vector step the infos belong to
        for i, info in enumerate(self.locals["infos"]):
            summary = info.get(EPISODE_SUMMARY)
            if summary is not None:
                self._episode_ended(int(ids[i]), summary)
        return True

    def _episode_ended(self, episode: int, summary: dict[str, Any]) -> None:
        raise NotImplementedError


class RolloutRelabelling(CreditCallback):
    """Relabels each rollout of an on-policy agent before its advantages are computed; see the
    module docstring. ``relabelled`` counts the rollouts relabelled; the method's stats are logged
    as ``align/<name>/<stat>``. ``normaliser``: the ``VecNormalize(norm_reward=True)`` above the
    shaping layer, if any, whose units the buffer holds."""

    def __init__(self, module: Redistribution, normaliser: VecNormalize | None = None):
        super().__init__(module)
        self.normaliser = normaliser
        self.steps: list[Step] = []
        self.relabelled = 0
        self._relabelled_now = False  # whether this rollout has been relabelled
        self._scales: list[tuple[np.ndarray, np.ndarray, float]] = []  # (raw, normalised, std) per step
        self._ended: dict[int, dict[str, Any]] = {}  # episode id -> summary, for episodes ended in this rollout
        self._sums: dict[int, float] = {}  # episode id -> its relabelled term so far (over earlier rollouts)

    def record(self, step: Step) -> None:
        """One vector step of the rollout, as the module saw it (called by the module)."""
        self.check_active()
        self.steps.append(step)

    def _on_rollout_start(self) -> None:
        self.steps, self._scales, self._ended, self._relabelled_now = [], [], {}, False

    def _on_step(self) -> bool:
        if self.normaliser is not None:
            # The step's reward as VecNormalize received it, as it returned it, and the std it divided by.
            normaliser = self.normaliser
            self._scales.append((normaliser.get_original_reward(), np.array(self.locals["rewards"], dtype=np.float64),
                                 float(np.sqrt(normaliser.ret_rms.var + normaliser.epsilon))))
        return super()._on_step()

    def _episode_ended(self, episode: int, summary: dict[str, Any]) -> None:
        summary[PENDING_TERMS] = [*summary.get(PENDING_TERMS, []), self.module.name]
        self._ended[episode] = summary

    def relabel(self, buffer: RolloutBuffer) -> None:
        """Train the method, replace the task reward of every step of the full ``buffer`` by
        ``r_hat`` (in the buffer's units), and settle the terms of the episodes that ended in it."""
        if len(self.steps) != buffer.buffer_size:
            raise RuntimeError(f"{self.module.name} recorded {len(self.steps)} steps in a rollout of {buffer.buffer_size}: "
                               "the env stepped outside the agent's rollout (keep one agent per shaped env)")
        stats = self.module.fit()
        features = np.stack([step.features for step in self.steps])  # (n_steps, n_envs, F)
        ids = np.stack([step.episode_ids for step in self.steps])
        env_rewards = np.stack([step.env_rewards for step in self.steps])
        delta = self.module.r_hat(features, ids) - env_rewards
        if self.normaliser is None:
            buffer.rewards += delta.astype(buffer.rewards.dtype)
        else:
            raw, normalised, std = (np.stack(column) for column in zip(*self._scales))
            bootstrap = buffer.rewards - normalised  # SB3's gamma * V(final obs) at truncations, in the buffer's units
            clip = self.normaliser.clip_reward
            buffer.rewards[:] = np.clip((raw + delta) / std[:, None], -clip, clip) + bootstrap
        self._settle(ids, np.stack([step.done for step in self.steps]), delta)
        self.relabelled += 1
        self._relabelled_now = True
        for key, value in {**stats, "relabelled_mean": float(delta.mean() + env_rewards.mean())}.items():
            self.logger.record(f"align/{self.module.name}/{key}", value)

    def _settle(self, ids: np.ndarray, done: np.ndarray, delta: np.ndarray) -> None:
        """Add each step's ``r_hat - env_reward`` to its episode's sum; an episode that ended in
        this rollout has its sum written into its summary."""
        unique, index = np.unique(ids, return_inverse=True)
        for episode, total in zip(unique.tolist(), np.bincount(index.ravel(), weights=delta.ravel()).tolist()):
            self._sums[episode] = self._sums.get(episode, 0.0) + total
        for episode in ids[done].tolist():
            total = self._sums.pop(episode, 0.0)
            summary = self._ended.pop(episode, None)
            if summary is not None:
                settle_term(summary, self.module.name, total)

    def _on_rollout_end(self) -> None:
        if not self._relabelled_now:
            raise RuntimeError(f"{type(self.model).__name__} ended a rollout without compute_returns_and_advantage: "
                               f"{self.module.name} relabels rollouts there and cannot serve this agent")


class ReplayTermReport(CreditCallback):
    """Reports an off-policy episode's relabelled term: each minibatch is relabelled by the model of
    its time, so an episode's summary gets the relabelling by the model at the episode's end (the
    sum of ``r_hat - env_reward`` over its steps). The replay buffer refuses to fill without it."""

    def _episode_ended(self, episode: int, summary: dict[str, Any]) -> None:
        finished = self.module.finished[episode]
        r_hat = self.module.r_hat(finished.features, np.full(finished.length, episode))
        settle_term(summary, self.module.name, float(r_hat.sum() - finished.ret))


class RelabellingReplayBuffer(ReplayBuffer):
    """SB3's replay buffer that relabels each sampled minibatch with the current redistribution;
    see the module docstring. It reads each transition's features, task reward and episode from
    ``module.last_step``, which the module wrote when the env stepped (just before SB3 adds it)."""

    def __init__(self, buffer_size: int, observation_space: Any, action_space: Any, *, module: Redistribution,
                 device: Any = "auto", n_envs: int = 1, handle_timeout_termination: bool = True,
                 report: ReplayTermReport | None = None):
        super().__init__(buffer_size, observation_space, action_space, device=device, n_envs=n_envs,
                         handle_timeout_termination=handle_timeout_termination)
        self.module, self.report = module, report
        self.features: np.ndarray | None = None  # sized on the first add, when the feature size is known
        self.env_rewards = np.zeros((self.buffer_size, n_envs), dtype=np.float64)
        self.episode_ids = np.full((self.buffer_size, n_envs), -1, dtype=np.int64)
        self.ended = np.zeros((self.buffer_size, n_envs), dtype=bool)  # whether the row's episode has ended
        self._open_rows: list[list[int]] = [[] for _ in range(n_envs)]  # rows of each env's running episode
        self.rng = np.random.default_rng(module.rng.integers(2**63))
        self.stats: dict[str, float] = {}
        module.relabeller = self

    def record(self, step: Step) -> None:
        """Nothing to keep here (:meth:`add` reads the module's last step); refuses to fill the
        buffer unless ``model.learn`` runs with ``report``, its episodes' terms unreported."""
        if self.report is not None:
            self.report.check_active()

    def add(self, obs, next_obs, action, reward, done, infos) -> None:
        step = self.module.last_step
        if step is None or len(step.episode_ids) != self.n_envs:
            raise RuntimeError(f"{self.module.name} saw no step for this transition: its shaping layer must wrap the "
                               "agent's env")
        if self.features is None:
            self.features = np.zeros((self.buffer_size, self.n_envs, step.features.shape[1]), dtype=np.float32)
        self.features[self.pos], self.env_rewards[self.pos], self.episode_ids[self.pos] = (
            step.features, step.env_rewards, step.episode_ids)
        self.ended[self.pos] = False
        for i, rows in enumerate(self._open_rows):
            rows.append(self.pos)
            if step.done[i]:
                self.ended[rows, i] = self.episode_ids[rows, i] == step.episode_ids[i]  # rows not yet overwritten
                rows.clear()
        super().add(obs, next_obs, action, reward, done, infos)

    def _positions(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Row and env of each sampled transition: uniform, or uniform over finished episodes."""
        upper = self.buffer_size if self.full else self.pos
        if self.module.method.needs_returns:
            finished = np.flatnonzero(self.ended[:upper])
            if len(finished):
                flat = self.rng.choice(finished, size=batch_size)
                return flat // self.n_envs, flat % self.n_envs
        return self.rng.integers(0, upper, size=batch_size), self.rng.integers(0, self.n_envs, size=batch_size)

    def sample(self, batch_size: int, env: Any = None) -> ReplayBufferSamples:
        self.stats = self.module.fit(rounds=1)
        rows, envs = self._positions(batch_size)
        r_hat = self.module.r_hat(self.features[rows, envs], self.episode_ids[rows, envs])
        rewards = self.rewards[rows, envs] + (r_hat - self.env_rewards[rows, envs])
        data = (
            self._normalize_obs(self.observations[rows, envs, :], env),
            self.actions[rows, envs, :],
            self._normalize_obs(self.next_observations[rows, envs, :], env),
            (self.dones[rows, envs] * (1 - self.timeouts[rows, envs])).reshape(-1, 1),
            self._normalize_reward(rewards.reshape(-1, 1).astype(np.float32), env),
        )
        return ReplayBufferSamples(*tuple(map(self.to_torch, data)))
