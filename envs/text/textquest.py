"""TextQuest: generated text adventures with a sparse reward, fast and seeded.

Each episode draws a small world from the env's generator: rooms joined by exits (a tree on a
grid, so ``north`` and ``south`` are opposites), locked doors with their keys, closed containers,
a treasure to find and, at the hardest level, a room to bring it to. Observations are plain
English; commands are free text read by a small verb-object parser:

- ``go north`` (or ``north``, ``n``), ``take brass key`` (or ``get``, ``pick up``),
  ``drop brass key``, ``open wooden chest``, ``unlock north door with brass key``;
- an object may be named by its last word when that is unambiguous (``take key``); articles are
  ignored.

The reward is 1 on completing the quest and 0 otherwise, invalid commands included (they change
nothing). Difficulties:

========  =====  =============  ==========  ==========================================  =========
variant   rooms  locked doors   containers  quest                                       max steps
========  =====  =============  ==========  ==========================================  =========
easy      4      0              0           take the treasure                           15
medium    5      1              1           take the treasure (its door's key is boxed)  40
hard      8      2              2           bring the treasure to a named room          120
========  =====  =============  ==========  ==========================================  =========

>>> import gymnasium as gym, align_gym
>>> env = gym.make("Align/TextQuest-easy-v0")
>>> obs, info = env.reset(seed=0)
>>> print(obs)
Quest: take the ruby amulet.
You are in the armoury.
Armoury. Exits: south.
You see nothing of interest.
You carry nothing.
>>> info["valid_actions"]
['go south']
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import State
from .core import Outcome, TextEnv, normalise_command, quote

KEYS = ("brass key", "iron key", "silver key", "copper key")
TREASURES = ("golden idol", "silver ring", "old map", "jade statue", "ruby amulet", "oil lamp", "leather book")
CONTAINERS = ("wooden chest", "cupboard", "iron box")
ROOMS = ("kitchen", "cellar", "library", "hallway", "garden", "attic", "pantry", "study", "chapel",
         "armoury", "gallery", "workshop")
DIRECTIONS = {"north": (0, -1), "south": (0, 1), "east": (1, 0), "west": (-1, 0)}
OPPOSITE = {"north": "south", "south": "north", "east": "west", "west": "east"}
ALIASES = {"n": "go north", "s": "go south", "e": "go east", "w": "go west",
           **{direction: f"go {direction}" for direction in DIRECTIONS}}


@dataclass(frozen=True)
class Difficulty:
    rooms: int
    locks: int
    containers: int
    deliver: bool  # bring the treasure to a room, rather than only take it
    max_steps: int
    distractors: int


DIFFICULTIES = {
    "easy": Difficulty(rooms=4, locks=0, containers=0, deliver=False, max_steps=15, distractors=1),
    "medium": Difficulty(rooms=5, locks=1, containers=1, deliver=False, max_steps=40, distractors=1),
    "hard": Difficulty(rooms=8, locks=2, containers=2, deliver=True, max_steps=120, distractors=2),
}


def command_vocabulary() -> list[str]:
    """Every command a TextQuest world can admit: the ``-Choice`` ids' fixed action set."""
    items = KEYS + TREASURES
    return ([f"go {d}" for d in DIRECTIONS] + [f"take {i}" for i in items] + [f"drop {i}" for i in items]
            + [f"open {c}" for c in CONTAINERS]
            + [f"unlock {d} door with {k}" for d in DIRECTIONS for k in KEYS])


def reference_potential(state: State) -> float:
    """Quest progress in [0, 1]: subgoals done in order (keys, doors, treasure, delivery), plus half
    a subgoal for closeness, in rooms, to the next subgoal's room.

    The other half is left to the action that completes the subgoal. Counting arrival as the whole
    subgoal would make the potential 1 before the quest's last action, which would then pay
    ``1 + gamma * 0 - 1 = 0`` under potential-based shaping: shaping by a potential starts the value
    estimate at it (Wiewiora, 2003), so the agent would start out believing the quest done before
    its last step (measured in ``docs/results/token_agents``)."""
    done, total = state["subgoals_done"], state["subgoals"]
    closeness = 1.0 - min(state["rooms_to_next"] / state["rooms"], 1.0)
    return min((done + 0.5 * closeness) / total, 1.0)


