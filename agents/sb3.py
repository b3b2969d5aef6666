"""Stable-Baselines3 helpers: shaped vector envs, true-return logging, the reward modules'
lifecycle (updates at rollout end, state saved beside checkpoints), evaluation on the task.

Scores always come from ``info["env_reward"]`` (the task's own reward), never the shaped one.

>>> from stable_baselines3 import PPO
>>> venv = make_vec_env("Align/KeyDoor-5x5-v0", n_envs=4, shaping="pbrs(potential=reference)", gamma=0.99)
>>> model = PPO("MlpPolicy", venv, gamma=0.99, n_steps=64, verbose=0)
>>> _ = model.learn(256, callback=RewardTermsCallback())
"""

from __future__ import annotations

import inspect
import pickle
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

import align_gym  # noqa: F401  (registers the Align/ ids)

from ..wrappers.core import load_reward_module_states, reward_module_states, shaping_layers
from ..wrappers.registry import shape_vec_env
from ..wrappers.terms import EPISODE_SUMMARY, PENDING_TERMS


def policy_for(env: gym.Env | VecEnv) -> str:
    """The SB3 policy name that fits ``env``'s observations: ``MultiInputPolicy`` for dict
    observations (the MiniHack tasks), ``MlpPolicy`` otherwise.

    >>> policy_for(make_vec_env("Align/KeyDoor-5x5-v0", n_envs=1))
    'MlpPolicy'
    """
    return "MultiInputPolicy" if isinstance(env.observation_space, gym.spaces.Dict) else "MlpPolicy"


def env_seeds(seed: int | np.random.SeedSequence, n: int) -> list[int]:
    """``n`` seeds drawn from ``SeedSequence(seed)``: the sub-env seeds of a run seeded ``seed``.

    Runs seeded ``s`` and ``s + 1`` share none of them (seeding sub-envs ``s .. s + n - 1`` would
    give them ``n - 1`` env streams in common).

    >>> env_seeds(0, 3) == env_seeds(0, 3) and not set(env_seeds(0, 3)) & set(env_seeds(1, 3))
    True
    """
    sequence = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return [int(s) for s in sequence.generate_state(n)]


def _seeded_env_factory(env_id: str | Callable[..., gym.Env], seed: int, env_kwargs: dict[str, Any]) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        env = gym.make(env_id, **env_kwargs) if isinstance(env_id, str) else env_id(**env_kwargs)
        # A seeded reset fixes the env's stream; SB3's own first reset (seed=None) continues it.
        env.reset(seed=seed)
        env.action_space.seed(seed)
        return Monitor(env)

    return make


def make_vec_env(
    env_id: str | Callable[..., gym.Env],
    n_envs: int = 8,
    shaping: str | None = None,
    *,
    gamma: float | None = None,
    seed: int | np.random.SeedSequence = 0,
    vec_env_cls: type[VecEnv] = DummyVecEnv,
    env_kwargs: dict[str, Any] | None = None,
) -> VecEnv:
    """An SB3 VecEnv of ``n_envs`` copies of ``env_id`` with ``shaping`` applied once per vector step.

    ``shaping`` is a spec (``"pbrs(potential=reference)"``, ``"pbrs(potential=reference)+pbrs(potential=distance, name=d)"``;
    ``None`` means ``"none"``) and ``gamma`` must be the discount the agent uses: pass the same
    value to both. Sub-env ``i`` is seeded with ``env_seeds(seed, n_envs)[i]``; each is wrapped in
    SB3's ``Monitor``. The reward modules are seeded from ``seed`` too
    (:func:`~align_gym.wrappers.registry.module_seed`), so two seeds differ in every stream and
    two shapings of one seed share the env streams. Every step's info keeps ``env_reward``,
    ``reward_terms`` and, at episode end, ``episode_summary``.

    An SB3 model built with ``seed=s`` reseeds these envs (SB3's ``VecEnv.seed`` gives sub-env
    ``i`` the seed ``s + i`` at the next reset); :func:`seeded_model` seeds the model and keeps
    the streams drawn here.
    """
    seeds = env_seeds(seed, n_envs)
    venv = vec_env_cls([_seeded_env_factory(env_id, s, env_kwargs or {}) for s in seeds])
    return shape_vec_env(venv, shaping or "none", gamma=gamma, seed=seed)


