"""KeyDoor: pick up a key, unlock a door, reach the goal. Reward only at the goal.

A numpy re-design of MiniGrid's DoorKey task (Chevalier-Boisvert et al. 2023) without its
rendering stack: the agent moves in four directions instead of turning, picks up a key standing
on it, and unlocks the door from any neighbouring cell. As in MiniGrid, the room is split by a
wall column with one locked door, the key and the agent start left of it, the goal is the
bottom-right cell, and reaching it pays ``1 - 0.9 * t / max_steps``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from .core import AlignEnv, State

UP, DOWN, LEFT, RIGHT, PICKUP, TOGGLE = range(6)
ACTION_NAMES = ("up", "down", "left", "right", "pickup", "toggle")
_MOVES = {UP: (0, -1), DOWN: (0, 1), LEFT: (-1, 0), RIGHT: (1, 0)}


def _manhattan(ax: int, ay: int, bx: int, by: int) -> int:
    return abs(ax - bx) + abs(ay - by)


def path_length(state: State, ax: int, ay: int, bx: int, by: int) -> int:
    """Shortest walk between two cells: straight if on one side of the wall, else via the door.

    The inner room has no obstacle but the wall column, so this equals breadth-first search.
    """
    wall = state["door_x"]
    if ax == wall or bx == wall or (ax < wall) == (bx < wall):
        return _manhattan(ax, ay, bx, by)
    dx, dy = state["door_x"], state["door_y"]
    return _manhattan(ax, ay, dx, dy) + _manhattan(dx, dy, bx, by)


def reference_potential(state: State) -> float:
    """Task progress in [0, 1]: stage (key, door, goal) plus closeness to the stage's target."""
    ax, ay = state["agent_x"], state["agent_y"]
    longest = 2 * state["size"]
    if state["door_open"]:
        stage, dist = 2, path_length(state, ax, ay, state["goal_x"], state["goal_y"])
    elif state["has_key"]:
        # The door is unlocked from a neighbouring cell, hence the - 1.
        stage, dist = 1, path_length(state, ax, ay, state["door_x"], state["door_y"]) - 1
    else:
        stage, dist = 0, path_length(state, ax, ay, state["key_x"], state["key_y"])
    return (stage + 1.0 - min(dist / longest, 1.0)) / 3.0


def subgoal_captions(state: State) -> list[str]:
    """The captions that achieving each remaining subgoal produces (ELLM's oracle suggests them)."""
    goals = [] if state["has_key"] else ["You pick up the key."]
    goals += [] if state["door_open"] else ["You unlock the door with the key."]
    return goals + ["You reach the goal."]


def distance_potential(state: State) -> float:
    """Minus the straight (Manhattan) distance to the goal, ignoring key, wall and door."""
    dist = _manhattan(state["agent_x"], state["agent_y"], state["goal_x"], state["goal_y"])
    return -dist / (2.0 * state["size"])


_COLOURS = {
    "floor": (30, 30, 30), "wall": (120, 120, 120), "door": (200, 160, 0),
    "open": (90, 70, 20), "key": (240, 220, 40), "goal": (40, 200, 60), "agent": (220, 40, 40),
}