def distance_potential(state: State) -> float:
    """Minus the distance in rooms to where the treasure must go next (its room, or the target
    room once carried), ignoring locks."""
    return -state["rooms_to_treasure"] / state["rooms"]


class TextQuestEnv(TextEnv):
    """A generated text adventure; see the module docstring for the commands and difficulties."""

    task = "Complete the quest stated in the first line of every observation."
    state_schema = {
        "room": "the room the player is in",
        "carrying": "what the player carries, comma-separated in alphabetical order",
        "placed": "where every other object is: 'object@room' or 'object@container', sorted",
        "opened": "the open containers, comma-separated",
        "unlocked": "the unlocked doors as 'room>direction', comma-separated",
        "subgoals": "the quest's subgoals in order (each key, each door, the treasure, the delivery)",
        "subgoals_done": "how many of them, in order, are done",
        "rooms_to_next": "rooms between the player and the next subgoal's room",
        "rooms_to_treasure": "rooms between the player and where the treasure must go next",
        "rooms": "how many rooms the world has",
        "steps": "steps taken in this episode",
    }
    potentials = {"reference": reference_potential, "distance": distance_potential}
    vocabulary = staticmethod(command_vocabulary)
    # The world's layout is fixed within an episode (a reset replaces it, never mutates it).
    _shared_on_copy = TextEnv._shared_on_copy | {"difficulty", "exits", "locks", "plan", "container_room"}

    @classmethod
    def task_of(cls, difficulty: str = "medium", **_: Any) -> str:
        spec = DIFFICULTIES[difficulty]
        goal = "bring a treasure to a named room" if spec.deliver else "find and take a treasure"
        locks = f", through {spec.locks} locked door{'s' if spec.locks > 1 else ''}" if spec.locks else ""
        return f"A generated text adventure of {spec.rooms} rooms: {goal}{locks}."

    def __init__(self, difficulty: str = "medium", max_steps: int | None = None, render_mode: str | None = None):
        if difficulty not in DIFFICULTIES:
            raise ValueError(f"unknown difficulty {difficulty!r}; choose one of {', '.join(DIFFICULTIES)}")
        self.difficulty = DIFFICULTIES[difficulty]
        super().__init__(max_steps or self.difficulty.max_steps, render_mode)

    # -- the world ---------------------------------------------------------------------------
    def _new_episode(self, rng: np.random.Generator) -> str:
        spec = self.difficulty
        names = [ROOMS[i] for i in rng.permutation(len(ROOMS))[:spec.rooms]]
        # Grow a tree of rooms on a grid: each new room opens off a random free side of an old one.
        cells = {(0, 0): names[0]}
        self.exits: dict[str, dict[str, str]] = {names[0]: {}}
        while len(cells) < spec.rooms:
            (x, y), room = list(cells.items())[int(rng.integers(len(cells)))]
            direction = list(DIRECTIONS)[int(rng.integers(4))]
            dx, dy = DIRECTIONS[direction]
            if (x + dx, y + dy) in cells:
                continue
            new = names[len(cells)]
            cells[(x + dx, y + dy)] = new
            self.exits[new] = {OPPOSITE[direction]: room}
            self.exits[room][direction] = new
        self.start = names[0]
        distances = self._room_distances(self.start)
        # The treasure goes in the farthest room; its path's doors nearest the treasure get the locks.
        treasure_room = max(names, key=lambda r: (distances[r], -names.index(r)))
        path = self._path(self.start, treasure_room)
        lock_edges = path[::-1][:spec.locks][::-1]  # (room, direction) pairs, in path order
        items = [TREASURES[i] for i in rng.permutation(len(TREASURES))]
        self.treasure, distractors = items[0], items[1:1 + spec.distractors]
        keys = [KEYS[i] for i in rng.permutation(len(KEYS))[:spec.locks]]
        self.locks: dict[tuple[str, str], str] = {}  # (room, direction) -> key, both sides of a door
        self.unlocked: set[tuple[str, str]] = set()
        self.place: dict[str, str] = {}  # object -> room, container, or "player"
        self.container_room: dict[str, str] = {}
        self.opened: set[str] = set()
        self.plan: list[tuple[str, Any]] = []  # the subgoals in order
        containers = [CONTAINERS[i] for i in rng.permutation(len(CONTAINERS))[:spec.containers]]
        for edge, key in zip(lock_edges, keys):
            for side in self._door_sides(*edge):
                self.locks[side] = key
        for j, (edge, key) in enumerate(zip(lock_edges, keys)):
            # The key lies somewhere reachable with only the earlier doors unlocked.
            blocked = {side for later in lock_edges[j:] for side in self._door_sides(*later)}
            reachable = sorted(self._reachable(self.start, blocked))
            self._put(key, reachable[int(rng.integers(len(reachable)))])
            self.plan += [("take", key), ("unlock", edge)]
        self._put(self.treasure, treasure_room)
        self.plan.append(("take", self.treasure))
        if spec.deliver:
            others = sorted(r for r in names if r != treasure_room)
            self.target = others[int(rng.integers(len(others)))]
            self.plan.append(("deliver", self.target))
        else:
            self.target = None
        # Containers close over the first keys (then the treasure): what the quest needs first.
        boxed = [item for kind, item in self.plan if kind == "take"][:len(containers)]
        for container, item in zip(containers, boxed):
            room = self.place[item]
            self.container_room[container] = room
            self.place[item] = container
        for item in distractors:
            self._put(item, names[int(rng.integers(len(names)))])
        self.room = self.start
        self.task = (f"bring the {self.treasure} to the {self.target}" if self.target
                     else f"take the {self.treasure}")
        return f"You are in the {self.room}."

    def _put(self, item: str, room: str) -> None:
        self.place[item] = room

    def _door_sides(self, room: str, direction: str) -> set[tuple[str, str]]:
        return {(room, direction), (self.exits[room][direction], OPPOSITE[direction])}

    def _reachable(self, start: str, blocked: set[tuple[str, str]]) -> set[str]:
        seen, todo = {start}, [start]
        while todo:
            room = todo.pop()
            for direction, other in self.exits[room].items():
                if (room, direction) not in blocked and other not in seen:
                    seen.add(other)
                    todo.append(other)
        return seen

    def _room_distances(self, start: str) -> dict[str, int]:
        distances, queue = {start: 0}, deque([start])
        while queue:
            room = queue.popleft()
            for other in self.exits[room].values():
                if other not in distances:
                    distances[other] = distances[room] + 1
                    queue.append(other)
        return distances

    def _path(self, start: str, goal: str) -> list[tuple[str, str]]:
        """The (room, direction) steps from ``start`` to ``goal`` (the rooms form a tree)."""
        previous: dict[str, tuple[str, str]] = {}
        queue, seen = deque([start]), {start}
        while queue:
            room = queue.popleft()
            for direction, other in self.exits[room].items():
                if other not in seen:
                    seen.add(other)
                    previous[other] = (room, direction)
                    queue.append(other)
        steps = []
        while goal != start:
            steps.append(previous[goal])
            goal = previous[goal][0]
        return steps[::-1]

    # -- reading the world ---------------------------------------------------------------------
    def _is_locked(self, room: str, direction: str) -> bool:
        return (room, direction) in self.locks and (room, direction) not in self.unlocked

    def _visible(self) -> list[str]:
        """Objects the player can take here: on the floor or in an open container."""
        here = {c for c, r in self.container_room.items() if r == self.room and c in self.opened} | {self.room}
        return sorted(item for item, where in self.place.items() if where in here)

    def _carrying(self) -> list[str]:
        return sorted(item for item, where in self.place.items() if where == "player")

    def _closed_here(self) -> list[str]:
        return sorted(c for c, r in self.container_room.items() if r == self.room and c not in self.opened)

    def _subgoal_done(self, kind: str, what: Any) -> bool:
        if kind == "take":
            if self.place[what] == "player":
                return True
            # a key counts as done once its door is open, wherever it was left
            return any(key == what and edge in self.unlocked for edge, key in self.locks.items())
        if kind == "unlock":
            return what in self.unlocked
        return self.place[self.treasure] == what  # deliver

    def _subgoal_room(self, kind: str, what: Any) -> str:
        if kind == "unlock":
            return what[0]
        if kind == "deliver":
            return what
        where = self.place[what]
        return self.container_room.get(where, where)

    def _succeeded(self) -> bool:
        return all(self._subgoal_done(kind, what) for kind, what in self.plan[-1:])

    def valid_actions(self) -> list[str]:
        actions = [f"go {d}" for d in self.exits[self.room] if not self._is_locked(self.room, d)]
        actions += [f"take {item}" for item in self._visible()]
        actions += [f"drop {item}" for item in self._carrying()]
        actions += [f"open {c}" for c in self._closed_here()]
        actions += [f"unlock {d} door with {self.locks[(self.room, d)]}" for d in self.exits[self.room]
                    if self._is_locked(self.room, d) and self.place[self.locks[(self.room, d)]] == "player"]
        return actions

    def symbolic_state(self) -> State:
        done = 0
        for kind, what in self.plan:
            if not self._subgoal_done(kind, what):
                break
            done += 1
        distances = self._room_distances(self.room)
        next_room = self._subgoal_room(*self.plan[min(done, len(self.plan) - 1)])
        treasure_goal = self.target if self.place[self.treasure] == "player" and self.target else \
            self._subgoal_room("take", self.treasure)
        return {
            "room": self.room,
            "carrying": ", ".join(self._carrying()),
            "placed": ", ".join(f"{item}@{where}" for item, where in sorted(self.place.items()) if where != "player"),
            "opened": ", ".join(sorted(self.opened)),
            "unlocked": ", ".join(sorted(f"{r}>{d}" for r, d in self.unlocked)),
            "subgoals": len(self.plan), "subgoals_done": done,
            "rooms_to_next": 0 if done == len(self.plan) else distances[next_room],
            "rooms_to_treasure": 0 if self._succeeded() else distances[treasure_goal],
            "rooms": len(self.exits),
        }

    def _observe(self, message: str) -> str:
        exits = ", ".join(f"{d} (locked door)" if self._is_locked(self.room, d) else d for d in self.exits[self.room])
        seen = [f"a {item}" for item in self._visible() if self.place[item] == self.room]
        seen += [f"a {c} (closed)" for c in self._closed_here()]
        seen += [f"a {c} (open)" for c, r in sorted(self.container_room.items()) if r == self.room and c in self.opened]
        lines = [f"Quest: {self.task}.", message, f"{self.room.capitalize()}. Exits: {exits}.",
                 f"You see: {', '.join(seen)}." if seen else "You see nothing of interest."]
        for container in sorted(c for c, r in self.container_room.items() if r == self.room and c in self.opened):
            inside = sorted(item for item, where in self.place.items() if where == container)
            lines.append(f"In the {container}: {', '.join('a ' + i for i in inside)}." if inside
                         else f"The {container} is empty.")
        carrying = self._carrying()
        lines.append(f"You carry: {', '.join('a ' + i for i in carrying)}." if carrying else "You carry nothing.")
        return "\n".join(lines)

    def _caption(self, message: str, valid: bool = True) -> str:
        # Events only: the message of a command that changed the world ("You take the key.", "You
        # go north. You are in the hall."), nothing after one that changed nothing. Where the
        # player is and what it sees persist: they are the surroundings.
        return message if valid else ""

    def _surroundings(self) -> str:
        seen = [f"a {item}" for item in self._visible()] + [f"a {c}" for c in self._closed_here()]
        return f"You are in the {self.room}." + (f" You see {', '.join(seen)}." if seen else "")

    # -- the parser ------------------------------------------------------------------------------
    def _resolve(self, name: str, candidates: list[str], kind: str) -> tuple[str | None, str]:
        """The object ``name`` means among ``candidates`` (a full name, or an unambiguous last word)."""
        name = " ".join(word for word in name.split() if word not in ("the", "a", "an"))
        if name in candidates:
            return name, ""
        matches = [c for c in candidates if c.split()[-1] == name]
        if len(matches) == 1:
            return matches[0], ""
        if len(matches) > 1:
            return None, f"Which {name} do you mean: {' or '.join(matches)}?"
        return None, f"You see no {quote(name)} to {kind} here." if name else f"What do you want to {kind}?"

    def _act(self, command: str) -> Outcome:
        text = normalise_command(command)
        text = ALIASES.get(text, text)
        verb, _, rest = text.partition(" ")
        if text.startswith("pick up "):
            verb, rest = "take", text[len("pick up "):]
        verb = {"get": "take", "walk": "go", "move": "go"}.get(verb, verb)
        handler = {"go": self._go, "take": self._take, "drop": self._drop, "open": self._open,
                   "unlock": self._unlock}.get(verb)
        if handler is None:
            shown = quote(command.strip()) if command.strip() else "(nothing)"
            return Outcome(f"I don't understand {shown}. Try go, take, drop, open or unlock.", valid=False)
        outcome = handler(rest.strip())
        if outcome.valid and self._succeeded():
            return Outcome(f"{outcome.message} Quest complete!", reward=1.0, terminated=True, success=True)
        return outcome

    def _go(self, direction: str) -> Outcome:
        direction = {"n": "north", "s": "south", "e": "east", "w": "west"}.get(direction, direction)
        if direction not in DIRECTIONS:
            return Outcome(f"Go where? Say north, south, east or west (not {quote(direction)}).", valid=False)
        if direction not in self.exits[self.room]:
            return Outcome(f"You can't go {direction} from the {self.room}.", valid=False)
        if self._is_locked(self.room, direction):
            return Outcome(f"The {direction} door is locked.", valid=False)
        self.room = self.exits[self.room][direction]
        return Outcome(f"You go {direction}. You are in the {self.room}.")

    def _take(self, name: str) -> Outcome:
        item, error = self._resolve(name, self._visible(), "take")
        if item is None:
            if name and name in self._carrying():
                return Outcome(f"You already carry the {name}.", valid=False)
            return Outcome(error, valid=False)
        self.place[item] = "player"
        return Outcome(f"You take the {item}.")

    def _drop(self, name: str) -> Outcome:
        item, _ = self._resolve(name, self._carrying(), "drop")
        if item is None:
            return Outcome(f"You don't carry any {quote(name)}." if name else "What do you want to drop?", valid=False)
        self.place[item] = self.room
        return Outcome(f"You drop the {item}.")

    def _open(self, name: str) -> Outcome:
        here = sorted(c for c, r in self.container_room.items() if r == self.room)
        container, error = self._resolve(name, here, "open")
        if container is None:
            if name.endswith("door"):
                return Outcome("Doors here are unlocked with a key: unlock <direction> door with <key>.", valid=False)
            return Outcome(error, valid=False)
        if container in self.opened:
            return Outcome(f"The {container} is already open.", valid=False)
        self.opened.add(container)
        inside = sorted(item for item, where in self.place.items() if where == container)
        found = f" Inside: {', '.join('a ' + i for i in inside)}." if inside else " It is empty."
        return Outcome(f"You open the {container}.{found}")

    def _unlock(self, rest: str) -> Outcome:
        door, _, key_name = rest.partition(" with ")
        direction = door.replace("the ", "").replace(" door", "").strip()
        direction = {"n": "north", "s": "south", "e": "east", "w": "west"}.get(direction, direction)
        if direction not in DIRECTIONS:
            return Outcome("Unlock which door? Say: unlock <direction> door with <key>.", valid=False)
        if not self._is_locked(self.room, direction):
            return Outcome(f"There is no locked door to the {direction}.", valid=False)
        if not key_name:
            return Outcome(f"Unlock the {direction} door with what?", valid=False)
        key, error = self._resolve(key_name, self._carrying(), "use")
        if key is None:
            return Outcome(f"You don't carry any {quote(key_name.strip())}.", valid=False)
        if key != self.locks[(self.room, direction)]:
            return Outcome(f"The {key} does not fit the {direction} door.", valid=False)
        self.unlocked |= self._door_sides(self.room, direction)
        return Outcome(f"You unlock the {direction} door with the {key}.")
