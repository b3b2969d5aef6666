"""Agents: Stable-Baselines3 helpers (and, later, token-level LLM agents)."""

from .sb3 import (
    Evaluation,
    RewardTermsCallback,
    ShapingCheckpointCallback,
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
)

__all__ = ["Evaluation", "RewardTermsCallback", "ShapingCheckpointCallback", "TaskEvalCallback", "env_seeds",
           "evaluate", "load_checkpoint", "load_reward_modules", "make_vec_env", "policy_for", "reward_modules_path",
           "save_checkpoint", "save_reward_modules"]
