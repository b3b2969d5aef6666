"""align-gym: sparse- and delayed-reward tasks and reward-shaping wrappers for Gymnasium.

>>> import gymnasium as gym, align_gym
>>> env = gym.make("Align/KeyDoor-v0")
>>> obs, info = env.reset(seed=0)
>>> sorted(info)
['caption', 'state', 'task']
"""

from importlib.metadata import PackageNotFoundError, version

from .registration import ENV_TABLE, list_envs, register_envs

try:
    __version__ = version("align-gym")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

register_envs()

__all__ = ["ENV_TABLE", "__version__", "list_envs", "register_envs"]
