"""Every call through the on-disk cache: only prompts never seen reach the backend.

Keys hold the backend, model, prompt template (name and version), prompt and sampling
parameters, so a run replays exactly from its cache file (``LLMCache(path, mode="replay")``
fails loudly on a miss). What a call returns is what the cache holds (the first writer's value,
whoever computed it). Sampling calls (``temperature > 0`` without a seed) are keyed by the
cache's run id and their occurrence in the run, and sent to the backend with a seed derived from
both: repeated calls draw distinct samples, runs draw independent ones, and a replay returns them
in order (see :mod:`align_gym.llm_rewards.cache`, "Exact replay").
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from ..cache import LLMCache, cache_key
from .base import LLMClient, Prompt

RAW_TEMPLATE = "raw"


def _template_parts(template: str) -> tuple[str, str]:
    name, _, version = template.partition("@")
    return name, version or "v0"


class CachedClient(LLMClient):
    """Wraps a client with an :class:`~align_gym.llm_rewards.cache.LLMCache`.

    ``template`` (``"name@vN"``, e.g. a :class:`PromptTemplate`'s ``key``) names the prompt
    template the prompts were rendered from; it is part of the cache key.
    """

    def __init__(self, inner: LLMClient, cache: LLMCache):
        super().__init__(inner.model)
        self.inner, self.cache = inner, cache
        self.backend = inner.backend
        self.usage = inner.usage  # one account: the backend's tokens plus this layer's hits and misses

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def _cached(self, kind: str, prompts: Sequence[Prompt], params: dict[str, Any], template: str,
                extras: Sequence[Any] | None, compute: Callable[[list[int], list[int | None]], list[Any]],
                sampling: bool = False) -> list[Any]:
        """Values of the calls from the cache, computing the missing ones with
        ``compute(indices, seeds)`` (``seeds[i]`` is the derived seed of a sampling call)."""
        name, version = _template_parts(template)

        def key(i: int, occurrence: int | None = None):
            call = {**params, "kind": kind, **({"continuation": extras[i]} if extras else {})}
            if occurrence is not None:
                call.update(run=self.cache.run_id, occurrence=occurrence)
            return cache_key(backend=self.backend, model=self.model, template=name, template_version=version,
                             prompt=prompts[i], params=call)

        keys, seeds = [], []
        for i in range(len(prompts)):
            if sampling:  # a fresh draw: the k-th identical call of this run is occurrence k
                call = key(i)
                occurrence = self.cache.next_occurrence(call)
                keys.append(key(i, occurrence))
                seeds.append(derived_seed(self.cache.run_id, call, occurrence))
            else:
                keys.append(key(i))
                seeds.append(None)
        found = self.cache.get_many(keys)
        missing = [i for i, k in enumerate(keys) if k not in found]
        self.count(cache_hits=len(keys) - len(missing), cache_misses=len(missing))
        if missing:
            values = compute(missing, [seeds[i] for i in missing])
            # What the cache holds wins: another process may have stored these keys meanwhile.
            found.update(self.cache.put_many([{"key": keys[i], "value": value} for i, value in zip(missing, values)]))
        return [found[k] for k in keys]

    def generate(self, prompts: Sequence[Prompt], *, max_tokens: int = 64, temperature: float = 0.0, n: int = 1,
                 stop: Sequence[str] | None = None, seed: int | None = None,
                 template: str = RAW_TEMPLATE) -> list[list[str]]:
        params = {"max_tokens": max_tokens, "temperature": temperature, "n": n, "stop": list(stop or []), "seed": seed}
        sampling = temperature > 0 and seed is None

        def compute(indices: list[int], seeds: list[int | None]) -> list[list[str]]:
            if not sampling:
                return self.inner.generate([prompts[i] for i in indices], max_tokens=max_tokens,
                                           temperature=temperature, n=n, stop=stop, seed=seed)
            # one call per draw, each with its own derived seed: a draw never depends on its batch
            return [self.inner.generate([prompts[i]], max_tokens=max_tokens, temperature=temperature, n=n,
                                        stop=stop, seed=draw_seed)[0] for i, draw_seed in zip(indices, seeds)]

        return self._cached("generate", prompts, params, template, None, compute, sampling=sampling)

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str], *,
              template: str = RAW_TEMPLATE) -> list[list[float]]:
        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
        return self._cached("score", prompts, {}, template, continuations,
                            lambda idx, _: self.inner.score([prompts[i] for i in idx], [continuations[i] for i in idx]))


def derived_seed(run_id: str, call: str, occurrence: int) -> int:
    """The backend seed of a run's ``occurrence``-th sampling call ``call`` (a cache key)."""
    digest = hashlib.sha256(f"{run_id}|{call}|{occurrence}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
