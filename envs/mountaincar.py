"""MountainCarSparse: rock an underpowered car up to the flag. Reward only at the flag.

Classic Mountain Car (Moore 1990; Sutton & Barto 2018, example 10.1), written in numpy with the
dynamics of gymnasium's ``MountainCar-v0`` and ``MountainCarContinuous-v0``. The track height is
``sin(3x)``; the car starts in the valley, ``x ~ U(-0.6, -0.4)``, at rest, and the engine is too
weak to climb the right hill directly.

How ours differs from gymnasium's: one class for both action spaces (``continuous``); the flag is
at ``x >= 0.5`` (with velocity >= 0) in both, where ``MountainCarContinuous`` uses 0.45; the reward
is sparse in both — ``1 - 0.9 * t / max_steps`` on reaching the flag, 0 on every other step — with
no -1 per step (discrete) and no action cost (continuous); the env truncates itself at
``max_steps`` (500 discrete, 999 continuous); and a continuous action outside ``[-1, 1]`` is an
error, not silently clipped.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import spaces

from .core import AlignEnv, State

PUSH_LEFT, NO_PUSH, PUSH_RIGHT = range(3)
ACTION_NAMES = ("push left", "no push", "push right")

MIN_POSITION, MAX_POSITION = -1.2, 0.6
MAX_SPEED = 0.07
GOAL_POSITION, GOAL_VELOCITY = 0.5, 0.0
FORCE = 0.001  # discrete engine
POWER = 0.0015  # continuous engine, times the action in [-1, 1]
GRAVITY = 0.0025


def track_height(position: float) -> float:
    """Height of the track at ``position``, in [0.1, 1.0] (gymnasium's drawing of ``sin(3x)``)."""
    return math.sin(3.0 * position) * 0.45 + 0.55


def energy_progress(position: float, velocity: float, goal_position: float) -> float:
    """Mechanical energy of the car, scaled so 0 is at rest in the valley and 1 at rest on the flag.

    The dynamics ``v' = v + a - GRAVITY * cos(3x)``, ``x' = x + v'`` are, per step, those of a
    unit mass in the potential ``GRAVITY / 3 * sin(3x)``, so ``E = GRAVITY / 3 * sin(3x) + v^2 / 2``
    is conserved when coasting (up to the discretisation). Dividing ``E - E(valley floor)`` by
    ``E(flag, v=0) - E(valley floor)`` gives ``(sin(3x) + 1 + 1.5 v^2 / GRAVITY) /
    (sin(3 goal) + 1)``. Not clipped: a fast car can exceed 1 (at most about 2.5).
    """
    sin_x = math.sin(3.0 * position)
    kinetic = 1.5 * velocity * velocity / GRAVITY  # v^2 / 2 in units of GRAVITY / 3
    return (sin_x + 1.0 + kinetic) / (math.sin(3.0 * goal_position) + 1.0)


def reference_potential(state: State) -> float:
    """Energy progress in [0, 1]: mechanical energy scaled so the flag's (at rest) is 1, capped there.

    Energy, not position, is what the car must build up: rocking left away from the flag raises it.
    See :func:`energy_progress` for the formula.
    """
    return min(energy_progress(state["position"], state["velocity"], state["goal_position"]), 1.0)


def distance_potential(state: State) -> float:
    """Minus the distance along x to the flag, over the track length 1.8 (0 at or past the flag)."""
    return -max(state["goal_position"] - state["position"], 0.0) / (MAX_POSITION - MIN_POSITION)


class MountainCarSparseEnv(AlignEnv):
    """A car in a valley must reach the flag on the right hill by rocking back and forth.

    Observation: ``Box([-1.2, -0.07], [0.6, 0.07])`` — position and velocity. Actions:
    ``Discrete(3)`` — push left, no push, push right — or, with ``continuous=True``,
    ``Box(-1, 1, (1,))`` — the engine force.

    >>> from align_gym.envs.mountaincar import MountainCarSparseEnv
    >>> env = MountainCarSparseEnv()
    >>> obs, info = env.reset(seed=0)
    >>> info["caption"]
    'Your car rests in a valley between two hills. The flag stands on top of the right hill.'
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}
    task = (
        "Drive the car up the right hill to the flag. The engine is too weak to climb straight up, "
        "so rock back and forth between the hills to build up speed."
    )
    state_schema = {
        "position": "car position along the track, from -1.2 (left end) to 0.6 (right end)",
        "velocity": "car velocity, from -0.07 to 0.07 (positive = rightwards)",
        "height": "track height at the car, sin(3 * position) * 0.45 + 0.55, in [0.1, 1.0]",
        "steps": "steps taken in this episode",
        "goal_position": "position of the flag (reached at or beyond it, moving right or at rest)",
    }
    potentials = {"reference": reference_potential, "distance": distance_potential}

    def __init__(
        self, continuous: bool = False, max_steps: int | None = None, render_mode: str | None = None
    ):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be a positive int, got {max_steps}")
        self.continuous = continuous
        self.max_steps = max_steps or (999 if continuous else 500)
        self.render_mode = render_mode
        self.observation_space = spaces.Box(
            np.array([MIN_POSITION, -MAX_SPEED], dtype=np.float32),
            np.array([MAX_POSITION, MAX_SPEED], dtype=np.float32),
            dtype=np.float32,
        )
        if continuous:
            self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        else:
            self.action_space = spaces.Discrete(3)
        self.position, self.velocity = -0.5, 0.0
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.position = float(self.np_random.uniform(-0.6, -0.4))
        self.velocity = 0.0
        self._steps = 0
        caption = "Your car rests in a valley between two hills. The flag stands on top of the right hill."
        return self._obs(), self._info(caption)

    def step(self, action):
        force = self._force(action)
        old_position, old_height = self.position, track_height(self.position)
        self._steps += 1
        velocity = self.velocity + force - math.cos(3.0 * self.position) * GRAVITY
        velocity = min(max(velocity, -MAX_SPEED), MAX_SPEED)
        position = min(max(self.position + velocity, MIN_POSITION), MAX_POSITION)
        hit_left = position == MIN_POSITION and velocity < 0
        if hit_left:
            velocity = 0.0
        self.position, self.velocity = position, velocity

        terminated = position >= GOAL_POSITION and velocity >= GOAL_VELOCITY
        reward = 1.0 - 0.9 * self._steps / self.max_steps if terminated else 0.0
        truncated = not terminated and self._steps >= self.max_steps
        if terminated:
            caption = "You reach the flag."
        else:
            caption = self._caption(action, old_position, old_height, hit_left)
        success = terminated if (terminated or truncated) else None
        return self._obs(), reward, terminated, truncated, self._info(caption, success)

    def _force(self, action) -> float:
        """Check ``action`` and return the velocity change the engine gives."""
        if self.continuous:
            try:
                # Cast first: Box.contains rejects float64 arrays and warns on lists.
                push = np.asarray(action, dtype=np.float32)
            except (TypeError, ValueError):
                push = None
            if push is None or not self.action_space.contains(push):
                raise ValueError(f"invalid action {action!r}: expected a float array of shape (1,) in [-1, 1]")
            return float(np.clip(push[0], -1.0, 1.0)) * POWER
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r}: expected an int in [0, 3) ({', '.join(ACTION_NAMES)})")
        return (int(action) - 1) * FORCE

    def _caption(self, action, old_position: float, old_height: float, hit_left: bool) -> str:
        if self.continuous:
            push = float(np.asarray(action).reshape(-1)[0])
            side = "right" if push > 0 else "left"
            if abs(push) < 0.05:
                verb = "You let the car coast"
            elif abs(push) < 0.5:
                verb = f"You push gently {side}"
            else:
                verb = f"You push {side}"
        else:
            verb = ("You push left", "You let the car coast", "You push right")[int(action)]
        if hit_left:
            return f"{verb} and bump into the left end of the track, stopping dead."
        moved = self.position - old_position
        if abs(moved) < 1e-4:
            return f"{verb} and barely move."
        slope = "up" if track_height(self.position) > old_height else "down"
        side = "right" if moved > 0 else "left"
        return f"{verb} and roll {slope} the slope to the {side}."

    def _obs(self) -> np.ndarray:
        obs = np.array([self.position, self.velocity], dtype=np.float32)
        return np.clip(obs, self.observation_space.low, self.observation_space.high)

    def state_dict(self) -> State:
        return {
            "position": float(self.position),
            "velocity": float(self.velocity),
            "height": track_height(self.position),
            "steps": self._steps,
            "goal_position": GOAL_POSITION,
        }

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        width, height, top, bottom = 120, 80, 14, 4
        image = np.zeros((height, width, 3), dtype=np.uint8)
        image[:] = (20, 24, 48)  # sky

        def to_pixel(position: float) -> tuple[int, int]:
            col = round((position - MIN_POSITION) / (MAX_POSITION - MIN_POSITION) * (width - 1))
            row = round((1.0 - track_height(position)) * (height - top - bottom) + top)
            return row, col

        for col in range(width):
            position = MIN_POSITION + col / (width - 1) * (MAX_POSITION - MIN_POSITION)
            row, _ = to_pixel(position)
            image[row:, col] = (110, 80, 40)  # ground
        flag_row, flag_col = to_pixel(GOAL_POSITION)
        image[flag_row - 12:flag_row, flag_col] = (230, 230, 230)
        image[flag_row - 12:flag_row - 8, flag_col + 1:flag_col + 6] = (240, 200, 30)
        car_row, car_col = to_pixel(self.position)
        image[max(car_row - 5, 0):car_row, max(car_col - 3, 0):car_col + 3] = (220, 40, 40)
        return image
