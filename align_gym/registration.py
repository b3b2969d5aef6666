"""Every Align env id, with its default kwargs, in one table (registered at import)."""

from __future__ import annotations

import gymnasium as gym

MINIHACK_TASKS = ("Room-5x5", "Room-15x15", "KeyRoom-S5", "KeyRoom-S15", "MazeWalk-9x9", "MazeWalk-15x15", "River")
# id -> (entry point, kwargs). A bare id is an alias of the default variant named beside it.
ENV_TABLE: dict[str, tuple[str, dict]] = {
    "Align/KeyDoor-5x5-v0": ("align_gym.envs.keydoor:KeyDoorEnv", {"size": 5}),
    "Align/KeyDoor-8x8-v0": ("align_gym.envs.keydoor:KeyDoorEnv", {"size": 8}),
    "Align/KeyDoor-16x16-v0": ("align_gym.envs.keydoor:KeyDoorEnv", {"size": 16}),
    "Align/KeyDoor-v0": ("align_gym.envs.keydoor:KeyDoorEnv", {"size": 8}),  # = KeyDoor-8x8
    # KeyDoor with subgoal rewards, and the same task with its reward withheld to the episode's end.
    "Align/KeyDoorSubgoals-v0": ("align_gym.envs.keydoor:KeyDoorSubgoalsEnv", {"size": 8}),
    "Align/KeyDoorSubgoals-Episodic-v0": ("align_gym.wrappers.episodic:episodic_task",
                                          {"env_id": "Align/KeyDoorSubgoals-v0"}),
    # Pendulum-v1's swing-up with a dense cost per step, and the same task with it withheld to the end.
    "Align/Pendulum-v0": ("align_gym.envs.pendulum:PendulumEnv", {}),
    "Align/Pendulum-Episodic-v0": ("align_gym.wrappers.episodic:episodic_task", {"env_id": "Align/Pendulum-v0"}),
    "Align/MountainCarSparse-v0": ("align_gym.envs.mountaincar:MountainCarSparseEnv", {"continuous": False}),
    "Align/MountainCarSparseContinuous-v0": ("align_gym.envs.mountaincar:MountainCarSparseEnv", {"continuous": True}),
    "Align/PointMaze-v0": ("align_gym.envs.pointmaze:PointMazeEnv", {}),
    "Align/DeepSea-v0": ("align_gym.envs.deepsea:DeepSeaEnv", {"size": 10}),
    **{f"Align/TextQuest-{level}-v0": ("align_gym.envs.text.textquest:TextQuestEnv", {"difficulty": level})
       for level in ("easy", "medium", "hard")},
    "Align/TextQuest-v0": ("align_gym.envs.text.textquest:TextQuestEnv", {"difficulty": "medium"}),  # = medium
    # The same dynamics for SB3: vector observations, a Discrete action, action_masks().
    **{f"Align/TextQuest-{level}-Choice-v0": ("align_gym.choice:ChoiceEnv", {"text_env": f"Align/TextQuest-{level}-v0"})
       for level in ("easy", "medium", "hard")},
    "Align/TextQuest-Choice-v0": ("align_gym.choice:ChoiceEnv", {"text_env": "Align/TextQuest-medium-v0"}),  # = medium
    "Align/TextWorld-v0": ("align_gym.envs.text.textworld:TextWorldEnv", {"games": 20}),
    "Align/TextWorld-Choice-v0": ("align_gym.choice:ChoiceEnv", {"text_env": "Align/TextWorld-v0", "slots": 32}),
    "Align/ToolCalc-v0": ("align_gym.envs.tools.toolcalc:ToolCalcEnv", {"steps": 3}),
    "Align/ToolCalc-Choice-v0": ("align_gym.choice:ChoiceEnv", {"text_env": "Align/ToolCalc-v0"}),
    "Align/ToolSQL-v0": ("align_gym.envs.tools.toolsql:ToolSQLEnv", {}),
    "Align/ToolSQL-Choice-v0": ("align_gym.choice:ChoiceEnv", {"text_env": "Align/ToolSQL-v0"}),
    "Align/WebShop-v0": ("align_gym.envs.web.webshop:WebShopEnv", {}),
    "Align/WebShop-Choice-v0": ("align_gym.choice:ChoiceEnv", {"text_env": "Align/WebShop-v0", "slots": 24}),
    "Align/WebForm-v0": ("align_gym.envs.web.webform:WebFormEnv", {}),
    "Align/WebForm-Choice-v0": ("align_gym.choice:ChoiceEnv", {"text_env": "Align/WebForm-v0", "slots": 16}),
    # MiniHack (the [minihack] extra): the adapter gives them the task contract.
    **{f"Align/MiniHack-{name}-v0": ("align_gym.envs.minihack:MiniHackEnv", {"name": name})
       for name in MINIHACK_TASKS},
    # The same tasks with one flat Box observation, for MLP agents (CleanRL-style loops).
    **{f"Align/MiniHack-{name}-Flat-v0": ("align_gym.envs.minihack:MiniHackEnv", {"name": name, "observation": "flat"})
       for name in MINIHACK_TASKS},
}


def register_envs() -> None:
    """Register every id of :data:`ENV_TABLE` (idempotent)."""
    for env_id, (entry_point, kwargs) in ENV_TABLE.items():
        if env_id not in gym.registry:
            # The envs truncate themselves at their own max_steps, which their reward formula uses.
            gym.register(id=env_id, entry_point=entry_point, kwargs=kwargs, disable_env_checker=False)


def list_envs() -> dict[str, str]:
    """Every registered Align id with its task in one line."""
    out = {}
    for env_id, (entry_point, kwargs) in ENV_TABLE.items():
        module_name, _, class_name = entry_point.partition(":")
        module = __import__(module_name, fromlist=[class_name])
        out[env_id] = getattr(module, class_name).task_of(**kwargs)
    return out
