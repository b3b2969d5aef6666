"""MiniHack tasks (Samvelyan et al. 2021) under the Align task contract.

:class:`MiniHackEnv` wraps one MiniHack env (the ``[minihack]`` extra: ``pip install
"align-gym[minihack]"``) and adds what every Align env offers:

- a caption of events: the NetHack message of this step, then what the adapter saw happen (the
  key picked up, a door opening, what has just come next to the agent: "You pick up the key.",
  "The door opens.", "You come next to a closed door."), the empty string when nothing happened;
  what stands next to the agent persists in ``info["surroundings"]`` ("Next to you: a closed
  door, water."; the directions are in the state);
- the task in words, per task;
- a symbolic state read from the map and the inventory: position, whether a key is held, what is
  adjacent, and the distance to the staircase, the key and a closed door once seen (the adapter
  remembers where the key and the closed doors were seen, so that the key under the agent, which
  the map shows as the agent, still counts as there);
- success from NetHack's end status (reaching the staircase down), death as a failed end, and
  MiniHack's step limit as a truncation (MiniHack itself reports it as a termination, which would
  make value bootstrapping wrong at the cut);
- an observation SB3's ``MultiInputPolicy`` takes: ``crop``, the 9x9 map around the agent as one
  of :data:`N_CLASSES` symbol classes per cell (SB3 one-hot encodes a ``MultiDiscrete``), and
  ``stats``, the agent's position in the map and whether it holds a key, in [0, 1];
- with ``observation="flat"`` (the ``-Flat-v0`` ids), the same content as one ``Box`` of floats
  in [0, 1] (the crop one-hot, then the stats), for an MLP over a flat vector: CleanRL's
  ``ppo.py`` and any loop that reads ``observation_space.shape``.

Seeding: NetHack ignores gymnasium's seed, so each reset draws NetHack's core, display and
level-generator seeds from the env's own generator (``self.np_random``): the same seed and
actions give the same episodes. Rooms 5x5 and 15x15 are fixed layouts in MiniHack (start
top-left, staircase bottom-right); the other tasks draw a new layout per episode.

>>> import gymnasium as gym, align_gym
>>> env = gym.make("Align/MiniHack-Room-5x5-v0")
>>> obs, info = env.reset(seed=0)
>>> sorted(obs), info["state"]["stairs_dist"]
(['crop', 'stats'], 4)
"""

from __future__ import annotations

import signal
import threading
import warnings
from typing import Any

import numpy as np
from gymnasium import spaces

from .core import AlignEnv, State

# Align task name -> (MiniHack id, the task in words).
TASKS: dict[str, tuple[str, str]] = {
    "Room-5x5": ("MiniHack-Room-5x5-v0",
                 "Walk to the staircase down (>) in the corner of a small lit room."),
    "Room-15x15": ("MiniHack-Room-15x15-v0",
                   "Walk to the staircase down (>) across a large lit room."),
    "KeyRoom-S5": ("MiniHack-KeyRoom-S5-v0",
                   "Find the key and pick it up, unlock the locked door of the inner room with it "
                   "(apply the key next to the door), then walk to the staircase down (>) inside."),
    "KeyRoom-S15": ("MiniHack-KeyRoom-S15-v0",
                    "Find the key and pick it up, unlock the locked door of the inner room with it "
                    "(apply the key next to the door), then walk to the staircase down (>) inside a large dark room."),
    "MazeWalk-9x9": ("MiniHack-MazeWalk-9x9-v0",
                     "Find your way through a dark maze to the staircase down (>)."),
    "MazeWalk-15x15": ("MiniHack-MazeWalk-15x15-v0",
                       "Find your way through a large dark maze to the staircase down (>)."),
    "River": ("MiniHack-River-v0",
              "Cross the river to reach the staircase down (>): you cannot swim, so push "
              "boulders (`) into the water to build a path."),
}

# Map symbols -> classes, the observation's vocabulary (and, for the notable ones, their names).
_CLASS_CHARS = [
    " ",            # 0: not seen (dark or unexplored)
    ".",            # 1: floor or doorway
    "#",            # 2: corridor, tree or sink
    "|-",           # 3: wall or open door
    "+",            # 4: closed door (or a spellbook)
    ">",            # 5: staircase down
    "<",            # 6: staircase up
    "@",            # 7: the agent or a human
    "}",            # 8: water or lava
    "`0",           # 9: boulder
    "(",            # 10: tool (a key is one)
    ")[%?/=!\"*$",  # 11: other object
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ&';:",  # 12: monster
]
N_CLASSES = len(_CLASS_CHARS) + 1  # the last class: any other symbol (trap, fountain, altar...)
_CLASS_OF = np.full(256, N_CLASSES - 1, dtype=np.int64)
for _cls, _chars in enumerate(_CLASS_CHARS):
    for _char in _chars:
        _CLASS_OF[ord(_char)] = _cls
