"""Every call through the on-disk cache: only prompts never seen reach the backend.

Keys hold the backend, model, prompt template (name and version), prompt and sampling
parameters, so a run replays exactly from its cache file (``LLMCache(path, mode="replay")``
fails loudly on a miss). Sampled generations (``temperature > 0``) are cached too, by seed:
replaying a run replays its samples.
"""

from __future__ import annotations

from collections.abc import Sequence
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
                extras: Sequence[Any] | None, compute) -> list[Any]:
        name, version = _template_parts(template)
        keys = [cache_key(backend=self.backend, model=self.model, template=name, template_version=version,
                          prompt=prompt, params={**params, "kind": kind, **({"continuation": extras[i]} if extras else {})})
                for i, prompt in enumerate(prompts)]
        found = self.cache.get_many(keys)
        missing = [i for i, key in enumerate(keys) if key not in found]
        self.count(cache_hits=len(keys) - len(missing), cache_misses=len(missing))
        if missing:
            values = compute(missing)
            for i, value in zip(missing, values):
                found[keys[i]] = value
                self.cache.put(keys[i], value, backend=self.backend, model=self.model, template=name,
                               template_version=version, prompt=prompts[i],
                               params={**params, "kind": kind, **({"continuation": extras[i]} if extras else {})})
        return [found[key] for key in keys]

    def generate(self, prompts: Sequence[Prompt], *, max_tokens: int = 64, temperature: float = 0.0, n: int = 1,
                 stop: Sequence[str] | None = None, seed: int | None = None,
                 template: str = RAW_TEMPLATE) -> list[list[str]]:
        params = {"max_tokens": max_tokens, "temperature": temperature, "n": n, "stop": list(stop or []), "seed": seed}
        return self._cached("generate", prompts, params, template, None,
                            lambda idx: self.inner.generate([prompts[i] for i in idx], max_tokens=max_tokens,
                                                            temperature=temperature, n=n, stop=stop, seed=seed))

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str], *,
              template: str = RAW_TEMPLATE) -> list[list[float]]:
        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
        return self._cached("score", prompts, {}, template, continuations,
                            lambda idx: self.inner.score([prompts[i] for i in idx], [continuations[i] for i in idx]))
