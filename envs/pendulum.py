"""Pendulum: swing a rod up from wherever it starts and balance it upright. A dense cost every step.

The classic swing-up task, written in numpy with the dynamics, observation, reward and start
distribution of gymnasium's ``Pendulum-v1``, so that returns compare one to one. It is the dense
task of credit assignment here: ``Align/Pendulum-Episodic-v0`` withholds its reward and pays the
episode's sum at the end (the delayed-reward setting of RUDDER, IRCR, RRD and LaRe).

Physics: a uniform rod of mass ``m = 1`` and length ``l = 1`` turns about one end under gravity
``g = 10``; its moment of inertia about the pivot is ``m l^2 / 3`` and its centre of mass is at
``l / 2``, so with ``theta`` the angle from upright and ``u`` the torque at the pivot

    theta_ddot = 3 g / (2 l) * sin(theta) + 3 / (m l^2) * u.

One step is a semi-implicit Euler step of ``dt = 0.05`` s: the new speed first (clipped to
``[-8, 8]`` rad/s), then the angle moved by the new speed. The torque is in ``[-2, 2]``: it can
hold the rod only within about 24 degrees of upright (``6 > 15 sin(theta)``), so it must swing it up.

Reward: ``-(theta^2 + 0.1 theta_dot^2 + 0.001 u^2)`` with ``theta`` normalised to ``[-pi, pi)``,
the cost of the state the step starts from and of the torque applied (as ``Pendulum-v1`` has it);
its three parts are in ``info["reward_parts"]``. It is at most 0 and at least about -16.3.
The episode is truncated after ``max_steps`` (200) steps; it never terminates.

How ours differs from gymnasium's: the task contract (task, captions, symbolic state, success,
potentials); a torque outside ``[-2, 2]`` is an error, not silently clipped; the env truncates
itself; ``reset`` takes ``options={"theta": ..., "theta_dot": ...}`` to start from a given state.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import spaces

from .core import AlignEnv, State

GRAVITY, MASS, LENGTH = 10.0, 1.0, 1.0
DT = 0.05
MAX_SPEED = 8.0
MAX_TORQUE = 2.0
MAX_STEPS = 200
UPRIGHT_ANGLE = 0.2  # rad (about 11.5 degrees): "upright" for success and captions
BALANCE_STEPS = 50  # success: upright for each of the last 50 steps of the episode
DIRECTIONS = ("straight up", "up and to the {}", "to the {}", "down and to the {}", "straight down")


def angle_from_upright(theta: float) -> float:
    """``theta`` wrapped to ``[-pi, pi)``: 0 is upright, +-pi hanging straight down."""
    return (theta + math.pi) % (2.0 * math.pi) - math.pi


def energy_progress(upright: float, theta_dot: float) -> float:
    """Mechanical energy of the rod, scaled so 0 is hanging at rest and 1 is upright at rest.

    With the angle from upright, ``E = (m l^2 / 6) theta_dot^2 + (m g l / 2) cos(theta)``
    (kinetic energy about the pivot plus the height of the centre of mass). Dividing
    ``E - E(down, at rest)`` by ``E(up, at rest) - E(down, at rest) = m g l`` gives
    ``(1 + cos(theta)) / 2 + l theta_dot^2 / (6 g)``. Gravity conserves it; only the torque (and
    the speed clip) changes it, so a swing-up must bring it to 1. At most about 2.07.
    """
    return (1.0 + upright) / 2.0 + LENGTH * theta_dot * theta_dot / (6.0 * GRAVITY)


def reference_potential(state: State) -> float:
    """How upright the rod is, less how far its energy is from that of resting upright, in [-1, 1].

    ``(1 + cos(theta)) / 2 - |e - 1|`` with ``e`` the :func:`energy_progress`: 1 only upright at
    rest, -1 hanging at rest. Below the upright energy it is ``cos(theta) + e_kin`` and above it
    ``1 - e_kin`` (``e_kin = theta_dot^2 / 60``), so pumping energy into a hanging rod raises it
    (the swing-up) and braking a rod that would fly over the top raises it too (the catch).
    """
    upright = state["upright"]
    return (1.0 + upright) / 2.0 - abs(energy_progress(upright, state["theta_dot"]) - 1.0)


def distance_potential(state: State) -> float:
    """Minus the angle from upright over pi, in [-1, 0]: 0 upright, -1 hanging straight down."""
    return -abs(state["theta"]) / math.pi


def direction(theta: float) -> str:
    """Where the rod points from the pivot, in words (eight sectors of 45 degrees)."""
    sector = min(round(abs(theta) / (math.pi / 4)), 4)
    return DIRECTIONS[sector].format("left" if theta > 0 else "right")


def off_upright(theta: float) -> str:
    """The angle from upright in words, to the nearest degree."""
    n = round(math.degrees(abs(theta)))
    return f"{n} degree{'' if n == 1 else 's'} from upright"


class PendulumEnv(AlignEnv):
    """A rod hangs from a pivot; turn it with a weak motor, swing it up and keep it upright.

    Observation: ``Box([-1, -1, -8], [1, 1, 8])`` — ``cos(theta)``, ``sin(theta)`` and the angular
    velocity, with ``theta`` the angle from upright (positive counterclockwise, the tip to the
    left). Action: ``Box(-2, 2, (1,))`` — the torque at the pivot (positive counterclockwise).
    Start: ``theta ~ U(-pi, pi)``, ``theta_dot ~ U(-1, 1)``.

    Success (``info["success"]``, on the last step): the rod is within ``UPRIGHT_ANGLE`` (0.2 rad,
    about 11.5 degrees) of upright after each of the episode's last ``BALANCE_STEPS`` (50) steps,
    i.e. ``state["balanced_steps"] >= 50`` at the end (all steps, if ``max_steps`` < 50). The
    episode is truncated, never terminated, so success comes with ``truncated=True``.

    Potentials (pure functions of ``info["state"]``): ``"reference"`` — upright-ness less the
    energy error, in [-1, 1] (:func:`reference_potential`); ``"distance"`` — minus the angle from
    upright over pi, in [-1, 0] (:func:`distance_potential`).

    >>> from align_gym.envs.pendulum import PendulumEnv
    >>> env = PendulumEnv()
    >>> obs, info = env.reset(seed=0, options={"theta": math.pi, "theta_dot": 0.0})
    >>> info["caption"]
    'The pendulum hangs straight down, 180 degrees from upright, at rest.'
    >>> obs, reward, terminated, truncated, info = env.step(np.array([2.0], dtype=np.float32))
    >>> info["caption"]
    'You push hard counterclockwise; the pendulum swings up and now points straight down, 179 degrees from upright.'
    >>> round(reward, 3), {name: round(cost, 3) for name, cost in info["reward_parts"].items()}
    (-9.874, {'angle': -9.87, 'velocity': -0.0, 'torque': -0.004})
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    task = (
        "Swing the pendulum up from wherever it starts and keep it balanced upright until time runs out. "
        "Every step costs its squared angle from upright, plus a little for speed and for torque; "
        "the motor is too weak to lift the pendulum straight up, so swing it back and forth first."
    )
    state_schema = {
        "theta": "angle from upright in radians, in [-pi, pi): 0 upright, +-pi hanging down, positive = tip to the left",
        "theta_dot": "angular velocity in rad/s, in [-8, 8] (positive = counterclockwise)",
        "torque": "torque applied on the last step, in [-2, 2] (positive = counterclockwise; 0 at reset)",
        "upright": "cos(theta): 1 upright, 0 horizontal, -1 hanging straight down",
        "balanced_steps": f"steps in a row, up to now, that ended within {UPRIGHT_ANGLE} rad of upright",
        "steps": "steps taken in this episode",
    }
    potentials = {"reference": reference_potential, "distance": distance_potential}

    def __init__(self, max_steps: int = MAX_STEPS, render_mode: str | None = None):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be a positive int, got {max_steps}")
        self.max_steps = max_steps
        self.render_mode = render_mode
        high = np.array([1.0, 1.0, MAX_SPEED], dtype=np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)
        self.action_space = spaces.Box(-MAX_TORQUE, MAX_TORQUE, shape=(1,), dtype=np.float32)
        self.theta, self.theta_dot, self.torque = math.pi, 0.0, 0.0  # theta unwrapped; state_dict wraps it
        self._balanced_steps = 0
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        theta, theta_dot = self.np_random.uniform(low=[-math.pi, -1.0], high=[math.pi, 1.0])
        options = options or {}
        unknown = set(options) - {"theta", "theta_dot"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}: Pendulum takes 'theta' and 'theta_dot'")
        self.theta = float(options.get("theta", theta))
        self.theta_dot = float(np.clip(options.get("theta_dot", theta_dot), -MAX_SPEED, MAX_SPEED))
        self.torque = 0.0
        self._balanced_steps = 0
        self._steps = 0
        theta = angle_from_upright(self.theta)
        verb = "hangs" if abs(theta) > 7 * math.pi / 8 else "points"
        if abs(self.theta_dot) < 0.05:
            motion = "at rest"
        else:
            speed = "slowly" if abs(self.theta_dot) < 2.0 else "fast"
            motion = f"turning {speed} " + ("counterclockwise" if self.theta_dot > 0 else "clockwise")
        caption = f"The pendulum {verb} {direction(theta)}, {off_upright(theta)}, {motion}."
        return self._obs(), self._info(caption)

    def step(self, action):
        torque = self._torque(action)
        theta, theta_dot = self.theta, self.theta_dot
        # The cost is of the state the step starts from, as in Pendulum-v1.
        parts = {
            "angle": -angle_from_upright(theta) ** 2,
            "velocity": -0.1 * theta_dot**2,
            "torque": -0.001 * torque**2,
        }
        reward = parts["angle"] + parts["velocity"] + parts["torque"]

        # The torque's term in float32, the action's dtype, as Pendulum-v1 computes it: near upright
        # the dynamics amplify any difference, and in float64 the two drift ~1e-4 apart in 200 steps.
        torque_term = float(np.float32(3.0 / (MASS * LENGTH**2)) * np.float32(torque))
        acceleration = 3.0 * GRAVITY / (2.0 * LENGTH) * np.sin(theta) + torque_term
        self.theta_dot = float(np.clip(theta_dot + acceleration * DT, -MAX_SPEED, MAX_SPEED))
        self.theta = theta + self.theta_dot * DT
        self.torque = torque
        self._steps += 1
        upright = abs(angle_from_upright(self.theta)) < UPRIGHT_ANGLE
        self._balanced_steps = self._balanced_steps + 1 if upright else 0

        truncated = self._steps >= self.max_steps
        caption = self._caption(torque, angle_from_upright(theta))
        success = None
        if truncated:
            success = self._balanced_steps >= min(BALANCE_STEPS, self.max_steps)
            caption += (f" Time is up: the pendulum stayed upright for the last {min(BALANCE_STEPS, self.max_steps)} steps."
                        if success else " Time is up.")
        info = self._info(caption, success)
        info["reward_parts"] = parts
        return self._obs(), reward, False, truncated, info

    def _torque(self, action) -> float:
        """Check ``action`` and return the torque as a float."""
        try:
            # Cast first: Box.contains rejects float64 arrays and warns on lists.
            torque = np.asarray(action, dtype=np.float32)
        except (TypeError, ValueError):
            torque = None
        if torque is None or not self.action_space.contains(torque):
            raise ValueError(
                f"invalid action {action!r}: expected a float array of shape (1,) in [-2, 2] (the torque)"
            )
        return float(torque[0])

    def _caption(self, torque: float, old_theta: float) -> str:
        side = "counterclockwise" if torque > 0 else "clockwise"
        if torque == 0.0:
            push = "You apply no torque"
        elif abs(torque) < 0.05:
            push = "You apply almost no torque"
        elif abs(torque) < 1.0:
            push = f"You push gently {side}"
        else:
            push = f"You push hard {side}"
        theta = angle_from_upright(self.theta)
        if abs(theta) < UPRIGHT_ANGLE and abs(old_theta) < UPRIGHT_ANGLE:
            motion = "balances upright"
        elif old_theta * theta < 0:  # one step moves at most 0.4 rad, so the crossing is clear
            motion = "swings over the top" if abs(old_theta) + abs(theta) < math.pi else "swings through the bottom"
        elif abs(abs(theta) - abs(old_theta)) < 1e-3:
            motion = "hardly moves"
        else:
            motion = "swings up" if abs(theta) < abs(old_theta) else "swings down"
        return f"{push}; the pendulum {motion} and now points {direction(theta)}, {off_upright(theta)}."

    def _obs(self) -> np.ndarray:
        return np.array([math.cos(self.theta), math.sin(self.theta), self.theta_dot], dtype=np.float32)

    def state_dict(self) -> State:
        theta = angle_from_upright(self.theta)
        return {
            "theta": theta,
            "theta_dot": float(self.theta_dot),
            "torque": float(self.torque),
            "upright": math.cos(theta),
            "balanced_steps": self._balanced_steps,
            "steps": self._steps,
        }

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        size, pivot, rod = 80, 40, 30
        image = np.zeros((size, size, 3), dtype=np.uint8)
        image[:] = (235, 235, 235)
        theta = angle_from_upright(self.theta)
        color = (40, 160, 60) if abs(theta) < UPRIGHT_ANGLE else (200, 60, 50)
        for along in np.linspace(0.0, 1.0, 4 * rod):  # the rod: tip at (-sin, cos), y up
            row = round(pivot - along * rod * math.cos(theta))
            col = round(pivot - along * rod * math.sin(theta))
            image[row - 1:row + 2, col - 1:col + 2] = color
        image[pivot - 2:pivot + 3, pivot - 2:pivot + 3] = (30, 30, 30)
        # the torque of the last step: a bar along the bottom, rightwards for counterclockwise
        length = round(abs(self.torque) / MAX_TORQUE * (size // 2 - 4))
        if length:
            cols = slice(pivot, pivot + length) if self.torque > 0 else slice(pivot - length, pivot)
            image[size - 6:size - 3, cols] = (60, 90, 200)
        return image
