"""Agents: Stable-Baselines3 helpers, and the doors to the LLM-RL trainers (TRL's
``environment_factory`` through :func:`trl_environment`; an OpenEnv server in
``align_gym.agents.openenv_server``, imported on its own since it needs ``openenv-core``)."""

from .credit import install_credit
from .sb3 import (
    Evaluation,
    RewardTermsCallback,
    ShapingCheckpointCallback,
    StopAtBudget,
    TaskEvalCallback,
    env_seeds,
    evaluate,
    load_checkpoint,
    load_reward_modules,
    make_vec_env,
    policy_for,
    reward_modules_path,
    save_checkpoint,
    save_reward_modules,
    seeded_model,
)
from .session import EnvSession
from .trl_env import trl_environment

__all__ = ["EnvSession", "Evaluation", "RewardTermsCallback", "ShapingCheckpointCallback", "StopAtBudget", "TaskEvalCallback", "env_seeds",
           "evaluate", "install_credit", "load_checkpoint", "load_reward_modules", "make_vec_env", "policy_for", "reward_modules_path",
           "save_checkpoint", "save_reward_modules", "seeded_model", "trl_environment"]
