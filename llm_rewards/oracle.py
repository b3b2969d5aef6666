"""LLMs of known quality: the env's privileged answer, wrong at a stated rate.

Every LLM method takes ``llm=oracle`` or ``llm=oracle(error=p, mode=flip|positive, seed=s)`` in
place of a model. The oracle answers what a perfect model would, from the env's privileged state
(each method says how: ONI and CALM label by whether the ``reference`` potential rose, Motif
prefers the caption whose transition raised it more, ELLM suggests the task's remaining subgoals
worded as the captions achieving them produces, the web judge rates a page by the potential of
its state), and each answer is then corrupted, independently, with probability ``error``:

- ``flip``: replaced by a wrong answer (the other label; another preference; a goal or rating
  drawn from the wrong ones);
- ``positive``: replaced by the "yes" answer whatever the truth (helpful, achieved, the first
  description preferred, the top rating; for ELLM a goal that is not progress added to the true
  ones): the bias the embedded judge shows, which rates 28 of 30 master keys as progress.

``error=0`` is the privileged answer itself. Answers go through the same paths as a model's (ONI's
annotator, the methods' caches), and each corruption draw comes from the oracle's own stream
(``seed``, else the method's): the same run gives the same answers. ``align-gym llm judge-check
--llm "oracle(error=0.3)"`` measures the corruption on real captions.

>>> oracle = parse_oracle("oracle(error=0.25, mode=positive)")
>>> oracle
Oracle(error=0.25, mode='positive', seed=None)
>>> corrupt = oracle.corruption(seed=0)
>>> sum(corrupt.label(False) for _ in range(10_000)) / 10_000  # about 0.25 said yes though the truth is no
0.2524
>>> parse_oracle("hf:default") is None
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MODES = ("flip", "positive")


@dataclass(frozen=True)
class Oracle:
    """An oracle LLM: the privileged answer, corrupted with probability ``error`` (see the module docstring)."""

    error: float = 0.0
    mode: str = "flip"
    seed: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.error, (int, float)) or not 0.0 <= float(self.error) <= 1.0:
            raise ValueError(f"oracle error must be a probability in [0, 1], got {self.error!r}")
        if self.mode not in MODES:
            raise ValueError(f"oracle mode must be one of {MODES}, got {self.mode!r}")

    def corruption(self, seed: int = 0) -> Corruption:
        """The corrupting stream: the oracle's own ``seed`` where it has one, else ``seed``."""
        return Corruption(self, self.seed if self.seed is not None else seed)

    def __str__(self) -> str:
        return f"oracle(error={self.error:g}, mode={self.mode}" + (f", seed={self.seed})" if self.seed is not None else ")")


def parse_oracle(llm: Any) -> Oracle | None:
    """The :class:`Oracle` an ``llm`` argument names (``"oracle"``, ``"oracle(error=0.1)"`` or an
    Oracle), or None for a real model's spec or client."""
    if isinstance(llm, Oracle):
        return llm
    if not isinstance(llm, str):
        return None
    text = llm.strip()
    if text == "oracle":
        return Oracle()
    if not text.startswith("oracle("):
        return None
    from ..wrappers.registry import parse_spec

    try:
        [layer] = parse_spec(text)
        return Oracle(**layer.kwargs)
    except TypeError as error:
        raise ValueError(f"bad oracle {text!r}: it takes error=, mode= and seed= ({error})") from None


class Corruption:
    """One oracle's corrupting draws, one per answer; ``stats`` counts answers and corruptions."""

    def __init__(self, oracle: Oracle, seed: int = 0):
        self.oracle, self.error, self.positive = oracle, float(oracle.error), oracle.mode == "positive"
        self.rng = np.random.default_rng(seed)
        self.stats = {"oracle_answers": 0, "oracle_corrupted": 0}

    def _hit(self) -> bool:
        self.stats["oracle_answers"] += 1
        hit = self.error > 0 and bool(self.rng.random() < self.error)
        self.stats["oracle_corrupted"] += hit
        return hit

    def label(self, truth: bool) -> bool:
        """A yes/no answer (helpful, achieved)."""
        if not self._hit():
            return bool(truth)
        return True if self.positive else not truth

    def preference(self, truth: float) -> float:
        """P(the second description is better) in {0, 0.5, 1}: a wrong one is one of the other two
        answers at random; the positive bias prefers the first description."""
        if not self._hit():
            return truth
        if self.positive:
            return 0.0
        wrong = [p for p in (0.0, 0.5, 1.0) if not np.isclose(p, truth)]
        return wrong[int(self.rng.integers(len(wrong)))]

    def choice(self, truth: Any, wrong: Sequence[Any], yes: Sequence[Any] = ()) -> Any:
        """One of several answers (a subgoal index, a rating): a wrong one drawn from ``wrong``, or
        under the positive bias one of the ``yes`` answers (the truth where none is given)."""
        if not self._hit():
            return truth
        options = yes if self.positive else wrong
        return options[int(self.rng.integers(len(options)))] if len(options) else truth

    def goals(self, truth: Sequence[str], wrong: Sequence[str]) -> list[str]:
        """ELLM's suggestions: under ``flip`` each true goal is replaced by a wrong one with
        probability ``error``; under ``positive`` the answer also holds a wrong goal (every event
        looks like progress) with probability ``error``."""
        if self.positive:
            if self._hit() and len(wrong):
                return [*truth, wrong[int(self.rng.integers(len(wrong)))]]
            return list(truth)
        return [self.choice(goal, [w for w in wrong if w != goal]) for goal in truth]
