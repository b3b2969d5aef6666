"""ToolRL's reward for tool calls (Qian et al. 2025, "ToolRL: Reward is All Tool Learning Needs").

Each action (the text of a call) is scored against the reference call of the state it was taken
in (``info["state"]["reference_call"]``, which the tool tasks provide):

- ``R_format`` in {0, 1}: the action is well formed. The paper checks its ``<think>``,
  ``<tool_call>`` and ``<response>`` tags; here, a JSON object ``{"name": str, "arguments": {...}}``
  (an action may hold several, one after another: a parallel call);
- ``R_correct`` in [-3, 3]: predicted calls are matched to reference calls, one to one, to
  maximise the score (the paper's code matches greedily; an optimal matching is its intent). The
  score is the Jaccard similarity of the two sets of tool names, plus, for each matched pair, the
  Jaccard similarity of their argument names and the count of reference arguments whose values
  match exactly. It is divided by its maximum, ``1 + #reference calls + #reference arguments``,
  and mapped to [-3, 3] by ``6 * score / max - 3``.

The term is ``coef * (R_format + R_correct)``, in ``coef * [-3, 4]``, added to the task reward
each step (the paper trains on this reward alone, one call turn at a time). It is not
potential-based: ``invariant = False``. It reads the command's text, so it applies to the text ids
(``Align/ToolCalc-v0``), not to their ``-Choice`` views, whose actions are slot numbers.

>>> toolrl_reward('{"name": "calculator", "arguments": {"expression": "2 * 3"}}',
...               '{"name": "calculator", "arguments": {"expression": "2 * 3"}}')
4.0
>>> toolrl_reward('{"name": "calculator", "arguments": {"expression": "2 + 3"}}',
...               '{"name": "calculator", "arguments": {"expression": "2 * 3"}}')
2.0
>>> toolrl_reward("2 * 3", '{"name": "calculator", "arguments": {"expression": "2 * 3"}}')
-3.0
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np

from .core import RewardModule, TransitionBatch


def parse_calls(text: str) -> list[dict[str, Any]] | None:
    """The JSON calls in ``text`` (one or more objects, back to back), or None if malformed."""
    decoder, calls, position = json.JSONDecoder(), [], 0
    text = text.strip()
    while position < len(text):
        try:
            call, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            return None
        if not (isinstance(call, dict) and isinstance(call.get("name"), str) and isinstance(call.get("arguments"), dict)):
            return None
        calls.append(call)
        position = end
        while position < len(text) and text[position] in " \n\t,":
            position += 1
    return calls or None


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def _pair_score(predicted: dict[str, Any], reference: dict[str, Any]) -> float:
    if predicted["name"] != reference["name"]:
        return 0.0
    p, r = predicted["arguments"], reference["arguments"]
    return _jaccard(set(p), set(r)) + sum(1 for key, value in r.items() if key in p and p[key] == value)


def _best_matching(predicted: list[dict], reference: list[dict]) -> float:
    """The largest total pair score over one-to-one matchings (brute force: calls are few)."""
    if len(predicted) > 6 or len(reference) > 6:  # greedy beyond that, as the paper's code does
        return sum(max((_pair_score(p, r) for p in predicted), default=0.0) for r in reference)
    small, large = (predicted, reference) if len(predicted) <= len(reference) else (reference, predicted)
    best = 0.0
    for chosen in itertools.permutations(large, len(small)):
        pairs = zip(small, chosen) if small is predicted else zip(chosen, small)
        best = max(best, sum(_pair_score(p, r) for p, r in pairs))
    return best


def toolrl_reward(action: str, reference: str) -> float:
    """``R_format + R_correct`` of an action's calls against the reference call(s), in [-3, 4]."""
    predicted, expected = parse_calls(action), parse_calls(reference)
    if expected is None:
        raise ValueError(f"the reference call is not well formed: {reference[:80]!r}")
    if predicted is None:
        return -3.0  # no format reward, and nothing matches
    score = _jaccard({c["name"] for c in predicted}, {c["name"] for c in expected}) + _best_matching(predicted, expected)
    maximum = 1 + len(expected) + sum(len(c["arguments"]) for c in expected)
    return 1.0 + 6.0 * score / maximum - 3.0


class ToolRLReward(RewardModule):
    """The ToolRL reward of each step's call as a shaping term (see the module docstring)."""

    invariant = False
    needs = frozenset({"actions", "states"})

    def __init__(self, coef: float = 1.0, name: str = "toolrl"):
        self.coef, self.name = coef, name

    def reward(self, batch: TransitionBatch) -> np.ndarray:
        out = np.empty(len(batch))
        for i, (action, state) in enumerate(zip(batch.actions, batch.states)):
            if "reference_call" not in state:
                raise ValueError("toolrl needs info['state']['reference_call'], which the tool tasks "
                                 "(Align/ToolCalc-v0, Align/ToolSQL-v0) give")
            out[i] = self.coef * toolrl_reward(str(action), state["reference_call"])
        return out


def make_toolrl(env: Any, gamma: float, coef: float = 1.0, name: str = "toolrl") -> ToolRLReward:
    """The ``toolrl`` shaping; ``env`` must take text actions (a tool task's text id)."""
    from gymnasium import spaces

    space = getattr(env, "single_action_space", None) or env.action_space
    if not isinstance(space, spaces.Text):
        raise ValueError(f"toolrl scores the text of each call, but this env's actions are {space}: "
                         "use the text id (Align/ToolCalc-v0), not its -Choice view")
    return ToolRLReward(coef, name)
