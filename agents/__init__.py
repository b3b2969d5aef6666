"""Agents: Stable-Baselines3 helpers (and, later, token-level LLM agents)."""

from .sb3 import Evaluation, RewardTermsCallback, TaskEvalCallback, evaluate, make_vec_env

__all__ = ["Evaluation", "RewardTermsCallback", "TaskEvalCallback", "evaluate", "make_vec_env"]
