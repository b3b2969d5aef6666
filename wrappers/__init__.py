"""Reward-shaping wrappers: the reward-terms contract, shaping cores and their adapters.

The gymnasium adapters import neither torch nor Stable-Baselines3; the SB3 adapters
(``ShapingVecEnvWrapper``, ``PotentialShapingVecEnv``) are loaded on first use of their names.
"""

from typing import Any

from .core import (
    EpisodeStarts,
    ModuleDriver,
    RewardModule,
    ShapingWrapper,
    TransitionBatch,
    load_reward_module_states,
    module_learns,
    reward_module_states,
    shaping_layers,
)
from .count import CountBonus
from .episodic import EpisodicReward
from .intrinsic import IntrinsicReward, IntrinsicTerm
from .potential import NonFinitePotential, PotentialReward, PotentialShaping, make_potential_reward
from .registry import (
    ShapingSpec,
    check_spec,
    format_spec,
    is_invariant,
    make_modules,
    module_seed,
    parse_spec,
    register_shaping,
    shape_env,
    shape_vec_env,
    shape_vector_env,
    shaping_entries,
    split_specs,
)
from .terms import ENV_REWARD, EPISODE_SUMMARY, REWARD_TERMS, EpisodeSummary
from .vector import PotentialShapingVector, ShapingVectorWrapper

_SB3_NAMES = ("PotentialShapingVecEnv", "ShapingVecEnvWrapper")


def __getattr__(name: str) -> Any:
    if name in _SB3_NAMES:  # imports SB3 and torch: only when asked for
        from . import sb3

        return getattr(sb3, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CountBonus", "EpisodicReward", "IntrinsicReward", "IntrinsicTerm", "ENV_REWARD", "EPISODE_SUMMARY", "REWARD_TERMS", "EpisodeStarts", "EpisodeSummary", "ModuleDriver",
    "NonFinitePotential", "PotentialReward", "PotentialShaping", "PotentialShapingVecEnv", "PotentialShapingVector", "RewardModule",
    "ShapingSpec", "ShapingVecEnvWrapper", "ShapingVectorWrapper", "ShapingWrapper", "TransitionBatch",
    "check_spec", "format_spec", "is_invariant", "load_reward_module_states", "make_modules", "module_seed",
    "make_potential_reward", "module_learns", "parse_spec", "register_shaping", "reward_module_states",
    "shape_env", "shape_vec_env", "shape_vector_env", "shaping_entries", "shaping_layers", "split_specs",
]