def seeded_model(algorithm: type[BaseAlgorithm], venv: VecEnv, seed: int, **kwargs: Any) -> BaseAlgorithm:
    """``algorithm(policy_for(venv), venv, **kwargs)`` with its weights, sampling and action space
    seeded by ``seed``, and ``venv``'s own env streams (those :func:`make_vec_env` drew) kept.

    ``algorithm(..., seed=seed)`` would seed the same things and also call ``venv.seed(seed)``,
    which resets sub-env ``i`` with ``seed + i`` when training starts: every run seeded ``seed``
    would then share its env streams whatever ``make_vec_env`` drew, and runs seeded ``s`` and
    ``s + 1`` would share all but one.

    >>> from stable_baselines3 import PPO
    >>> model = seeded_model(PPO, make_vec_env("Align/KeyDoor-5x5-v0", n_envs=2, seed=3), seed=7, n_steps=16)
    >>> model.num_timesteps
    0
    """
    from stable_baselines3.common.utils import set_random_seed

    if "seed" in kwargs:
        raise ValueError("seeded_model takes the seed as its own argument: a seed= among the settings would "
                         "reseed the envs (SB3's venv.seed)")
    set_random_seed(seed)  # the global generators the policy's initialisation and sampling draw from
    model = algorithm(policy_for(venv), venv, **kwargs)
    # model.seed stays None: SB3's load() would call set_random_seed(model.seed), reseeding the envs.
    model.action_space.seed(seed)
    return model


class RewardTermsCallback(BaseCallback):
    """Logs the true return, success rate, shaped return and every reward term to SB3's logger
    (means over the last ``window`` episodes, under ``align/``), and drives the reward modules.

    For on-policy agents (PPO, A2C) every learning module in the env's shaping stack is updated
    at each rollout's end with that rollout's transitions, so the next rollout is scored by the
    updated module; its stats are logged as ``align/<name>/<stat>``. Other agents leave the
    schedule to the modules (every ``update_every`` transitions) and the latest stats are logged.

    A redistribution relabelled inside the agent (``ircr``, ``rrd``, ``lare``) pays 0 as the env
    steps; the callbacks of :func:`~align_gym.agents.install_credit` write each episode's
    relabelled term into the summaries this callback keeps (an on-policy rollout's before any
    ``on_rollout_end``), so ``align/term_<name>`` and ``align/shaped_return`` report what the
    agent trained on.

    :meth:`paid` sums each term's absolute value over every episode so far (not a window): a
    shaping whose sums are all 0 never paid anything, and trained nothing but the task.
    """

    def __init__(self, window: int = 100, verbose: int = 0):
        super().__init__(verbose)
        self.episodes: deque[dict[str, Any]] = deque(maxlen=window)
        self._learning: list[Any] = []
        self._logged_updates: dict[int, int] = {}
        self._paid: dict[str, float] = {}
        self._unsettled: list[dict[str, Any]] = []  # summaries whose terms a relabelling has yet to write

    def paid(self) -> dict[str, float]:
        """Term name -> the sum of ``|term|`` over every finished episode whose terms are settled."""
        pending = []
        for summary in self._unsettled:
            if summary.get(PENDING_TERMS):
                pending.append(summary)
                continue
            for name, value in summary["terms"].items():
                self._paid[name] = self._paid.get(name, 0.0) + abs(float(value))
        self._unsettled = pending
        return dict(self._paid)

    def _on_training_start(self) -> None:
        self._learning = [layer.driver for layer in shaping_layers(self.training_env) if layer.driver.learns]
        for driver in self._learning:
            driver.on_rollout_end = isinstance(self.model, OnPolicyAlgorithm)

    def _on_training_end(self) -> None:
        for driver in self._learning:  # without this callback, modules keep their own schedule
            driver.on_rollout_end = False

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            if EPISODE_SUMMARY in info:
                self.episodes.append(info[EPISODE_SUMMARY])
                self._unsettled.append(info[EPISODE_SUMMARY])
        return True

    def _on_rollout_end(self) -> None:
        self.paid()  # settles the summaries relabelled by now: the list stays one rollout long
        for driver in self._learning:
            stats = driver.update() if driver.on_rollout_end else driver.last_stats
            if driver.n_updates != self._logged_updates.get(id(driver)):
                self._logged_updates[id(driver)] = driver.n_updates
                for key, value in stats.items():
                    self.logger.record(f"align/{driver.name}/{key}", value)
        if not self.episodes:
            return
        self.logger.record("align/true_return", float(np.mean([e["true_return"] for e in self.episodes])))
        self.logger.record("align/shaped_return", float(np.mean([e["shaped_return"] for e in self.episodes])))
        successes = [e["success"] for e in self.episodes if e["success"] is not None]
        if successes:
            self.logger.record("align/success_rate", float(np.mean(successes)))
        for name in sorted({n for e in self.episodes for n in e["terms"]}):
            self.logger.record(f"align/term_{name}", float(np.mean([e["terms"].get(name, 0.0) for e in self.episodes])))


