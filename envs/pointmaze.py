"""PointMaze: steer a point mass round a wall to the goal. Reward only at the goal.

A numpy re-design of the U-maze of D4RL's ``maze2d-umaze`` and Gymnasium-Robotics' ``PointMaze_UMaze``
(Fu et al. 2020) without MuJoCo: the maze is the unit square with one wall, ``x in [0, 0.7]``,
``y in [0.45, 0.55]``, attached to the west side. The point starts south of the wall near
``(0.15, 0.2)`` and the goal circle (radius 0.08) is north of it at ``(0.15, 0.8)``, so the straight
line to the goal runs into the wall: a potential that rewards straight-line closeness leads into a
dead end, and the way round is through the gap east of the wall.

How ours differs: the point is a damped double integrator, ``v' = 0.85 v + 0.02 a`` with the speed
capped at 0.05 per step, ``p' = p + v'``, instead of a MuJoCo ball; a move into the wall or out of
the square stops at the boundary on that axis (x first, then y) and zeroes that velocity
component; the goal is fixed; and the reward is sparse, ``1 - 0.9 * t / max_steps`` on entering
the goal circle (which ends the episode), 0 on every other step.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium import spaces

from .core import AlignEnv, State

WALL = (0.0, 0.45, 0.7, 0.55)  # x_min, y_min, x_max, y_max
START = (0.15, 0.2)
START_JITTER = 0.03
GOAL = (0.15, 0.8)
GOAL_RADIUS = 0.08
DAMPING, ACCEL, MAX_SPEED = 0.85, 0.02, 0.05
CORNER_MARGIN = 0.01  # the path nodes sit this far outside the wall's free corners
# Both potentials divide by this: a little more than the longest shortest path to the goal
# (about 1.54, from the south-west corner round the wall), so they lie in about [-1, 0].
DISTANCE_SCALE = 1.6

_COMPASS = ("east", "north-east", "north", "north-west", "west", "south-west", "south", "south-east")


def _inside_wall(x: float, y: float) -> bool:
    """Whether ``(x, y)`` is inside the wall; its north, south and east faces are free space.

    The west face lies on the square's west side, so it is solid: a point sliding down that side
    must not slip into the wall.
    """
    _, y_min, x_max, y_max = WALL
    return x < x_max and y_min < y < y_max


def segment_hits_wall(ax: float, ay: float, bx: float, by: float) -> bool:
    """Whether the segment from a to b passes through the wall's interior (touching is allowed).

    Liang-Barsky clipping gives the part ``[t0, t1]`` of the segment inside the closed rectangle;
    that part is a chord of a convex polygon, so it meets the interior iff it has positive length
    and its midpoint is strictly inside (a chord whose midpoint is on the boundary lies on a side).
    """
    x_min, y_min, x_max, y_max = WALL
    t0, t1 = 0.0, 1.0
    for start, delta, low, high in ((ax, bx - ax, x_min, x_max), (ay, by - ay, y_min, y_max)):
        if delta == 0.0:
            if not low <= start <= high:
                return False
            continue
        ta, tb = (low - start) / delta, (high - start) / delta
        t0, t1 = max(t0, min(ta, tb)), min(t1, max(ta, tb))
        if t0 >= t1:
            return False
    t = 0.5 * (t0 + t1)
    return _inside_wall(ax + t * (bx - ax), ay + t * (by - ay))


def geodesic_distance(x: float, y: float, goal_x: float, goal_y: float) -> float:
    """Length of the shortest path from (x, y) to the goal that does not cross the wall.

    With one convex obstacle the shortest path bends only at the obstacle's corners, and this
    wall's west corners lie on the square's side, so a visibility graph over {point, the wall's two
    east corners (pushed ``CORNER_MARGIN`` outwards), goal} and Dijkstra on its four nodes is exact
    (up to the margin).
    """
    _, y_min, x_max, y_max = WALL
    nodes = [
        (x, y),
        (x_max + CORNER_MARGIN, y_min - CORNER_MARGIN),
        (x_max + CORNER_MARGIN, y_max + CORNER_MARGIN),
        (goal_x, goal_y),
    ]
    n = len(nodes)
    dist = [math.inf] * n
    dist[0] = 0.0
    done = [False] * n
    for _ in range(n):
        i = min((k for k in range(n) if not done[k]), key=dist.__getitem__)
        if dist[i] == math.inf:
            break
        done[i] = True
        for j in range(n):
            if done[j] or segment_hits_wall(*nodes[i], *nodes[j]):
                continue
            dist[j] = min(dist[j], dist[i] + math.dist(nodes[i], nodes[j]))
    return dist[-1]


def reference_potential(state: State) -> float:
    """Minus the wall-avoiding (geodesic) distance to the goal centre, over 1.6: about [-1, 0]."""
    return -geodesic_distance(state["x"], state["y"], state["goal_x"], state["goal_y"]) / DISTANCE_SCALE


def distance_potential(state: State) -> float:
    """Minus the straight-line distance to the goal centre, through the wall, over 1.6."""
    return -math.dist((state["x"], state["y"]), (state["goal_x"], state["goal_y"])) / DISTANCE_SCALE


class PointMazeEnv(AlignEnv):
    """A point mass in a U-shaped maze: start south of a wall, goal north of it, gap to the east.

    Observation: ``Box`` of ``[x, y, vx, vy]`` — position in ``[0, 1]^2`` (y points north),
    velocity in ``[-0.05, 0.05]^2``. Actions: ``Box(-1, 1, (2,))`` — acceleration along x and y.

    >>> from align_gym.envs.pointmaze import PointMazeEnv
    >>> env = PointMazeEnv()
    >>> obs, info = env.reset(seed=0)
    >>> info["caption"]
    'You are in the south of a square room. A wall runs east from its west side, stopping short of the east side; the goal lies north of the wall.'
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    task = (
        "Steer the point to the goal circle in the north-west of the maze. A wall lies between "
        "the start and the goal; the only way round it is the gap at its east end."
    )
    state_schema = {
        "x": "position along west-east, from 0 (west side) to 1 (east side)",
        "y": "position along south-north, from 0 (south side) to 1 (north side)",
        "vx": "velocity along x per step, from -0.05 to 0.05",
        "vy": "velocity along y per step, from -0.05 to 0.05",
        "goal_x": "x of the goal circle's centre (the goal is reached within 0.08 of it)",
        "goal_y": "y of the goal circle's centre",
        "steps": "steps taken in this episode",
    }
    potentials = {"reference": reference_potential, "distance": distance_potential}

    def __init__(self, max_steps: int = 300, render_mode: str | None = None):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be a positive int, got {max_steps}")
        self.max_steps = max_steps
        self.render_mode = render_mode
        self.observation_space = spaces.Box(
            np.array([0.0, 0.0, -MAX_SPEED, -MAX_SPEED], dtype=np.float32),
            np.array([1.0, 1.0, MAX_SPEED, MAX_SPEED], dtype=np.float32),
            dtype=np.float32,
        )
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.pos = np.array(START, dtype=np.float64)
        self.vel = np.zeros(2, dtype=np.float64)
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.pos = np.array(START) + self.np_random.uniform(-START_JITTER, START_JITTER, size=2)
        self.vel = np.zeros(2)
        self._steps = 0
        caption = (
            "You are in the south of a square room. A wall runs east from its west side, stopping "
            "short of the east side; the goal lies north of the wall."
        )
        return self._obs(), self._info(caption)

    def step(self, action):
        try:
            # Cast first: Box.contains rejects float64 arrays and warns on lists.
            accel = np.asarray(action, dtype=np.float32)
        except (TypeError, ValueError):
            accel = None
        if accel is None or not self.action_space.contains(accel):
            raise ValueError(f"invalid action {action!r}: expected a float array of shape (2,) in [-1, 1]")
        self._steps += 1
        old = self.pos.copy()
        vel = DAMPING * self.vel + ACCEL * accel.astype(np.float64)
        speed = float(np.hypot(*vel))
        if speed > MAX_SPEED:
            vel *= MAX_SPEED / speed
        self.vel = vel
        hit_wall, hit_edge = self._move()

        terminated = math.dist(self.pos, GOAL) <= GOAL_RADIUS
        reward = 1.0 - 0.9 * self._steps / self.max_steps if terminated else 0.0
        truncated = not terminated and self._steps >= self.max_steps
        if terminated:
            caption = "You reach the goal."
        else:
            caption = self._caption(self.pos - old, hit_wall, hit_edge)
        success = terminated if (terminated or truncated) else None
        return self._obs(), reward, terminated, truncated, self._info(caption, success)

    def _move(self) -> tuple[bool, bool]:
        """Move by the velocity, x then y, stopping at the wall or the square's side on each axis.

        The speed cap (0.05) is below the wall's thickness (0.1), so a step cannot jump over it.
        Returns whether the wall, and whether a side of the square, stopped a move.
        """
        x_min, y_min, x_max, y_max = WALL
        hit_wall = hit_edge = False
        for axis, (low, high) in enumerate(((x_min, x_max), (y_min, y_max))):
            new = self.pos.copy()
            new[axis] += self.vel[axis]
            if not 0.0 <= new[axis] <= 1.0:
                new[axis] = min(max(new[axis], 0.0), 1.0)
                self.vel[axis] = 0.0
                hit_edge = True
            if _inside_wall(*new):
                new[axis] = low if self.vel[axis] > 0 else high
                self.vel[axis] = 0.0
                hit_wall = True
            self.pos = new
        return hit_wall, hit_edge

    def _caption(self, moved: np.ndarray, hit_wall: bool, hit_edge: bool) -> str:
        distance = float(np.hypot(*moved))
        heading = _COMPASS[round(math.atan2(moved[1], moved[0]) / (math.pi / 4)) % 8]
        if hit_wall or hit_edge:
            obstacle = "the wall" if hit_wall else "the side of the maze"
            if distance < 1e-3:
                return f"You hit {obstacle}."
            return f"You hit {obstacle} and slide {heading}."
        if distance < 1e-3:
            return "You stay almost still."
        return f"You move {heading}."

    def _obs(self) -> np.ndarray:
        obs = np.concatenate([self.pos, self.vel]).astype(np.float32)
        return np.clip(obs, self.observation_space.low, self.observation_space.high)

    def state_dict(self) -> State:
        return {
            "x": float(self.pos[0]), "y": float(self.pos[1]),
            "vx": float(self.vel[0]), "vy": float(self.vel[1]),
            "goal_x": GOAL[0], "goal_y": GOAL[1],
            "steps": self._steps,
        }

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        n = 96
        centres = (np.arange(n) + 0.5) / n
        xs, ys = np.meshgrid(centres, centres[::-1])  # row 0 is the north side
        image = np.zeros((n, n, 3), dtype=np.uint8)
        image[:] = (30, 30, 30)
        x_min, y_min, x_max, y_max = WALL
        image[(xs >= x_min) & (xs <= x_max) & (ys >= y_min) & (ys <= y_max)] = (120, 120, 120)
        image[np.hypot(xs - GOAL[0], ys - GOAL[1]) <= GOAL_RADIUS] = (40, 200, 60)
        image[np.hypot(xs - self.pos[0], ys - self.pos[1]) <= 0.03] = (220, 40, 40)
        return image
