"""ToolCalc: multi-step arithmetic word problems, solved with a calculator tool.

Each episode draws a word problem of ``steps`` arithmetic steps (a product first, then additions
and subtractions, sometimes a fair share at the end). Every action is one JSON tool call:

- ``{"name": "calculator", "arguments": {"expression": "17 * 24"}}``: numbers, ``+ - * /`` and
  brackets; the result joins the observation;
- ``{"name": "answer", "arguments": {"value": 91}}``: the final answer, which ends the episode.

The reward is 1 for a correct final answer and 0 otherwise (``info["reward_parts"]["answer"]``
on the answering step). Malformed calls and calculator errors are invalid actions: they change
nothing and earn 0. ``info["valid_actions"]`` is a menu of well-formed calls for this state: the
next step of the solution, the same numbers under other operators, and answers (the latest result
and a number from the problem), each a call that changes something now (a calculator call whose
result is not among the results yet, or an answer, which ends the episode); any other well-formed
call is allowed too. The calculator reads at most 200 characters of digits, ``. e _``, ``+ - * /``,
brackets and blanks, and refuses numbers past a trillion, so no expression can raise or hang it.
``info["state"]["reference_call"]`` is the next call of the solution (what ToolRL's reward
compares against).

>>> import gymnasium as gym, align_gym
>>> env = gym.make("Align/ToolCalc-v0")
>>> obs, info = env.reset(seed=0)
>>> print(obs.splitlines()[0])  # doctest: +ELLIPSIS
Problem: A garage has 10 teams with 11 pencils on each. Then 4 pencils are taken away. Then ...?
>>> info["state"]["reference_call"] in info["valid_actions"]
True
"""

from __future__ import annotations

import ast
import operator
from typing import Any

import numpy as np

from ..core import State
from ..text.core import Outcome, quote
from .calls import CallError, Tool, format_call
from .core import ToolEnv

TOOLS = {
    "calculator": Tool("Evaluate an arithmetic expression: numbers, + - * / and brackets.",
                       {"expression": ("string", "the expression, e.g. '17 * 24'")}),
    "answer": Tool("Give the final answer to the problem; this ends the episode.",
                   {"value": ("number", "the number that answers the problem")}),
}
PLACES = ("warehouse", "bakery", "library", "school", "farm", "toy shop", "garage", "museum")
ITEMS = ("apples", "books", "bolts", "stamps", "marbles", "pencils", "tiles", "candles")
GROUPS = ("shelves", "classes", "boxes", "teams", "shops", "families")
_OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
SYMBOLS = ("+", "-", "*", "/")
LIMIT = 1e12
MAX_EXPRESSION = 200
# what an arithmetic expression is written with: checked before Python's parser sees the text, which
# would read comments, names and NUL differently (and echo them back)
_EXPRESSION_CHARS = frozenset("0123456789.eE_+-*/() ")


def calculate(expression: str) -> float:
    """The value of an arithmetic expression (numbers, + - * /, brackets), safely.

    >>> calculate("(17 * 24 - 135) / 3")
    91.0
    """
    text = " ".join(expression.split())  # blanks of any kind, and any number, read as one space
    if len(text) > MAX_EXPRESSION:
        raise CallError(f"The calculator takes expressions of at most {MAX_EXPRESSION} characters.")
    if not set(text) <= _EXPRESSION_CHARS:
        raise CallError(f"The calculator cannot read {quote(text)}: use numbers, + - * / and brackets.")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:  # also Python's own limit on nested brackets
        raise CallError(f"The calculator cannot read {quote(text)}: use numbers, + - * / and brackets.") from None

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            if not abs(node.value) < LIMIT:
                raise CallError("The calculator's numbers stop at a trillion.")
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            return -value(node.operand) if isinstance(node.op, ast.USub) else value(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Div) and right == 0:
                raise CallError("The calculator cannot divide by zero.")
            result = _OPERATORS[type(node.op)](left, right)
            if not abs(result) < LIMIT:
                raise CallError("The calculator's numbers stop at a trillion.")
            return result
        raise CallError(f"The calculator cannot read {quote(text)}: use numbers, + - * / and brackets.")

    return value(tree.body)


def _verb(expression: str) -> str:
    """What an expression does, in words: the operation at its top."""
    node = ast.parse(expression.strip(), mode="eval").body
    names = {ast.Add: "add two numbers", ast.Sub: "subtract one number from another",
             ast.Mult: "multiply two numbers", ast.Div: "divide one number by another"}
    return names.get(type(node.op), "compute") if isinstance(node, ast.BinOp) else "compute a number"


def show(number: float) -> int | float:
    """A whole number as an int, others rounded to 6 decimals."""
    return int(round(number)) if abs(number - round(number)) < 1e-9 else round(number, 6)


def reference_potential(state: State) -> float:
    """Progress in [0, 1]: the solution's steps whose results are known, then the answer."""
    return (state["steps_done"] + float(state["answered"])) / (state["plan_steps"] + 1)


def distance_potential(state: State) -> float:
    """Minus the calls left in the solution (scaled to [-1, 0])."""
    return reference_potential(state) - 1.0


