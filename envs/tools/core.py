"""What the tool tasks share: JSON calls parsed against ``tools``, captions that name the kind of
event, the final answer's verdict, and :func:`plain`, the one-line ASCII form in which a task
shows text it does not control (a database value, an error that echoes a query, an answer).

A :class:`ToolEnv` subclass sets ``tools`` (name -> :class:`~align_gym.envs.tools.calls.Tool`) and implements
:meth:`ToolEnv._call`, which sets ``self._event`` (the caption) and returns an
:class:`~align_gym.envs.text.core.Outcome`, raises :class:`~align_gym.envs.tools.calls.CallError`
for a refused call, and ends with :meth:`ToolEnv._verdict` for an answer.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..text.core import Outcome, TextEnv
from .calls import CallError, Tool, parse_call


def plain(text: str, limit: int) -> str:
    """``text`` on one line of printable ASCII, at most ``limit`` characters of it: every other
    character escaped as Python's ``ascii()`` writes it (``\\u043a``, ``\\x00``, ``\\n``), and a
    longer text cut with a note of its length, so an observation stays in its space and says so.

    >>> print(plain("ключ", 200))
    \\u043a\\u043b\\u044e\\u0447
    >>> print(plain("x" * 1000, 5))
    xxxxx...(truncated: 1,000 characters)
    """
    shown = "".join(char if " " <= char <= "~" else ascii(char)[1:-1] for char in text[:limit])
    if len(text) <= limit and len(shown) <= limit:
        return shown
    return f"{shown[:limit]}...(truncated: {len(text):,} characters)"


class ToolEnv(TextEnv):
    """Base of the tool tasks: one JSON call per action; see the module docstring."""

    tools: ClassVar[dict[str, Tool]] = {}

    def _call(self, name: str, arguments: dict[str, Any]) -> Outcome:
        raise NotImplementedError

    def _caption(self, message: str, valid: bool = True) -> str:
        # What happened, without its numbers or rows: a caption per kind of event, not per
        # problem, so caption-reading methods (counts, ELLM, ONI) see dozens of captions, not thousands.
        return self._event

    def _act(self, command: str) -> Outcome:
        self._event = "Your call was refused."
        try:
            return self._call(*parse_call(command, self.tools))
        except CallError as error:
            return Outcome(str(error), valid=False)

    def _verdict(self, correct: bool, given: Any, answer: Any) -> Outcome:
        """The outcome of a final answer: reward 1 if correct, and the episode ends either way."""
        self.answered = correct
        self._event = f"You answer {'correctly' if correct else 'wrongly'}."
        verdict = "correct" if correct else f"wrong (the answer was {plain(str(answer), 60)})"
        return Outcome(f"Your answer {plain(str(given), 60)} is {verdict}.", reward=float(correct), terminated=True,
                       success=correct, reward_parts={"answer": float(correct)})
