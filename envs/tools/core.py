"""What the tool tasks share: JSON calls parsed against ``tools``, captions that name the kind of
event, and the final answer's verdict.

A :class:`ToolEnv` subclass sets ``tools`` (name -> :class:`~align_gym.envs.tools.calls.Tool`) and implements
:meth:`ToolEnv._call`, which sets ``self._event`` (the caption) and returns an
:class:`~align_gym.envs.text.core.Outcome`, raises :class:`~align_gym.envs.tools.calls.CallError`
for a refused call, and ends with :meth:`ToolEnv._verdict` for an answer.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..text.core import Outcome, TextEnv
from .calls import CallError, Tool, parse_call


class ToolEnv(TextEnv):
    """Base of the tool tasks: one JSON call per action; see the module docstring."""

    tools: ClassVar[dict[str, Tool]] = {}

    def _call(self, name: str, arguments: dict[str, Any]) -> Outcome:
        raise NotImplementedError

    def _caption(self, message: str) -> str:
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
        verdict = "correct" if correct else f"wrong (the answer was {answer})"
        return Outcome(f"Your answer {str(given)[:60]} is {verdict}.", reward=float(correct), terminated=True,
                       success=correct, reward_parts={"answer": float(correct)})
