"""One training run ("cell"): an env, a shaping, an SB3 agent and a seed, scored on the task.

The agent trains on the shaped env and is evaluated every ``eval_every`` steps on the unshaped
task, by the task reward alone. The demo and the bench run cells; nothing here prints.

Cells are paired (common random numbers, protocol :data:`PROTOCOL`): every random stream of a
cell (its training envs, the agent's initial weights and sampling, its evaluation episodes, the
networks, offline data and sampling of its reward modules) derives from one
:class:`numpy.random.SeedSequence` built from the seed, the env and the agent, never the shaping.
For one env, agent and seed every shaping starts from the same weights, meets the same env
layouts in the same order and is scored on the same evaluation episodes, so the report compares
shapings seed by seed: the seed's own luck cancels in the difference, and a layer that pays
exactly 0 reproduces ``none`` bit for bit. Different seeds share no stream.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .llm_rewards.cache import RUN_ENV
from .wrappers.terms import PENDING_TERMS

ALGORITHMS = {"ppo": "stable_baselines3:PPO", "a2c": "stable_baselines3:A2C", "dqn": "stable_baselines3:DQN",
              "sac": "stable_baselines3:SAC", "maskable_ppo": "sb3_contrib:MaskablePPO"}
# Agents that are language models, trained by our own loops rather than SB3's: name -> the library
# they need. A cell's hyperparams are their config's fields (see agents/llm_policy.py).
LLM_AGENTS = {"action_ppo": "transformers"}
# The bench's protocol, in every row's definition: the report never pools or pairs rows of two
# protocols. 1: streams seeded by the cell's shaping too (unpaired). 2: paired cells, module
# streams from the cell's seed, both evaluation modes, the terms each shaping paid in all.
PROTOCOL = 2
EXTRA_OF = {"sb3_contrib": "contrib", "transformers": "llm-agents"}


@dataclass
class Cell:
    """What one run trains: ``env_id`` with ``shaping`` by ``agent`` for ``steps`` env steps."""

    env_id: str
    shaping: str
    agent: str
    seed: int
    steps: int
    eval_every: int
    eval_episodes: int = 10
    n_envs: int = 8
    hyperparams: dict[str, Any] = field(default_factory=dict)

    def definition(self) -> dict[str, Any]:
        """Everything that defines the cell, as flat JSON fields: every row of the cell carries
        them, and the report pools only cells whose definitions agree in all but ``seed``."""
        out = {"env_id": self.env_id, "shaping": self.shaping, "agent": self.agent, "seed": self.seed,
               "budget": self.steps, "eval_every": self.eval_every, "eval_episodes": self.eval_episodes,
               "n_envs": self.n_envs, "protocol": PROTOCOL}
        out.update({f"hp.{key}": value for key, value in sorted(self.hyperparams.items())})
        return out

    def seed_sequence(self) -> np.random.SeedSequence:
        """The root of the cell's random streams: the seed, with the env and agent as a spawn key.
        The shaping is left out on purpose: every shaping of one seed shares the streams."""
        label = zlib.crc32(f"{self.env_id}|{self.agent}".encode())
        return np.random.SeedSequence(self.seed, spawn_key=(label,))

    def seeds(self) -> CellSeeds:
        train, agent, evaluation = self.seed_sequence().spawn(3)
        return CellSeeds(train, int(agent.generate_state(1)[0] % 2**31), evaluation)


DEFINITION_FIELDS = ("env_id", "shaping", "agent", "seed", "budget", "eval_every", "eval_episodes", "n_envs",
                     "protocol")


def definition_of(row: dict[str, Any]) -> dict[str, Any]:
    """The cell definition a result row carries (the inverse of :meth:`Cell.definition`)."""
    return {k: v for k, v in row.items() if k in DEFINITION_FIELDS or k.startswith("hp.")}


@dataclass
class CellSeeds:
    """The streams of one cell: ``train`` seeds the training envs (one sub-seed each, see
    :func:`~align_gym.agents.sb3.env_seeds`) and the reward modules (one stream per module name,
    :func:`~align_gym.wrappers.registry.module_seed`), ``agent`` the SB3 model, ``evaluation``
    the evaluation episodes."""

    train: np.random.SeedSequence
    agent: int
    evaluation: np.random.SeedSequence


def algorithm_module(name: str) -> tuple[str, str]:
    """The module and class of agent ``name`` (for an LLM agent, the library it needs and "");
    ValueError naming the choices if unknown."""
    if name in LLM_AGENTS:
        return LLM_AGENTS[name], ""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown agent {name!r}; choose one of {', '.join([*ALGORITHMS, *LLM_AGENTS])}")
    module_name, _, class_name = ALGORITHMS[name].partition(":")
    return module_name, class_name


def missing_agent(name: str, module: str) -> ImportError:
    return ImportError(f"agent {name!r} needs {module}: pip install 'align-gym[{EXTRA_OF.get(module, 'all')}]'")


def load_algorithm(name: str):
    module_name, class_name = algorithm_module(name)
    try:
        module = __import__(module_name, fromlist=[class_name])
    except ImportError as error:
        raise missing_agent(name, module_name) from error
    return getattr(module, class_name)


def training_stats(episodes: list[dict[str, Any]], paid: dict[str, float] | None = None) -> dict[str, Any]:
    """Means over ``episodes`` (episode summaries of the reward-terms contract): the task return,
    the shaped return, and each term (``train_term.<name>``). Summaries whose terms are still
    pending (an on-policy rollout not yet relabelled by an in-agent redistribution) are left out:
    their term would read 0, not what the agent trains on. ``paid`` (term name -> sum of its
    absolute value over every episode so far) becomes ``train_term_abs.<name>``: the report flags a
    shaping whose sums are all 0, which never paid and so trained on the task alone."""
    paid_stats = {f"train_term_abs.{name}": float(value) for name, value in sorted((paid or {}).items())}
    episodes = [e for e in episodes if not e.get(PENDING_TERMS)]
    stats: dict[str, Any] = {
        "train_true_return": float(np.mean([e["true_return"] for e in episodes])) if episodes else None,
        "train_shaped_return": float(np.mean([e["shaped_return"] for e in episodes])) if episodes else None}
    for name in sorted({n for e in episodes for n in e["terms"]}):
        stats[f"train_term.{name}"] = float(np.mean([e["terms"].get(name, 0.0) for e in episodes]))
    return {**stats, **paid_stats}


def run_id(cell: Cell) -> str:
    """The LLM caches' run id of a cell (their sampling seeds derive from it): paired like its streams."""
    return f"{cell.env_id}|{cell.agent}|seed={cell.seed}"


