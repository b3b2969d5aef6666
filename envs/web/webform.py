"""WebForm: MiniWoB-style web tasks (Shi et al. 2017; Liu et al. 2018) on WebShop's page engine.

Each episode draws one task (``task="mixed"``, the default) or always the same kind:

- ``form``: fill two or three text fields with the values the instruction names, then submit
  (``type[first name=Ada]``, ``click[Submit]``);
- ``sequence``: click three of five buttons in the order asked; a wrong click ends the episode;
- ``list``: select an option from a list, then submit (``select[Oslo]``, ``click[Submit]``).

Reward 1 for the task done exactly (``info["reward_parts"]["task"]``), else 0, on the last step.
``info["valid_actions"]`` lists every click and selection on the page and, for text fields, typing
each value the instruction mentions into each field.

>>> import gymnasium as gym, align_gym
>>> env = gym.make("Align/WebForm-v0", task="list")
>>> obs, info = env.reset(seed=1)
>>> obs.splitlines()[1].startswith("Instruction: Select ")
True
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import State
from ..text.core import Outcome, TextEnv, quote
from .pages import ActionError, Element, Page, Text, parse_action

KINDS = ("form", "sequence", "list")
FIELDS = {
    "first name": ("Ada", "Ben", "Chloe", "Dev", "Eva", "Femi", "Gus", "Hana", "Ivan", "Jun"),
    "last name": ("Moreau", "Berg", "Silva", "Walsh", "Huber", "Rossi", "Novak", "Sato"),
    "city": ("Lyon", "Oslo", "Porto", "Leeds", "Graz", "Turin", "Lima", "Kyoto"),
    "username": ("ada92", "blue_fox", "kite7", "mossy", "nova_x", "pixel", "quartz", "river5"),
}
WORDS = ("alpha", "bravo", "cedar", "delta", "ember", "flint", "glade", "harbor", "iris", "jade")
CITIES = FIELDS["city"]


def reference_potential(state: State) -> float:
    """The fraction of the task's parts done (fields right, buttons clicked, option chosen)."""
    return state["done_parts"] / max(1, state["parts"])


def distance_potential(state: State) -> float:
    """Minus the actions still needed (each missing part, then a submit where there is one)."""
    return -float(state["parts"] - state["done_parts"] + (state["kind"] != "sequence"))