class KeyDoorEnv(AlignEnv):
    """Grid room split by a wall with a locked door; the key is on the agent's side.

    Observation: ``Box(-1, 1, (10,))`` — the agent's cell, then the offsets from it to the key,
    the door and the goal (x, y, all scaled by ``size - 1``), then has-key and door-open flags. Actions: ``Discrete(6)`` —
    up, down, left, right, pickup, toggle.

    >>> import gymnasium as gym, align_gym
    >>> env = gym.make("Align/KeyDoor-5x5-v0")
    >>> obs, info = env.reset(seed=0)
    >>> info["caption"]
    'You are in a room. A key lies on the floor; a locked door in the wall leads to the goal.'
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}
    task = "Pick up the key, unlock the door with it, and walk to the green goal square."
    state_schema = {
        "agent_x": "agent column (0 = left wall)",
        "agent_y": "agent row (0 = top wall)",
        "key_x": "key column (where it lay before it was picked up)",
        "key_y": "key row",
        "door_x": "door column (the wall column)",
        "door_y": "door row",
        "goal_x": "goal column",
        "goal_y": "goal row",
        "has_key": "whether the agent holds the key",
        "door_open": "whether the door is unlocked",
        "steps": "steps taken in this episode",
        "size": "side of the grid, outer walls included",
    }
    potentials = {"reference": reference_potential, "distance": distance_potential}
    subgoal_captions = staticmethod(subgoal_captions)

    def __init__(self, size: int = 8, max_steps: int | None = None, render_mode: str | None = None):
        if size < 5:
            raise ValueError(f"KeyDoor needs size >= 5 (outer walls included), got {size}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.size = size
        self.max_steps = max_steps or 10 * size * size
        self.render_mode = render_mode
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(10,), dtype=np.float32)
        self.action_space = spaces.Discrete(6)
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        rng, n = self.np_random, self.size
        self.door = (int(rng.integers(2, n - 2)), int(rng.integers(1, n - 1)))
        left_cells = [(x, y) for x in range(1, self.door[0]) for y in range(1, n - 1)]
        key_i, agent_i = rng.choice(len(left_cells), size=2, replace=False)
        self.key, self.agent = left_cells[key_i], left_cells[agent_i]
        self.goal = (n - 2, n - 2)
        self.has_key = self.door_open = False
        self._steps = 0
        caption = "You are in a room. A key lies on the floor; a locked door in the wall leads to the goal."
        return self._obs(), self._info(caption)

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r}: expected an int in [0, 6) ({', '.join(ACTION_NAMES)})")
        action = int(action)
        self._steps += 1
        if action in _MOVES:
            caption = self._move(action)
        elif action == PICKUP:
            caption = self._pickup()
        else:
            caption = self._toggle()
        terminated = self.agent == self.goal
        reward = 1.0 - 0.9 * self._steps / self.max_steps if terminated else 0.0
        truncated = not terminated and self._steps >= self.max_steps
        if terminated:
            caption = "You reach the goal."
        success = terminated if (terminated or truncated) else None
        return self._obs(), reward, terminated, truncated, self._info(caption, success)

    def _move(self, action: int) -> str:
        dx, dy = _MOVES[action]
        x, y = self.agent[0] + dx, self.agent[1] + dy
        if (x, y) == self.door:
            if not self.door_open:
                return "The door is locked."
            self.agent = (x, y)
            return "You walk through the open door."
        if x in (0, self.size - 1) or y in (0, self.size - 1) or x == self.door[0]:
            return "You bump into the wall."
        self.agent = (x, y)
        if self.agent == self.key and not self.has_key:
            return "You step onto the key."
        return f"You move {ACTION_NAMES[action]}."

    def _pickup(self) -> str:
        if self.agent == self.key and not self.has_key:
            self.has_key = True
            return "You pick up the key."
        return "There is nothing here to pick up."

    def _toggle(self) -> str:
        if _manhattan(*self.agent, *self.door) != 1:
            return "There is nothing here to open."
        if self.door_open:
            return "The door is already open."
        if not self.has_key:
            return "The door is locked and you have no key."
        self.door_open = True
        return "You unlock the door with the key."

    def action_masks(self) -> np.ndarray:
        """Which actions can do something here, for sb3-contrib's MaskablePPO: moves always (a
        bump is a move), pickup only on the key, toggle only beside the locked door."""
        mask = np.ones(6, dtype=bool)
        mask[PICKUP] = self.agent == self.key and not self.has_key
        mask[TOGGLE] = not self.door_open and _manhattan(*self.agent, *self.door) == 1
        return mask

    def _obs(self) -> np.ndarray:
        # Offsets to the key, door and goal rather than their absolute cells: what the agent must
        # compute to act, so a small MLP policy need not learn the subtraction.
        ax, ay = self.agent
        offsets = [c - a for target in (self.key, self.door, self.goal) for c, a in zip(target, (ax, ay))]
        scale = self.size - 1
        values = [ax / scale, ay / scale] + [o / scale for o in offsets] + [float(self.has_key), float(self.door_open)]
        return np.array(values, dtype=np.float32)

    def state_dict(self) -> State:
        return {
            "agent_x": self.agent[0], "agent_y": self.agent[1],
            "key_x": self.key[0], "key_y": self.key[1],
            "door_x": self.door[0], "door_y": self.door[1],
            "goal_x": self.goal[0], "goal_y": self.goal[1],
            "has_key": self.has_key, "door_open": self.door_open,
            "steps": self._steps, "size": self.size,
        }

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        n, px = self.size, 12
        grid = np.zeros((n, n, 3), dtype=np.uint8)
        grid[:] = _COLOURS["floor"]
        grid[0, :] = grid[-1, :] = grid[:, 0] = grid[:, -1] = _COLOURS["wall"]
        grid[:, self.door[0]] = _COLOURS["wall"]
        grid[self.door[1], self.door[0]] = _COLOURS["open" if self.door_open else "door"]
        grid[self.goal[1], self.goal[0]] = _COLOURS["goal"]
        if not self.has_key:
            grid[self.key[1], self.key[0]] = _COLOURS["key"]
        grid[self.agent[1], self.agent[0]] = _COLOURS["agent"]
        return np.kron(grid, np.ones((px, px, 1), dtype=np.uint8))


KEY_REWARD, DOOR_REWARD, GOAL_SHARE = 0.25, 0.25, 0.5


class KeyDoorSubgoalsEnv(KeyDoorEnv):
    """KeyDoor with a reward for each subgoal, spread over the episode: 0.25 for picking up the
    key, 0.25 for unlocking the door, and ``0.5 * (1 - 0.9 t / T)`` for reaching the goal; the
    parts are in ``info["reward_parts"]``. The dense task that the episodic tasks of credit
    assignment withhold (``Align/KeyDoorSubgoals-Episodic-v0``).

    >>> import gymnasium as gym, align_gym
    >>> env = gym.make("Align/KeyDoorSubgoals-v0")
    >>> _ = env.reset(seed=0)
    >>> sorted(env.step(0)[-1]["reward_parts"])
    ['door', 'goal', 'key']
    """

    task = ("Pick up the key (reward 0.25), unlock the door with it (0.25), and walk to the green goal square "
            "(0.5, less the later you arrive).")

    def step(self, action):
        had_key, was_open = self.has_key, self.door_open
        obs, reward, terminated, truncated, info = super().step(action)
        parts = {"key": KEY_REWARD * float(self.has_key and not had_key),
                 "door": DOOR_REWARD * float(self.door_open and not was_open), "goal": GOAL_SHARE * reward}
        info["reward_parts"] = parts
        return obs, sum(parts.values()), terminated, truncated, info