_NOTABLE = {4: "a closed door", 5: "the staircase down", 6: "the staircase up", 8: "water",
            9: "a boulder", 10: "a tool", 11: "an object", 12: "a monster", N_CLASSES - 1: "something"}
# (row offset, column offset) -> compass name, in NetHack's order.
_DIRECTIONS = {(-1, 0): "north", (-1, 1): "north-east", (0, 1): "east", (1, 1): "south-east",
               (1, 0): "south", (1, -1): "south-west", (0, -1): "west", (-1, -1): "north-west"}
CROP = 9
FAR = 40  # distances are capped here in the potentials (the map is 79 x 21)
_ABORTED, _SUCCESS = -1, 2  # NetHack end statuses
_PICKED_UP, _DOOR_OPENS, _REACHED = "You pick up the key.", "The door opens.", "You reach the staircase down."


def reference_potential(state: State) -> float:
    """Task progress in [0, 1]: stage (key, door, staircase) plus closeness to the stage's target.

    A task with a key is at the key stage until the key is held and at the door stage until a door
    has opened; tasks without one start at the staircase stage. A target not yet seen counts as
    far away.
    """
    if state["needs_key"] and not state["holds_key"]:
        stage, dist = 0, state["key_dist"]
    elif state["needs_key"] and not state["door_opened"]:
        stage, dist = 1, state["door_dist"]
    else:
        stage, dist = 2, state["stairs_dist"]
    dist = dist if dist >= 0 else FAR
    return (stage + 1.0 - min(dist / FAR, 1.0)) / 3.0


def distance_potential(state: State) -> float:
    """Minus the (king-move) distance to the staircase when in sight, -1 when not."""
    return -min(state["stairs_dist"] / FAR, 1.0) if state["stairs_dist"] >= 0 else -1.0


def _chebyshev(grid: np.ndarray, char: str, y: int, x: int) -> int:
    ys, xs = np.nonzero(grid == ord(char))
    if len(ys) == 0:
        return -1
    return int(np.min(np.maximum(np.abs(ys - y), np.abs(xs - x))))


def _nearest(cells: set[tuple[int, int]], y: int, x: int) -> int:
    """King-move distance from (y, x) to the nearest of the few remembered ``cells`` ((row,
    column) pairs), -1 if none."""
    return min((max(abs(int(cy) - y), abs(int(cx) - x)) for cy, cx in cells), default=-1)


def subgoal_captions(state: State) -> list[str]:
    """The captions that achieving each remaining subgoal produces (ELLM's oracle suggests them):
    the key picked up and a door opened while there is a key to take or a door to open, and the
    staircase reached."""
    goals = []
    if state["needs_key"] and not state["holds_key"]:
        goals.append(_PICKED_UP)
    if state["needs_key"] and not state["door_opened"]:
        goals.append(_DOOR_OPENS)
    return goals + [_REACHED]


def _restore_signals() -> None:
    """Undo what NetHack does to the whole process when a game ends: it sets SIGHUP and SIGXCPU to
    be ignored, behind Python's back (so a hang-up would not stop training, and child processes,
    such as the sandbox's workers, would inherit an ignored SIGXCPU and outlive their CPU limit).
    Python's own record of the handlers is still right: reinstall it."""
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGHUP", "SIGXCPU"):
            number = getattr(signal, name, None)
            handler = signal.getsignal(number) if number is not None else None
            if handler is not None:
                signal.signal(number, handler)


def _text(row: np.ndarray) -> str:
    return bytes(row).decode("latin-1").split("\x00", 1)[0].strip()