def run_cell(cell: Cell, on_row: Callable[[dict[str, Any]], None] | None = None,
             callbacks: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Train and evaluate one cell; returns its eval rows (also passed to ``on_row`` as they come).
    ``callbacks``: SB3 callbacks that watch the training (a recorder of what a shaping paid); they
    must draw no random numbers, so the cell's rows stay those of the bench.

    Each row holds the evaluation (``step``, ``return_mean``, ``return_std``, ``success_rate``),
    the means over the last 100 training episodes (``train_true_return``,
    ``train_shaped_return``, ``train_term.<name>``) and the cell's :meth:`Cell.definition`.
    """
    import torch

    if cell.agent in LLM_AGENTS:
        return run_action_ppo_cell(cell, on_row)
    from .agents.credit import install_credit
    from .agents.sb3 import (
        RewardTermsCallback,
        StopAtBudget,
        TaskEvalCallback,
        make_vec_env,
        seeded_model,
    )
    from .wrappers.core import offline_steps

    torch.set_num_threads(1)  # cells run side by side, one core each
    # LLM caches made in this cell record (or replay) its sampling calls under the run id of its
    # env, agent and seed, not its shaping: two LLM shapings of one seed draw the same samples.
    os.environ[RUN_ENV] = run_id(cell)
    seeds = cell.seeds()
    hyper = dict(cell.hyperparams)
    gamma = hyper.setdefault("gamma", 0.99)  # one gamma for the agent and the shaping
    venv = make_vec_env(cell.env_id, n_envs=cell.n_envs, shaping=cell.shaping, gamma=gamma, seed=seeds.train)
    # Seeded after the modules are built, and without reseeding the envs (see seeded_model).
    model = seeded_model(load_algorithm(cell.agent), venv, seeds.agent, device="cpu", verbose=0, **hyper)
    relabelling = install_credit(model)  # a redistribution (ircr, rrd, lare) works inside the agent
    terms = RewardTermsCallback()
    definition = cell.definition()

    def add_training_stats(row: dict[str, Any]) -> None:
        row.update(training_stats(list(terms.episodes), terms.paid()), **definition, status="ok")
        if on_row is not None:
            on_row(row)

    # Env steps a reward module took before training (Motif's offline phase) come out of the budget.
    spent = offline_steps(venv)
    if spent >= cell.steps:
        raise ValueError(f"{cell.shaping} takes {spent:,} env steps before training, the whole budget of {cell.steps:,}")
    evaluator = TaskEvalCallback(cell.env_id, cell.eval_every, cell.eval_episodes, seed=seeds.evaluation,
                                 on_row=add_training_stats, step_offset=spent)
    try:
        # The relabelling first: it marks the terms of episodes that end before their rollout is
        # relabelled. The stop last: the evaluation at the budget happens before it.
        model.learn(cell.steps - spent,
                    callback=[*relabelling, terms, *callbacks, evaluator, StopAtBudget(cell.steps - spent)])
    finally:
        venv.close()
    return evaluator.rows


def run_action_ppo_cell(cell: Cell, on_row: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """:func:`run_cell` for action-PPO (an LLM over ``info["valid_actions"]``): one env, the
    cell's hyperparams as :class:`~align_gym.agents.llm_policy.ActionPPOConfig` fields, the same
    rows. Evaluations fall at the first update at or after each ``eval_every`` steps, and score the
    policy as it trains in both modes, as SB3 cells are: the most likely action (which repeats
    itself in the text tasks' loops, go north, go south, ...) and actions drawn from a seeded
    generator (which leave them)."""
    import torch

    from .agents.llm_policy import (
        ActionPPOConfig,
        evaluate_action_policy,
        make_action_policy,
        train_action_ppo,
    )

    if cell.n_envs != 1:
        raise ValueError(f"action_ppo steps one env: set n_envs = 1 (got {cell.n_envs})")
    torch.set_num_threads(1)
    os.environ[RUN_ENV] = run_id(cell)
    seeds = cell.seeds()
    config = ActionPPOConfig(env_id=cell.env_id, shaping=cell.shaping, steps=cell.steps, seed=seeds.agent,
                             device="cpu", **cell.hyperparams)
    policy = make_action_policy(config)
    definition, rows = cell.definition(), []

    def evaluate(step: int, episodes: list[dict[str, Any]]) -> None:
        paid: dict[str, float] = {}
        for episode in episodes:
            for name, value in episode["terms"].items():
                paid[name] = paid.get(name, 0.0) + abs(float(value))
        row: dict[str, Any] = {"step": step}
        for deterministic, suffix in ((True, ""), (False, "_sampled")):
            row.update(evaluate_action_policy(policy, cell.env_id, cell.eval_episodes, seeds.evaluation,
                                              deterministic).row_fields(suffix))
        row.update(**training_stats(episodes[-100:], paid), **definition, status="ok")
        rows.append(row)
        if on_row is not None:
            on_row(row)

    def on_update(update: dict[str, float], run: Any) -> None:
        if update["step"] >= rows[-1]["step"] + cell.eval_every or update["step"] >= cell.steps:
            evaluate(int(update["step"]), run.episodes)

    evaluate(0, [])
    train_action_ppo(config, policy=policy, on_update=on_update)
    return rows