def reward_modules_path(checkpoint: str | Path) -> Path:
    """Where the reward modules of an SB3 checkpoint (``model.zip``) are kept: ``model.reward_modules.pkl``."""
    return Path(str(checkpoint).removesuffix(".zip") + ".reward_modules.pkl")


def save_checkpoint(model: BaseAlgorithm, path: str | Path) -> Path:
    """``model.save(path)``, and the state of every reward module in its env's shaping stack
    beside it (:func:`reward_modules_path`). Returns the modules' file."""
    model.save(path)
    return save_reward_modules(model.get_env(), reward_modules_path(path))


def load_checkpoint(algorithm: type[BaseAlgorithm], path: str | Path, env: VecEnv, **kwargs: Any) -> BaseAlgorithm:
    """Load an SB3 model saved by :func:`save_checkpoint` onto ``env`` (built with the same
    shaping spec) and restore its reward modules into ``env``'s shaping stack."""
    states_file = reward_modules_path(path)
    if not states_file.exists():
        raise FileNotFoundError(f"{states_file} is missing: save with align_gym.agents.save_checkpoint, "
                                "which writes the reward modules beside the model")
    model = algorithm.load(path, env=env, **kwargs)
    load_reward_modules(env, states_file)
    return model


class ShapingCheckpointCallback(CheckpointCallback):
    """SB3's ``CheckpointCallback``, also saving the reward modules beside each checkpoint
    (``<prefix>_reward_modules_<steps>_steps.pkl``); restore with :func:`load_reward_modules`."""

    def _on_step(self) -> bool:
        if self.n_calls % self.save_freq == 0:
            save_reward_modules(self.training_env, self._checkpoint_path("reward_modules_", extension="pkl"))
        return super()._on_step()


def save_reward_modules(env: VecEnv, path: str | Path) -> Path:
    """Write the state of every reward module in ``env``'s shaping stack to ``path``."""
    path = Path(path)
    path.write_bytes(pickle.dumps(reward_module_states(env)))
    return path


def load_reward_modules(env: VecEnv, path: str | Path) -> None:
    """Restore reward-module states saved by :class:`ShapingCheckpointCallback` or :func:`save_checkpoint`."""
    load_reward_module_states(env, pickle.loads(Path(path).read_bytes()))


@dataclass
class Evaluation:
    """Scores of a policy on the unshaped task."""

    mean_return: float
    std_return: float
    success_rate: float
    mean_length: float

    def row_fields(self, suffix: str = "") -> dict[str, float]:
        """The bench row's fields of this evaluation (``suffix`` "_sampled" for the sampled mode)."""
        return {f"return_mean{suffix}": self.mean_return, f"return_std{suffix}": self.std_return,
                f"success_rate{suffix}": self.success_rate}


def stack(observations: list[Any]) -> Any:
    """One batch from single observations (a dict of arrays for dict observations)."""
    if isinstance(observations[0], dict):
        return {key: np.stack([o[key] for o in observations]) for key in observations[0]}
    return np.stack(observations)


def evaluate(model: BaseAlgorithm, env_id: str, n_episodes: int = 10, seed: int | np.random.SeedSequence = 10_000,
             deterministic: bool = True, env_kwargs: dict[str, Any] | None = None) -> Evaluation:
    """Run ``n_episodes`` on fresh, unshaped copies of ``env_id`` and score them by the task reward.

    The episodes run side by side (one batched policy call per step), episode ``k`` seeded with
    ``env_seeds(seed, n_episodes)[k]``. Action masks are passed where the env offers ``action_masks()``
    (sb3-contrib's MaskablePPO). With ``deterministic=False`` the policy samples its actions from
    generators seeded from ``seed`` (torch's, numpy's and Python's global ones, and the model's
    action space, which DQN's exploration draws from), their training states restored afterwards:
    the evaluation is reproducible and leaves the training run's streams where they were.
    """
    if deterministic:
        return _play(model, env_id, n_episodes, seed, True, env_kwargs)
    import random

    import torch

    space_rng = model.action_space.np_random
    saved = (np.random.get_state(), random.getstate(), space_rng.bit_generator.state)
    sample_seed = env_seeds(seed, n_episodes + 1)[-1]
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(sample_seed)
        np.random.seed(sample_seed % 2**32)
        random.seed(sample_seed)
        model.action_space.seed(sample_seed)
        try:
            return _play(model, env_id, n_episodes, seed, False, env_kwargs)
        finally:
            np.random.set_state(saved[0])
            random.setstate(saved[1])
            model.action_space.np_random.bit_generator.state = saved[2]