class MiniHackEnv(AlignEnv):
    """A MiniHack task with a caption, a symbolic state and a policy-ready observation.

    Args:
        name: a key of :data:`TASKS` (``"KeyRoom-S5"``...).
        max_steps: the step limit (MiniHack's own by default: 100 for Room-5x5, 200 for
            KeyRoom-S5 and MazeWalk-9x9, 300 for Room-15x15, 350 for River).
        render_mode: ``None`` or ``"ansi"`` (the map as text).
    """

    task = "Reach the staircase down in a MiniHack level."  # each instance states its own task
    metadata = {"render_modes": ["ansi"], "render_fps": 4}
    state_schema = {
        "x": "the agent's column in the 79 x 21 map",
        "y": "the agent's row in the map",
        "holds_key": "whether a key is in the inventory",
        "stairs_dist": "king-move distance to the staircase down, -1 when not in sight",
        "key_dist": "king-move distance to where a tool (the key) was seen and still is, -1 when none",
        "door_dist": "king-move distance to a closed door seen in this episode, -1 when none",
        "door_opened": "whether a closed door seen in this episode has opened",
        "needs_key": "whether the task has a key to pick up and a locked door to open (KeyRoom)",
        "adjacent": "what stands next to the agent, with directions ('' for floor and walls)",
        "steps": "steps taken in this episode",
    }
    potentials = {"reference": reference_potential, "distance": distance_potential}
    subgoal_captions = staticmethod(subgoal_captions)

    @classmethod
    def task_of(cls, name: str = "Room-5x5", **_: Any) -> str:
        """The task in words for ``name`` (what :func:`align_gym.list_envs` prints)."""
        return TASKS[name][1]

    def __init__(self, name: str = "Room-5x5", max_steps: int | None = None,
                 render_mode: str | None = None, observation: str = "dict"):
        if name not in TASKS:
            raise ValueError(f"unknown MiniHack task {name!r}; choose one of {sorted(TASKS)}")
        if observation not in ("dict", "flat"):
            raise ValueError(f"observation must be 'dict' or 'flat', got {observation!r}")
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        try:
            import gymnasium as gym
            with warnings.catch_warnings():  # minihack imports the deprecated pkg_resources
                warnings.simplefilter("ignore", UserWarning)
                import minihack  # noqa: F401  (registers the MiniHack- ids)
        except ImportError as error:
            raise ImportError('MiniHack tasks need the extra: pip install "align-gym[minihack]"'
                              f" ({error})") from error
        self.name = name
        self.task = TASKS[name][1]
        self.render_mode = render_mode
        self._game = gym.make(TASKS[name][0], observation_keys=("chars", "message", "inv_strs", "blstats"),
                              penalty_step=0.0).unwrapped
        self.max_steps = int(max_steps or self._game._max_episode_steps)
        # MiniHack's own limit sits above ours so that the cut is always ours (a truncation).
        self._game._max_episode_steps = self.max_steps + 1
        self.action_space = spaces.Discrete(len(self._game.actions))
        self.observation = observation
        if observation == "flat":
            self.observation_space = spaces.Box(0.0, 1.0, shape=(CROP * CROP * N_CLASSES + 3,), dtype=np.float32)
        else:
            self.observation_space = spaces.Dict({
                "crop": spaces.MultiDiscrete(np.full(CROP * CROP, N_CLASSES)),
                "stats": spaces.Box(0.0, 1.0, shape=(3,), dtype=np.float32),
            })
        self._raw: dict[str, np.ndarray] = {}
        self._things: dict[str, list[str]] = {}
        self._before: set[str] = set()  # the notable things next to the agent one frame ago
        self._keys: set[tuple[int, int]] = set()  # where a key was seen and is still (row, column)
        self._doors: set[tuple[int, int]] = set()  # where a closed door was seen and is still closed
        self._events: list[str] = []  # what the adapter saw happen in this frame
        self._door_opened = False
        self._held = False  # whether the key is held (after _remember: in this frame)
        self._steps = 0

    # -- reading the game ------------------------------------------------------------------
    def _position(self) -> tuple[int, int]:
        x, y = self._raw["blstats"][:2]
        return int(x), int(y)

    def _holds_key(self) -> bool:
        return any("key" in _text(row) for row in self._raw["inv_strs"])

    def _crop(self) -> np.ndarray:
        x, y = self._position()
        padded = np.pad(self._raw["chars"], CROP // 2, constant_values=ord(" "))
        return padded[y:y + CROP, x:x + CROP]

    def _around(self) -> dict[str, list[str]]:
        """The notable things next to the agent, each with its directions, in compass order."""
        crop, mid = self._crop(), CROP // 2
        things: dict[str, list[str]] = {}
        for (dy, dx), direction in _DIRECTIONS.items():
            name = _NOTABLE.get(int(_CLASS_OF[crop[mid + dy, mid + dx]]))
            if name:
                things.setdefault(name, []).append(direction)
        return things

    def state_dict(self) -> State:
        x, y = self._position()
        grid = self._raw["chars"]
        return {
            "x": x, "y": y, "holds_key": self._held,
            "stairs_dist": _chebyshev(grid, ">", y, x),
            "key_dist": _nearest(self._keys, y, x),
            "door_dist": _nearest(self._doors, y, x),
            "door_opened": self._door_opened, "needs_key": self.name.startswith("KeyRoom"),
            "adjacent": ", ".join(f"{name} ({', '.join(where)})" for name, where in self._things.items()),
            "steps": self._steps,
        }

    def _caption(self) -> str:
        """This frame's events: NetHack's message and the things that have just come next to the
        agent. Things go without their directions, as the captions of Crafter in ELLM's paper: a
        few dozen distinct captions per task rather than thousands."""
        message, new = _text(self._raw["message"]), sorted(set(self._things) - self._before)
        arrived = f"You come next to {', '.join(new)}." if new else ""
        return " ".join(part for part in (message, *self._events, arrived) if part)

    def _remember(self, first: bool) -> None:
        """Update where the key and the closed doors are, and note the pickup and door openings.
        A remembered cell the agent now stands on keeps what it held (the map shows the agent)."""
        grid, (x, y) = self._raw["chars"], self._position()
        held, agent, self._events = self._holds_key(), (y, x), []
        if first:
            self._keys, self._doors, self._door_opened = set(), set(), False
        seen_keys = set(zip(*np.nonzero(grid == ord("("))))
        if held and not self._held and not first:  # held now, not one frame ago
            self._events.append(_PICKED_UP)
        self._held = held
        self._keys = set() if held else {p for p in self._keys if p == agent} | seen_keys
        opened = {p for p in self._doors if p != agent and grid[p] != ord("+")}
        if opened and not first:
            self._events.append(_DOOR_OPENS)
            self._door_opened = True
        self._doors = (self._doors - opened) | set(zip(*np.nonzero(grid == ord("+"))))

    def _surroundings(self) -> str:
        things = sorted(self._things)
        return f"Next to you: {', '.join(things)}." if things else "Nothing of note is next to you."

    def _observation(self, state: State) -> dict[str, np.ndarray] | np.ndarray:
        stats = np.array([state["x"] / 78.0, state["y"] / 20.0, float(state["holds_key"])], dtype=np.float32)
        crop = _CLASS_OF[self._crop()].reshape(-1)
        if self.observation == "flat":  # the one-hot SB3 gives the dict's MultiDiscrete, flattened
            return np.concatenate([np.eye(N_CLASSES, dtype=np.float32)[crop].reshape(-1), stats])
        return {"crop": crop, "stats": stats}

    def _read(self, raw: dict[str, np.ndarray], success: bool | None = None, first: bool = False):
        self._raw = {key: value.copy() for key, value in raw.items()}  # NLE reuses its arrays
        self._before = set() if first else set(self._things)
        self._things = self._around()  # read by the state and the caption: once per frame
        self._remember(first)
        state = self.state_dict()
        info: dict[str, Any] = {"caption": self._caption(), "state": state, "task": self.task,
                                "surroundings": self._surroundings()}
        if success is not None:
            info["success"] = success
        return self._observation(state), info

    # -- the gymnasium API -----------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        core, disp, lgen = (int(s) for s in self.np_random.integers(1, 2**31 - 1, size=3))
        self._game.seed(core, disp, reseed=False, lgen=lgen)
        raw, _ = self._game.reset()
        self._steps = 0
        return self._read(raw, first=True)

    def step(self, action):
        if not (isinstance(action, (int, np.integer)) or (np.ndim(action) == 0 and float(action).is_integer())) \
                or not 0 <= int(action) < self.action_space.n:
            raise ValueError(f"invalid action {action!r}: expected an int in [0, {self.action_space.n})")
        raw, reward, done, _, game_info = self._game.step(int(action))
        self._steps += 1
        status = int(game_info.get("end_status", 0))
        terminated = bool(done) and status != _ABORTED
        truncated = not terminated and (bool(done) or self._steps >= self.max_steps)
        success = status == _SUCCESS if terminated else (False if truncated else None)
        if done:
            _restore_signals()
        if done and not raw["chars"].any():
            raw = self._final_frame(success=status == _SUCCESS)
        obs, info = self._read(raw, success)
        return obs, float(reward), terminated, truncated, info

    def _final_frame(self, success: bool) -> dict[str, np.ndarray]:
        """The last frame, rebuilt: NetHack shows a blank screen once the game is over.

        On success the agent stands on the staircase; on death it stays where it was.
        """
        frame = {key: value.copy() for key, value in self._raw.items()}
        frame["message"][:] = 0
        text = b"You reach the staircase down." if success else b"You die."
        frame["message"][:len(text)] = np.frombuffer(text, dtype=np.uint8)
        stairs = np.argwhere(frame["chars"] == ord(">"))
        if success and len(stairs):
            x, y = self._position()
            frame["chars"][y, x] = ord(".")
            frame["blstats"][1], frame["blstats"][0] = stairs[0]
        return frame

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        lines = (bytes(row).decode("latin-1").rstrip() for row in self._raw["chars"])
        return "\n".join(line for line in lines if line)

    def close(self) -> None:
        self._game.close()
