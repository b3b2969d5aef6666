"""The one client protocol every LLM backend keeps, and its usage accounting.

A prompt is either a string (a raw completion prompt) or a list of chat messages
(``[{"role": "user", "content": ...}]``, rendered with the model's chat template).

- ``generate(prompts, *, max_tokens, temperature, n, stop, seed) -> list[list[str]]``: ``n``
  completions per prompt. ``temperature=0`` is greedy decoding.
- ``score(prompts, continuations) -> list[list[float]]``: the log-probability of each token of
  each continuation given its prompt. Sums and length-normalised means derive from them
  (:func:`total_logprob`, :func:`mean_logprob`); token-level agents need the per-token values.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

Message = dict[str, str]
Prompt = str | list[Message]


@dataclass
class Usage:
    """What a client has spent: calls, tokens, cache hits and wall time."""

    calls: int = 0
    prompts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    errors: int = 0
    retries: int = 0
    wall_time: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class LLMClient(ABC):
    """Base class of the backends: the protocol plus thread-safe usage accounting."""

    backend: str = ""

    def __init__(self, model: str):
        self.model = model
        self.usage = Usage()
        self._usage_lock = threading.Lock()

    @abstractmethod
    def generate(self, prompts: Sequence[Prompt], *, max_tokens: int = 64, temperature: float = 0.0, n: int = 1,
                 stop: Sequence[str] | None = None, seed: int | None = None) -> list[list[str]]:
        """``n`` completions for each prompt."""

    @abstractmethod
    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[list[float]]:
        """Per-token log-probabilities of ``continuations[i]`` after ``prompts[i]``."""

    def completions(self, prompts: Sequence[Prompt], *, max_tokens: int = 64, temperature: float = 0.0, n: int = 1,
                    stop: Sequence[str] | None = None, seed: int | None = None, top_logprobs: int = 0) -> list[list[Any]]:
        """Like :meth:`generate`, with each completion's tokens, their log-probabilities, the
        ``top_logprobs`` likeliest alternatives per token and the finish reason
        (:class:`~align_gym.llm_rewards.clients.decoding.Result`). Not cached: for callers that
        need the tokens (token-level agents), where the backend offers them."""
        raise NotImplementedError(f"the {self.backend} backend does not return token log-probabilities")

    def count(self, **amounts: float) -> None:
        with self._usage_lock:
            for name, amount in amounts.items():
                setattr(self.usage, name, getattr(self.usage, name) + amount)

    @contextmanager
    def timed_call(self, n_prompts: int):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.count(calls=1, prompts=n_prompts, wall_time=time.perf_counter() - start)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model}


def total_logprob(token_logprobs: Sequence[float]) -> float:
    """Log-probability of a whole continuation (TWOSOME's unnormalised ``S(a)``)."""
    return float(sum(token_logprobs))


def mean_logprob(token_logprobs: Sequence[float]) -> float:
    """Token-length-normalised log-probability (TWOSOME's token normalisation)."""
    return float(sum(token_logprobs) / max(len(token_logprobs), 1))


def render_prompt(tokenizer: Any, prompt: Prompt) -> str:
    """The text a local model sees: chat messages through its chat template, strings as they are."""
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(list(prompt), tokenize=False, add_generation_prompt=True)


def check_sampling(max_tokens: int, temperature: float, n: int) -> None:
    if max_tokens < 0:
        raise ValueError(f"max_tokens must be >= 0, got {max_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n > 1 and temperature == 0:
        raise ValueError("n > 1 completions need temperature > 0 (greedy decoding gives n identical answers)")


def cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """Truncate ``text`` at the first occurrence of any stop string."""
    if not stop:
        return text
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]
