"""Reward-shaping wrappers: the reward-terms contract, shaping cores and their adapters."""

from .core import RewardModule, ShapingWrapper, TransitionBatch
from .potential import PotentialReward, PotentialShaping, make_potential_reward
from .registry import (
    ShapingSpec,
    is_invariant,
    make_module,
    parse_spec,
    register_shaping,
    shape_env,
    shape_vec_env,
    shape_vector_env,
    shaping_entries,
    split_specs,
)
from .sb3 import PotentialShapingVecEnv, ShapingVecEnvWrapper
from .terms import ENV_REWARD, EPISODE_SUMMARY, REWARD_TERMS, EpisodeSummary
from .vector import PotentialShapingVector, ShapingVectorWrapper

register_shaping("none", lambda env, gamma: None, invariant=True,
                 summary="no shaping: the task reward alone (the baseline)")
register_shaping("pbrs", make_potential_reward, invariant=True,
                 summary="potential-based shaping gamma*Phi(s')-Phi(s) (Ng et al. 1999); potential=reference|distance|<callable>")

__all__ = [
    "ENV_REWARD", "EPISODE_SUMMARY", "REWARD_TERMS", "EpisodeSummary", "PotentialReward",
    "PotentialShaping", "PotentialShapingVecEnv", "PotentialShapingVector", "RewardModule",
    "ShapingSpec", "ShapingVecEnvWrapper", "ShapingVectorWrapper", "ShapingWrapper",
    "TransitionBatch", "is_invariant", "make_module", "make_potential_reward", "parse_spec",
    "register_shaping", "shape_env", "shape_vec_env", "shape_vector_env", "shaping_entries",
    "split_specs",
]
