"""Redistributed rewards inside Stable-Baselines3 agents (see :mod:`align_gym.wrappers.credit`).

:func:`install_credit` finds the redistribution in a model's shaping stack (``ircr``, ``rrd``,
``lare`` specs) and puts it where whole episodes are known:

- **on-policy** (PPO, A2C, MaskablePPO): :class:`RolloutRelabelling`, a callback. SB3 computes
  the rollout's returns and advantages *before* ``on_rollout_end``; at that point the callback
  trains the method on the episodes that have ended, adds ``r_hat - env_reward`` to every reward of
  the rollout buffer (which keeps what else the reward held: other shaping terms, and SB3's value
  bootstrap at truncations) and recomputes the returns and advantages from the relabelled rewards,
  with SB3's own ``compute_returns_and_advantage`` and the same last values. Episodes cut by the
  rollout's end: a reward model (RRD, LaRe) relabels their steps like any other (it needs no
  return); IRCR gives them its neutral value (see :mod:`align_gym.wrappers.ircr`), and each
  method trains only on episodes that have ended, joined across rollouts.
- **off-policy** (SAC, TD3, DQN): :class:`RelabellingReplayBuffer` replaces the model's replay
  buffer. It keeps each transition's features, task reward and episode; each ``sample`` first
  trains the method one step (one reward-model step per critic step, as LaRe's and RRD's code do),
  then returns the minibatch with its rewards relabelled by the current model. IRCR samples only
  transitions of episodes that have ended.

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

from ..wrappers.credit import Redistribution, Step, redistribution_modules


def install_credit(model: BaseAlgorithm) -> list[BaseCallback]:
    """Put the redistribution of ``model``'s env (if any) into ``model``; returns the callbacks to
    pass to ``model.learn`` (empty for off-policy agents, whose replay buffer is replaced now).
    ValueError for an agent it cannot serve, or for two redistributions in one stack."""
    modules = redistribution_modules(model.get_env())
    if not modules:
        return []
    if len(modules) > 1:
        raise ValueError(f"{len(modules)} redistributions ({', '.join(m.name for m in modules)}) in one shaping stack: "
                         "each replaces the task reward, so only one can")
    module = modules[0]
    if isinstance(model, OnPolicyAlgorithm):
        if not isinstance(model.rollout_buffer, RolloutBuffer):
            raise ValueError(f"{module.name} relabels SB3's RolloutBuffer; this agent uses {type(model.rollout_buffer).__name__}")
        callback = RolloutRelabelling(module)
        module.relabeller = callback
        return [callback]
    if isinstance(model, OffPolicyAlgorithm):
        old = model.replay_buffer
        if type(old) is not ReplayBuffer or old.optimize_memory_usage:
            raise ValueError(f"{module.name} relabels SB3's plain ReplayBuffer (box or discrete observations, without "
                             f"optimize_memory_usage); this agent uses {type(old).__name__}")
        model.replay_buffer = RelabellingReplayBuffer(
            old.buffer_size, old.observation_space, old.action_space, module=module, device=old.device,
            n_envs=old.n_envs, handle_timeout_termination=old.handle_timeout_termination)
        return []
    raise ValueError(f"{module.name} needs an on-policy or off-policy SB3 agent, not {type(model).__name__}")


class RolloutRelabelling(BaseCallback):
    """Relabels each rollout of an on-policy agent before it trains on it; see the module docstring.
    ``relabelled`` counts the rollouts relabelled; the method's stats are logged as
    ``align/<name>/<stat>``."""

    def __init__(self, module: Redistribution):
        super().__init__(0)
        self.module = module
        self.steps: list[Step] = []
        self.relabelled = 0

    def record(self, step: Step) -> None:
        """One vector step of the rollout, as the module saw it (called by the module)."""
        self.steps.append(step)

    def _on_rollout_start(self) -> None:
        self.steps = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer
        if len(self.steps) != buffer.buffer_size:
            raise RuntimeError(f"{self.module.name} recorded {len(self.steps)} steps in a rollout of {buffer.buffer_size}: "
                               "the env stepped outside the agent's rollout (keep one agent per shaped env)")
        stats = self.module.fit()
        features = np.stack([step.features for step in self.steps])  # (n_steps, n_envs, F)
        ids = np.stack([step.episode_ids for step in self.steps])
        env_rewards = np.stack([step.env_rewards for step in self.steps])
        delta = self.module.r_hat(features, ids) - env_rewards
        buffer.rewards += delta.astype(buffer.rewards.dtype)
        buffer.compute_returns_and_advantage(last_values=self.locals["values"], dones=self.locals["dones"])
        self.relabelled += 1
        for key, value in {**stats, "relabelled_mean": float(delta.mean() + env_rewards.mean())}.items():
            self.logger.record(f"align/{self.module.name}/{key}", value)


class RelabellingReplayBuffer(ReplayBuffer):
    """SB3's replay buffer that relabels each sampled minibatch with the current redistribution;
    see the module docstring. It reads each transition's features, task reward and episode from
    ``module.last_step``, which the module wrote when the env stepped (just before SB3 adds it)."""

    def __init__(self, buffer_size: int, observation_space: Any, action_space: Any, *, module: Redistribution,
                 device: Any = "auto", n_envs: int = 1, handle_timeout_termination: bool = True):
        super().__init__(buffer_size, observation_space, action_space, device=device, n_envs=n_envs,
                         handle_timeout_termination=handle_timeout_termination)
        self.module = module
        self.features: np.ndarray | None = None  # sized on the first add, when the feature size is known
        self.env_rewards = np.zeros((self.buffer_size, n_envs), dtype=np.float64)
        self.episode_ids = np.full((self.buffer_size, n_envs), -1, dtype=np.int64)
        self.ended = np.zeros((self.buffer_size, n_envs), dtype=bool)  # whether the row's episode has ended
        self._open_rows: list[list[int]] = [[] for _ in range(n_envs)]  # rows of each env's running episode
        self.rng = np.random.default_rng(module.rng.integers(2**63))
        self.stats: dict[str, float] = {}
        module.relabeller = self

    def record(self, step: Step) -> None:
        """Nothing to keep here: :meth:`add` reads the module's last step."""

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
