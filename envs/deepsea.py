"""DeepSea: dive down an N x N grid; only always going right finds the treasure.

bsuite's Deep Sea (Osband et al. 2019, "Behaviour Suite for Reinforcement Learning"; Osband et al.
2019, "Deep Exploration via Randomized Value Functions"), deterministic version. The diver starts
at the top-left cell and sinks one row per step; each step it moves one column left or right
(clipped at the sides). Moving right costs ``0.01 / N``; moving left is free. The episode ends
after the step that leaves the last row, exactly ``N`` steps after the start, and that step pays
``+1`` more if it is a move right from the bottom-right cell: the one policy that finds the
treasure is "always right", which dithering exploration finds with probability ``2^-N``.

How ours differs from bsuite: the action mapping is fixed (action 1 is right, 0 is left, in every
cell) instead of a random per-cell permutation, so policies and tables are easy to read; the
treasure is paid only on the final step, from ``(N-1, N-1)`` (bsuite pays it for any right move in
the last column, which matters only for starts off the top row, see ``reset(options=...)``); there
is no stochastic variant; and the observation is the one-hot grid flattened to ``N * N`` values
(all zeros after the last step). For exact dynamic programming the env also exposes its
tables — :meth:`DeepSeaEnv.transition_table`, :meth:`DeepSeaEnv.reward_table`,
:meth:`DeepSeaEnv.terminal_mask` — and :func:`value_iteration` solves them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from .core import AlignEnv, State

LEFT, RIGHT = 0, 1
ACTION_NAMES = ("left", "right")
MOVE_COST = 0.01  # bsuite's unscaled cost of a right move; each costs MOVE_COST / size
TREASURE = 1.0


def reference_potential(state: State) -> float:
    """Progress down a path that can still reach the treasure: ``(row + 1) / N`` if ``col >= row``.

    A right move gains at most one column per row, so the treasure cell ``(N-1, N-1)`` is still
    reachable iff ``col >= row`` (from the usual start ``(0, 0)``: iff the diver has only gone
    right, staying on the diagonal). Off that set the potential is 0, and it is 0 after the last
    step (``row == N``), so the potential never rewards a lost cause.
    """
    row, col, size = state["row"], state["col"], state["size"]
    if row >= size or col < row:
        return 0.0
    return (row + 1) / size


def distance_potential(state: State) -> float:
    """Minus the Manhattan distance to the treasure cell ``(N-1, N-1)``, over ``2N``."""
    size = state["size"]
    rows_left = max(size - 1 - state["row"], 0)
    return -(rows_left + (size - 1 - state["col"])) / (2.0 * size)


def value_iteration(
    P: np.ndarray,
    R: np.ndarray,
    gamma: float,
    terminal: np.ndarray | None = None,
    tol: float = 1e-10,
    max_iterations: int = 100_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Optimal values of a tabular MDP by value iteration.

    ``P`` has shape ``(S, A, S)`` (rows sum to 1), ``R`` shape ``(S, A)`` (expected reward of taking
    ``a`` in ``s``); ``terminal`` is a boolean mask of absorbing states, whose value (and Q) is 0.
    Iterates ``Q = R + gamma * P V``, ``V = max_a Q`` until ``V`` changes by less than ``tol``.
    Returns ``(V, Q)`` with shapes ``(S,)`` and ``(S, A)``. ``gamma = 1`` is fine when every policy
    reaches a terminal state (as in DeepSea); otherwise it may not converge, and after
    ``max_iterations`` sweeps this raises ``RuntimeError``.
    """
    P, R = np.asarray(P, dtype=np.float64), np.asarray(R, dtype=np.float64)
    if P.ndim != 3 or P.shape[0] != P.shape[2] or R.shape != P.shape[:2]:
        raise ValueError(f"expected P of shape (S, A, S) and R of shape (S, A), got {P.shape} and {R.shape}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    terminal = np.zeros(P.shape[0], dtype=bool) if terminal is None else np.asarray(terminal, dtype=bool)
    if terminal.shape != (P.shape[0],):
        raise ValueError(f"terminal must be a bool mask of shape ({P.shape[0]},), got {terminal.shape}")
    V = np.zeros(P.shape[0])
    for _ in range(max_iterations):
        Q = R + gamma * (P @ V)
        Q[terminal] = 0.0
        V_new = Q.max(axis=1)
        if np.max(np.abs(V_new - V)) < tol:
            return V_new, Q
        V = V_new
    raise RuntimeError(f"value iteration did not converge to tol={tol} in {max_iterations} sweeps (gamma={gamma})")


class DeepSeaEnv(AlignEnv):
    """An N x N sea: sink one row per step, moving left (free) or right (small cost).

    Observation: ``Box(0, 1, (N * N,))`` — one-hot of the cell ``row * N + col`` (all zeros after
    the last step). Actions: ``Discrete(2)`` — 0 left, 1 right. ``reset(options={"start": (row,
    col)})`` starts from any cell.

    >>> from align_gym.envs.deepsea import DeepSeaEnv, value_iteration
    >>> env = DeepSeaEnv(size=5)
    >>> obs, info = env.reset(seed=0)
    >>> info["caption"]
    'You float at the top-left of a deep sea, 5 rows deep. A treasure lies at the bottom-right corner.'
    >>> V, Q = value_iteration(env.transition_table(), env.reward_table(), 1.0, env.terminal_mask())
    >>> round(float(V[0]), 3)
    0.99
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    task = (
        "Dive to the bottom of the sea and find the treasure in the bottom-right corner. Each move "
        "right costs a little and moving left is free, but only going right every step reaches it."
    )
    state_schema = {
        "row": "depth: row of the diver, 0 (top) to size - 1 (bottom); equals size once the episode has ended",
        "col": "column of the diver, 0 (left) to size - 1 (right)",
        "size": "side N of the grid (the episode lasts N steps from the top row)",
        "steps": "steps taken in this episode",
    }
    potentials = {"reference": reference_potential, "distance": distance_potential}

    def __init__(self, size: int = 10, render_mode: str | None = None):
        if size < 1:
            raise ValueError(f"DeepSea needs size >= 1, got {size}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.size = size
        self.max_steps = size  # every episode ends by itself after at most `size` steps
        self.render_mode = render_mode
        self.n_states = size * size + 1  # cell row * size + col, then the absorbing terminal
        self.observation_space = spaces.Box(0.0, 1.0, shape=(size * size,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.row = self.col = 0
        self.treasure = False
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        n = self.size
        start = (options or {}).get("start", (0, 0))
        try:
            row, col = (int(v) for v in start)
        except (TypeError, ValueError):
            raise ValueError(f"options['start'] must be a (row, col) pair, got {start!r}") from None
        if not (0 <= row < n and 0 <= col < n):
            raise ValueError(f"options['start'] must be a cell with 0 <= row, col < {n}, got {start!r}")
        self.row, self.col = row, col
        self.treasure = False
        self._steps = 0
        if (row, col) == (0, 0):
            caption = f"You float at the top-left of a deep sea, {n} rows deep. A treasure lies at the bottom-right corner."
        else:
            caption = (
                f"You float at depth {row} of {n - 1}, column {col} of {n - 1}, in a deep sea. "
                "A treasure lies at the bottom-right corner."
            )
        return self._obs(), self._info(caption)

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r}: expected an int in [0, 2) (0 = left, 1 = right)")
        if self.row >= self.size:
            raise RuntimeError("the episode has ended: call reset() before step()")
        n, right = self.size, int(action) == RIGHT
        self._steps += 1
        reward = -MOVE_COST / n if right else 0.0
        if right and (self.row, self.col) == (n - 1, n - 1):
            reward += TREASURE
            self.treasure = True
        old_col = self.col
        self.col = min(self.col + 1, n - 1) if right else max(self.col - 1, 0)
        self.row += 1
        terminated = self.row >= n
        caption = self._caption(right, old_col, terminated)
        success = self.treasure if terminated else None
        return self._obs(), reward, terminated, False, self._info(caption, success)

    def _caption(self, right: bool, old_col: int, terminated: bool) -> str:
        if terminated and self.treasure:
            return "You swim right off the bottom-right corner and find the treasure."
        if terminated:
            return "You sink past the bottom row; there is no treasure here."
        side = "right" if right else "left"
        if self.col == old_col:
            return f"You try to swim {side} but meet the {side} edge, and sink one row straight down."
        return f"You swim {side} and sink one row."

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.size * self.size, dtype=np.float32)
        if self.row < self.size:
            obs[self.row * self.size + self.col] = 1.0
        return obs

    def state_dict(self) -> State:
        return {"row": self.row, "col": self.col, "size": self.size, "steps": self._steps}

    # Tabular API, for exact dynamic programming (state index: row * size + col; last = terminal).

    def state_index(self, state: State) -> int:
        """Index in the tables of a state dict: ``row * size + col``, or ``size * size`` if ended."""
        n = state["size"]
        if state["row"] >= n:
            return n * n
        return state["row"] * n + state["col"]

    def transition_table(self) -> np.ndarray:
        """``P[s, a, s']``, shape ``(S, 2, S)``: deterministic; the terminal state loops on itself."""
        n = self.size
        P = np.zeros((self.n_states, 2, self.n_states))
        terminal = n * n
        for row in range(n):
            for col in range(n):
                s = row * n + col
                for action, next_col in ((LEFT, max(col - 1, 0)), (RIGHT, min(col + 1, n - 1))):
                    P[s, action, terminal if row == n - 1 else (row + 1) * n + next_col] = 1.0
        P[terminal, :, terminal] = 1.0
        return P

    def reward_table(self) -> np.ndarray:
        """``R[s, a]``, shape ``(S, 2)``: the reward ``step`` pays for action ``a`` in state ``s``."""
        n = self.size
        R = np.zeros((self.n_states, 2))
        R[: n * n, RIGHT] = -MOVE_COST / n
        R[n * n - 1, RIGHT] += TREASURE  # right from (N-1, N-1)
        return R

    def terminal_mask(self) -> np.ndarray:
        """Boolean mask of shape ``(S,)``: True only for the absorbing terminal state."""
        mask = np.zeros(self.n_states, dtype=bool)
        mask[-1] = True
        return mask

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        n, px = self.size, max(4, 96 // self.size)
        grid = np.zeros((n, n, 3), dtype=np.uint8)
        grid[:] = (20, 40, 90)  # water
        grid[np.arange(n), np.arange(n)] = (30, 60, 120)  # the all-right path
        grid[n - 1, n - 1] = (60, 60, 60) if self.treasure else (240, 200, 30)
        if self.row < n:
            grid[self.row, self.col] = (220, 40, 40)
        return np.kron(grid, np.ones((px, px, 1), dtype=np.uint8))
