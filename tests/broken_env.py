"""An env that raises mid-training, for the bench's failure handling (``broken_env:BrokenKeyDoor-v0``:
importing this module registers it, as ``gym.make("module:Id")`` does in a bench worker)."""

import gymnasium as gym

from align_gym.envs.keydoor import KeyDoorEnv


class BrokenKeyDoor(KeyDoorEnv):
    """KeyDoor-5x5 whose 300th step raises."""

    def __init__(self):
        super().__init__(size=5)
        self.total_steps = 0

    def step(self, action):
        self.total_steps += 1
        if self.total_steps >= 300:
            raise RuntimeError("broken on purpose")
        return super().step(action)


if "BrokenKeyDoor-v0" not in gym.registry:
    gym.register(id="BrokenKeyDoor-v0", entry_point=BrokenKeyDoor)