class ToolCalcEnv(ToolEnv):
    """An arithmetic word problem with a calculator tool; see the module docstring."""

    task = "Solve the arithmetic word problem with the calculator tool, then answer with the number."
    state_schema = {
        "problem": "the problem's numbers and operations, e.g. '17*24-135/3'",
        "computed": "the distinct results the calculator has returned, sorted",
        "steps_done": "how many of the solution's steps, in order, have known results",
        "plan_steps": "how many calculator steps the solution takes",
        "reference_call": "the next call of the solution (JSON)",
        "answered": "whether a correct answer was given",
        "steps": "steps taken in this episode",
    }
    potentials = {"reference": reference_potential, "distance": distance_potential}
    tools = TOOLS
    _shared_on_copy = ToolEnv._shared_on_copy | {"plan", "problem", "answer"}

    @classmethod
    def task_of(cls, steps: int = 3, **_: Any) -> str:
        return f"A {steps}-step arithmetic word problem, solved with a calculator tool and a final answer."

    def __init__(self, steps: int = 3, max_steps: int | None = None, render_mode: str | None = None):
        if not 1 <= steps <= 6:
            raise ValueError(f"steps must be in [1, 6], got {steps}")
        self.steps = steps
        super().__init__(max_steps or 3 * steps + 3, render_mode)

    def _new_episode(self, rng: np.random.Generator) -> str:
        place, item, group = (str(rng.choice(pool)) for pool in (PLACES, ITEMS, GROUPS))
        a, b = int(rng.integers(3, 30)), int(rng.integers(3, 30))
        self.plan: list[tuple[float, str, float]] = [(a, "*", b)]  # (left, operator, right)
        sentences = [f"A {place} has {a} {group} with {b} {item} on each."]
        total = a * b
        for index in range(1, self.steps):
            last = index == self.steps - 1
            divisors = [d for d in range(2, 10) if total % d == 0]
            if last and divisors and rng.random() < 0.5:
                d = int(rng.choice(divisors))
                self.plan.append((total, "/", d))
                sentences.append(f"All the {item} are then shared equally between {d} new {group}.")
                total //= d
            elif rng.random() < 0.5 and total > 20:
                c = int(rng.integers(2, total // 2))
                self.plan.append((total, "-", c))
                sentences.append(f"Then {c} {item} are taken away.")
                total -= c
            else:
                c = int(rng.integers(2, 200))
                self.plan.append((total, "+", c))
                sentences.append(f"Then a delivery brings {c} more {item}.")
                total += c
        shared = self.plan[-1][1] == "/"
        question = f"How many {item} does each new {group[:-1] if group.endswith('s') else group} get?" \
            if shared else f"How many {item} are there in the end?"
        self.problem = " ".join(sentences) + " " + question
        self.answer = float(total)
        self.computed: dict[float, str] = {}  # result -> the expression that gave it
        self.answered = False
        self._event = "You read a new problem."
        return "Use the calculator, then give your answer."

    # -- reading the state ---------------------------------------------------------------------
    def _steps_done(self) -> int:
        done = 0
        for left, symbol, right in self.plan:
            if show(calculate(f"{left} {symbol} {right}")) not in {show(v) for v in self.computed}:
                break
            done += 1
        return done

    def _step_call(self, left: float, symbol: str, right: float) -> str:
        return format_call("calculator", {"expression": f"{show(left)} {symbol} {show(right)}"})

    def _reference_call(self, done: int) -> str:
        if done == len(self.plan):
            return format_call("answer", {"value": show(self.answer)})
        return self._step_call(*self.plan[done])

    def valid_actions(self) -> list[str]:
        done = self._steps_done()
        menu = set()
        if done < len(self.plan):  # the next step, and its numbers under the other operators
            left, _, right = self.plan[done]
            menu |= {self._step_call(left, symbol, right) for symbol in SYMBOLS
                     if self._new_result(f"{show(left)} {symbol} {show(right)}")}
        answers = {show(self.plan[0][0])} | {show(v) for v in list(self.computed)[-1:]}
        if done == len(self.plan):
            answers.add(show(self.answer))
        menu |= {format_call("answer", {"value": value}) for value in answers}
        return sorted(menu)

    def _new_result(self, expression: str) -> bool:
        """Whether the calculator would return a result not among the results yet: a call that
        changes the state (a result already known, or a refused call, changes nothing)."""
        try:
            return calculate(expression) not in self.computed
        except CallError:
            return False

    def symbolic_state(self) -> State:
        problem = "".join(f"{show(left) if i == 0 else ''}{symbol}{show(right)}"
                          for i, (left, symbol, right) in enumerate(self.plan))
        done = self._steps_done()
        return {"problem": problem, "computed": ", ".join(str(show(v)) for v in sorted(self.computed)),
                "steps_done": done, "plan_steps": len(self.plan), "reference_call": self._reference_call(done),
                "answered": self.answered}

    def _observe(self, message: str) -> str:
        lines = [f"Problem: {self.problem}", message]
        if self.computed:
            lines.append("Calculator results: " + "; ".join(f"{e} = {show(v)}" for v, e in self.computed.items()) + ".")
        lines.append('Call {"name": "calculator", "arguments": {"expression": ...}} or '
                     '{"name": "answer", "arguments": {"value": ...}}.')
        return "\n".join(lines)

    # -- acting ----------------------------------------------------------------------------------
    def _call(self, name: str, arguments: dict[str, Any]) -> Outcome:
        if name == "calculator":
            expression = " ".join(str(arguments["expression"]).split())  # shown as read, on one line
            result = calculate(expression)
            self.computed.setdefault(result, expression)
            self._event = f"You {_verb(expression)} with the calculator."
            return Outcome(f"calculator: {expression} = {show(result)}")
        value = arguments["value"]
        try:
            number = float(value) if not isinstance(value, bool) else float("nan")
        except (TypeError, ValueError, OverflowError):  # OverflowError: an integer past a float's range
            number = float("nan")
        if not np.isfinite(number):
            raise CallError(f"The answer must be a finite number, not {quote(str(value))}.")
        return self._verdict(abs(number - self.answer) < 1e-6, show(number), show(self.answer))
