"""TextWorld games (Côté et al. 2018) under the text-task contract.

:class:`TextWorldEnv` makes a game with TextWorld's own generator for a seed (the ``[textworld]``
extra), compiles it once into a cache folder, and plays it through the contract: the 5-tuple,
``info["valid_actions"]`` from TextWorld's admissible commands (without ``look``, ``inventory``
and ``examine ...``, which change nothing), a state of the game's facts (its logical
propositions) hashed for ``info["state_hash"]``, success when the quest is won.

Commands TextWorld does not admit now are invalid actions: they are refused before they reach the
game (whose parser would spend a move on them), change nothing and earn 0. The reward is 1 when
the quest is won. Each reset plays a game whose generator seed is drawn from the env's own
generator (so ``reset(seed=s)`` always gives the same game), among ``games`` different games when
that is set (the registered id: 20) or any game otherwise. Each game is compiled once per cache
folder (about 1 s), then reused.

>>> import gymnasium as gym, align_gym
>>> env = gym.make("Align/TextWorld-v0", games=2)
>>> obs, info = env.reset(seed=0)
>>> obs.startswith("Quest: ") and env.unwrapped.walkthrough()[0] in info["valid_actions"]
True
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..core import State
from .core import Outcome, TextEnv, normalise_command, quote

_NO_CHANGE = ("look", "inventory", "examine ")
_PROMPT = re.compile(r"\n>.*\Z", re.S)  # the game's prompt and status line after the feedback


def default_cache() -> Path:
    """``$ALIGN_GYM_TEXTWORLD`` or ``~/.cache/align_gym/textworld``: where compiled games go."""
    return Path(os.environ.get("ALIGN_GYM_TEXTWORLD", Path.home() / ".cache" / "align_gym" / "textworld"))


def reference_potential(state: State) -> float:
    """Progress in [0, 1]: how much of the walkthrough from the start is done."""
    return 1.0 - state["steps_to_go"] / max(state["walkthrough"], 1)


def distance_potential(state: State) -> float:
    """Minus the walkthrough's remaining commands, scaled by its length."""
    return -state["steps_to_go"] / max(state["walkthrough"], 1)


class TextWorldEnv(TextEnv):
    """A generated TextWorld game; see the module docstring.

    Args:
        rooms, objects, quest_length: TextWorld's generator options (a game of similar size to
            ``TextQuest-medium`` by default).
        games: draw unseeded episodes' games among this many seeds (None: a new game each time).
        max_steps: the step limit.
        cache: where compiled games are kept (:func:`default_cache`).
    """

    task = "Complete the TextWorld quest stated in the first line of every observation."
    state_schema = {
        "game": "the game's seed",
        "facts": "the game's true propositions (TextWorld's facts), sorted",
        "steps_to_go": "commands left in the game's walkthrough from here",
        "walkthrough": "the walkthrough's length from the start",
        "won": "whether the quest is complete",
        "steps": "steps taken in this episode",
    }
    potentials = {"reference": reference_potential, "distance": distance_potential}

    @classmethod
    def task_of(cls, rooms: int = 5, objects: int = 10, quest_length: int = 5, **_: Any) -> str:
        return f"A TextWorld game of {rooms} rooms and {objects} objects with a quest of {quest_length} steps."

    def __init__(self, rooms: int = 5, objects: int = 10, quest_length: int = 5, games: int | None = None,
                 max_steps: int = 50, cache: str | Path | None = None, render_mode: str | None = None):
        try:
            import textworld
        except ImportError as error:
            raise ImportError(f'TextWorld games need the extra: pip install "align-gym[textworld]" ({error})') from error
        super().__init__(max_steps, render_mode)
        self._textworld = textworld
        self.options = {"rooms": rooms, "objects": objects, "quest_length": quest_length}
        self.games = games
        self.cache = Path(cache) if cache else default_cache()
        self._game = None
        self.seed_of_game = -1

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        raise TypeError("a TextWorld game runs in its own interpreter: it cannot be copied")

    def _compiled(self, seed: int) -> Path:
        """The compiled game of ``seed`` (made and compiled on first use)."""
        from textworld import GameOptions
        from textworld.generator import compile_game, make_game

        o = self.options
        path = self.cache / f"r{o['rooms']}-o{o['objects']}-q{o['quest_length']}" / f"game_{seed}.z8"
        if not path.exists():
            options = GameOptions()
            options.seeds = seed
            options.nb_rooms, options.nb_objects, options.quest_length = o["rooms"], o["objects"], o["quest_length"]
            options.path = str(path)
            options.file_ext = ".z8"
            path.parent.mkdir(parents=True, exist_ok=True)
            compile_game(make_game(options), options)
        return path

    def _new_episode(self, rng: np.random.Generator) -> str:
        seed = int(rng.integers(self.games)) if self.games else int(rng.integers(2**31 - 1))
        with warnings.catch_warnings():  # jericho: generated games lack its score tables; TextWorld keeps score
            warnings.filterwarnings("ignore", message=".*is not fully supported")
            if self._game is None or seed != self.seed_of_game:
                if self._game is not None:
                    self._game.close()
                infos = self._textworld.EnvInfos(admissible_commands=True, won=True, lost=True, facts=True,
                                                 policy_commands=True, objective=True, description=True,
                                                 inventory=True, feedback=True)
                self._game = self._textworld.start(str(self._compiled(seed)), request_infos=infos)
                self.seed_of_game = seed
            self._state = self._game.reset()
        self._walkthrough = len(self._state.policy_commands)
        return self._state.description.strip() or "You look around."

    def walkthrough(self) -> list[str]:
        """The game's own solution from the current state (privileged)."""
        return list(self._state.policy_commands)

    def valid_actions(self) -> list[str]:
        return [c for c in self._state.admissible_commands if not c.startswith(_NO_CHANGE)]

    def symbolic_state(self) -> State:
        return {"game": self.seed_of_game, "facts": "; ".join(sorted(str(f) for f in self._state.facts)),
                "steps_to_go": len(self._state.policy_commands), "walkthrough": self._walkthrough,
                "won": bool(self._state.won)}

    def _observe(self, message: str) -> str:
        return "\n".join([f"Quest: {self._state.objective.strip()}", message, self._state.inventory.strip()])

    def _caption(self, message: str, valid: bool = True) -> str:
        return " ".join(message.split())[:300]

    def _act(self, command: str) -> Outcome:
        def plain(text: str) -> str:
            return " ".join(word for word in normalise_command(text).split() if word not in ("the", "a", "an"))

        admissible = {plain(c): c for c in self._state.admissible_commands}
        text = admissible.get(plain(command))
        if text is None:
            return Outcome(f"That is not something you can do here: {quote(command.strip(), limit=60)}. "
                           f"Try one of: {', '.join(self.valid_actions()[:6])}.", valid=False)
        self._state, _, done = self._game.step(text)
        message = _PROMPT.sub("", self._state.feedback).strip() or "Nothing happens."
        message = message.split("*** The End ***")[0].strip() + (" *** The End ***" if "*** The End ***" in message else "")
        won = bool(self._state.won)
        return Outcome(message, reward=float(won), terminated=bool(done) and (won or bool(self._state.lost)),
                       success=won)

    def close(self) -> None:
        if self._game is not None:
            self._game.close()
            self._game = None