def _play(model: BaseAlgorithm, env_id: str, n_episodes: int, seed: int | np.random.SeedSequence,
          deterministic: bool, env_kwargs: dict[str, Any] | None) -> Evaluation:
    envs = [gym.make(env_id, **(env_kwargs or {})) for _ in range(n_episodes)]
    obs = [env.reset(seed=s)[0] for s, env in zip(env_seeds(seed, n_episodes), envs)]
    returns, lengths = np.zeros(n_episodes), np.zeros(n_episodes, dtype=int)
    successes = np.zeros(n_episodes, dtype=bool)
    running = list(range(n_episodes))
    # Masks go to agents that take them (MaskablePPO); plain SB3 agents ignore the env's masks.
    masked = hasattr(envs[0].unwrapped, "action_masks") and "action_masks" in inspect.signature(model.predict).parameters
    while running:
        kwargs = {"action_masks": np.stack([envs[k].unwrapped.action_masks() for k in running])} if masked else {}
        actions, _ = model.predict(stack([obs[k] for k in running]), deterministic=deterministic, **kwargs)
        still_running = []
        for k, action in zip(running, actions):
            obs[k], reward, terminated, truncated, info = envs[k].step(action)
            returns[k] += float(reward)
            lengths[k] += 1
            if terminated or truncated:
                successes[k] = bool(info.get("success", False))
            else:
                still_running.append(k)
        running = still_running
    for env in envs:
        env.close()
    return Evaluation(float(returns.mean()), float(returns.std()), float(successes.mean()), float(lengths.mean()))


class StopAtBudget(BaseCallback):
    """Ends training once ``budget`` env steps are taken. SB3's ``learn`` finishes the rollout it
    is in, so an on-policy agent would otherwise take, learn from and be scored after up to a
    rollout of steps past its budget. The steps of the rollout the budget ends are not trained
    on; put this after an evaluation callback, which then scores the policy that took them, at
    the budget (to the vector step: with ``n`` envs, the first multiple of ``n`` at or past it).

    >>> from stable_baselines3 import PPO
    >>> model = seeded_model(PPO, make_vec_env("Align/KeyDoor-5x5-v0", n_envs=2, seed=0), 0, n_steps=64, batch_size=64)
    >>> model.learn(100, callback=StopAtBudget(100)).num_timesteps
    100
    """

    def __init__(self, budget: int):
        super().__init__(0)
        self.budget = budget

    def _on_step(self) -> bool:
        return self.num_timesteps < self.budget


class TaskEvalCallback(BaseCallback):
    """Every ``eval_every`` env steps, scores the policy on the unshaped task and keeps a row in
    ``self.rows``; ``on_row`` sees each. A row holds ``step`` and the true return's mean and std
    and the success rate twice: with the most likely action (``return_mean``, ``return_std``,
    ``success_rate``) and with the policy's own sampling on the same episodes (the same names
    ending in ``_sampled``). Argmax policies can loop where the sampled policy they came from
    finishes; each mode alone misreads some agents."""

    def __init__(self, env_id: str, eval_every: int, n_episodes: int = 10, seed: int | np.random.SeedSequence = 10_000,
                 on_row: Callable[[dict[str, Any]], None] | None = None, env_kwargs: dict[str, Any] | None = None,
                 step_offset: int = 0):
        super().__init__(0)
        self.env_id, self.eval_every, self.n_episodes, self.seed = env_id, eval_every, n_episodes, seed
        self.on_row, self.env_kwargs = on_row, env_kwargs
        self.step_offset = step_offset  # env steps spent before the agent's (a reward module's offline phase)
        self.rows: list[dict[str, Any]] = []
        self._next_eval = 0

    def _on_training_start(self) -> None:
        self._evaluate()

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next_eval:
            self._evaluate()
        return True

    def _on_training_end(self) -> None:
        if not self.rows or self.rows[-1]["step"] != self.num_timesteps + self.step_offset:
            self._evaluate()

    def _evaluate(self) -> None:
        row: dict[str, Any] = {"step": int(self.num_timesteps) + self.step_offset}
        for deterministic, suffix in ((True, ""), (False, "_sampled")):
            row.update(evaluate(self.model, self.env_id, self.n_episodes, self.seed, deterministic,
                                self.env_kwargs).row_fields(suffix))
        self.rows.append(row)
        if self.on_row is not None:
            self.on_row(row)
        self._next_eval = self.num_timesteps + self.eval_every