class WebFormEnv(TextEnv):
    """A MiniWoB-style form, button-sequence or list task; see the module docstring."""

    task = "Do what the instruction on the web page says: fill the form, click the buttons or pick from the list."
    state_schema = {
        "kind": "form, sequence or list",
        "values": "the page's state: field values, buttons clicked so far, or the selected option",
        "parts": "how many parts the task has (fields, clicks, or 1)",
        "done_parts": "how many parts are done right",
        "steps": "steps taken in this episode",
    }
    potentials = {"reference": reference_potential, "distance": distance_potential}

    @classmethod
    def task_of(cls, task: str = "mixed", **_: Any) -> str:
        what = "a form, a button sequence or a list" if task == "mixed" else f"a {task} task"
        return f"WebForm: MiniWoB-style web tasks ({what}) from an instruction on the page."

    def __init__(self, task: str = "mixed", observation: str = "text", max_steps: int = 10,
                 render_mode: str | None = None):
        if task not in (*KINDS, "mixed"):
            raise ValueError(f"task must be one of {', '.join(KINDS)} or mixed, got {task!r}")
        if observation not in ("text", "html"):
            raise ValueError(f"observation must be 'text' or 'html', got {observation!r}")
        super().__init__(max_steps, render_mode)
        self.task_kind, self.observation = task, observation

    def _new_episode(self, rng: np.random.Generator) -> str:
        self.kind = str(rng.choice(KINDS)) if self.task_kind == "mixed" else self.task_kind
        if self.kind == "form":
            fields = [str(f) for f in rng.choice(list(FIELDS), size=int(rng.integers(2, 4)), replace=False)]
            self.target = {field: str(rng.choice(FIELDS[field])) for field in fields}
            self.values = {field: "" for field in fields}
            asks = [f"{value} as the {field}" for field, value in self.target.items()]
            self.task = f"Enter {', '.join(asks[:-1])} and {asks[-1]}, then click Submit."
        elif self.kind == "sequence":
            self.buttons = [str(w) for w in rng.choice(WORDS, size=5, replace=False)]
            self.target_clicks = [str(w) for w in rng.choice(self.buttons, size=3, replace=False)]
            self.clicks: list[str] = []
            self.task = f"Click the buttons {self.target_clicks[0]}, then {self.target_clicks[1]}, then {self.target_clicks[2]}."
        else:
            self.options = [str(c) for c in rng.choice(CITIES, size=6, replace=False)]
            self.target_option = str(rng.choice(self.options))
            self.selected = ""
            self.task = f"Select {self.target_option} from the list and click Submit."
        return "A new task."

    def page(self) -> Page:
        """The current page (the observation shows it as text or HTML; ``serve-web`` serves it)."""
        parts: list[Any] = [Text(f"Instruction: {self.task}")]
        if self.kind == "form":
            parts += [Element("input", field, value) for field, value in self.values.items()]
            parts.append(Element("button", "Submit"))
        elif self.kind == "sequence":
            parts += [Element("button", label, selected=label in self.clicks) for label in self.buttons]
        else:
            parts += [Element("option", city, selected=city == self.selected) for city in self.options]
            parts.append(Element("button", "Submit"))
        return Page("WebForm", parts)

    def _act(self, command: str) -> Outcome:
        try:
            verb, argument = parse_action(command)
            return getattr(self, f"_{verb}")(argument)
        except ActionError as error:
            return Outcome(str(error), valid=False)

    def _search(self, argument: str) -> Outcome:
        raise ActionError("This page has no search box.")

    def _type(self, argument: str) -> Outcome:
        if self.kind != "form":
            raise ActionError("This page has no text field.")
        field, equals, text = argument.partition("=")
        element = self.page().find(("input",), field)
        if not equals or element is None:
            raise ActionError(f"Type into a field: type[field=text], with a field among {', '.join(self.values)}.")
        self.values[element.label] = text.strip()[:60]
        return Outcome("You type into a field.")

    def _select(self, argument: str) -> Outcome:
        element = self.page().find(("option",), argument)
        if element is None:
            raise ActionError("Select an option of the list: select[option]." if self.kind == "list"
                              else "This page has no list.")
        self.selected = element.label
        return Outcome("You select an option.")

    def _click(self, argument: str) -> Outcome:
        element = self.page().find(("button",), argument)
        if element is None:
            raise ActionError(f"Nothing to click called {quote(argument)}; clickable: "
                              f"{', '.join(self.page().clickables())}.")
        if self.kind == "sequence":
            self.clicks.append(element.label)
            right = self.clicks == self.target_clicks[:len(self.clicks)]
            if not right or len(self.clicks) == len(self.target_clicks):
                return self._end(right, "You click a button.")
            return Outcome("You click a button.")
        if self.kind == "form":
            right = all(self.values[f].lower() == v.lower() for f, v in self.target.items())
        else:
            right = self.selected == self.target_option
        return self._end(right, "You submit the page.")

    def _end(self, right: bool, message: str) -> Outcome:
        return Outcome(f"{message} {'Task done.' if right else 'Task failed.'}", reward=float(right), terminated=True,
                       success=right, reward_parts={"task": float(right)})

    def _observe(self, message: str) -> str:
        page = self.page()
        return page.html() if self.observation == "html" else page.text()

    def valid_actions(self) -> list[str]:
        page = self.page()
        actions = []
        if self.kind == "form":
            mentioned = list(self.target.values())
            actions += [f"type[{field}={value}]" for field in self.values for value in mentioned
                        if self.values[field] != value]
        actions += [f"select[{p.label}]" for p in page.parts
                    if isinstance(p, Element) and p.kind == "option" and not p.selected]
        # Every button changes something: in a sequence, clicking one already clicked is a wrong
        # click and ends the episode, so it is listed too (an agent must learn not to).
        actions += [f"click[{label}]" for label in page.clickables()]
        return actions

    def symbolic_state(self) -> State:
        if self.kind == "form":
            values = ",".join(f"{f}={v}" for f, v in self.values.items())
            parts, done = len(self.target), sum(self.values[f].lower() == v.lower() for f, v in self.target.items())
        elif self.kind == "sequence":
            values, parts = ",".join(self.clicks), len(self.target_clicks)
            done = len(self.clicks) if self.clicks == self.target_clicks[:len(self.clicks)] else 0
        else:
            values, parts, done = self.selected, 1, int(self.selected == self.target_option)
        return {"kind": self.kind, "values": values, "parts": parts, "done_parts": done}


def scripted_solver(env: WebFormEnv) -> list[str]:
    """The actions that do the current task (read from the instruction's parsed content)."""
    if env.kind == "form":
        return [f"type[{field}={value}]" for field, value in env.target.items()] + ["click[Submit]"]
    if env.kind == "sequence":
        return [f"click[{label}]" for label in env.target_clicks]
    return [f"select[{env.target_option}]", "click[Submit]"]
