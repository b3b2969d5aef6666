"""LLM clients behind one protocol, chosen by a spec string.

==========================================  =============================================
spec                                        backend
==========================================  =============================================
``hf:default``                              the embedded SmolLM2-135M-Instruct (CPU)
``hf:/path/to/model``                       any local Hugging Face causal LM
``openai:MODEL@http://127.0.0.1:8000/v1``   any OpenAI-compatible server
``vllm:MODEL``                              in-process vLLM on a GPU (extra ``[vllm]``)
==========================================  =============================================

>>> client = get_client("hf:default")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from .base import LLMClient, Message, Prompt, Usage, mean_logprob, total_logprob

# backend name -> (module, class, how the rest of the spec becomes constructor arguments)
BACKENDS: dict[str, tuple[str, str]] = {
    "hf": ("transformers_backend", "TransformersClient"),
    "openai": ("openai_backend", "OpenAIClient"),
    "vllm": ("vllm_backend", "VLLMClient"),
}


def parse_client_spec(spec: str) -> tuple[str, list[Any]]:
    """``"openai:m@http://h/v1"`` -> ``("openai", ["m", "http://h/v1"])``; raises on a bad spec."""
    backend, sep, rest = spec.partition(":")
    if not sep or backend not in BACKENDS or not rest:
        raise ValueError(f"bad LLM spec {spec!r}: use hf:default, hf:/path/to/model, "
                         "openai:MODEL@http://127.0.0.1:8000/v1 or vllm:MODEL")
    if backend == "openai":
        model, at, url = rest.partition("@")
        if not at or not url.startswith(("http://", "https://")):
            raise ValueError(f"bad LLM spec {spec!r}: openai needs MODEL@BASE_URL, e.g. openai:my-model@http://127.0.0.1:8000/v1")
        return backend, [model, url]
    return backend, [rest]


def generate_from_template(client: Any, prompts: list, template_key: str, **params: Any) -> list[list[str]]:
    """``client.generate(prompts, **params)``, keyed by the prompt template where the client keeps
    a cache (a :class:`~align_gym.llm_rewards.clients.cached.CachedClient` takes ``template``)."""
    keyed = {"template": template_key} if "template" in inspect.signature(client.generate).parameters else {}
    return client.generate(prompts, **params, **keyed)


def cost_stats(client: Any) -> dict[str, float]:
    """What an LLM client has spent, for a reward module's update stats (``llm_calls``,
    ``llm_cache_hits``, ``llm_completion_tokens``); empty when there is no client yet."""
    usage = getattr(client, "usage", None)
    if usage is None:
        return {}
    return {"llm_calls": float(usage.calls), "llm_cache_hits": float(usage.cache_hits),
            "llm_completion_tokens": float(usage.completion_tokens)}


def get_client(spec: str, *, cache: Any = "default", **kwargs: Any) -> LLMClient:
    """The client ``spec`` names, wrapped in the on-disk cache.

    ``cache`` is ``"default"`` (the shared cache file, see :meth:`LLMCache.default`), an
    :class:`~align_gym.llm_rewards.cache.LLMCache`, a path, or None for no cache.
    """
    backend, args = parse_client_spec(spec)
    module_name, class_name = BACKENDS[backend]
    module = importlib.import_module(f".{module_name}", __name__)
    client = getattr(module, class_name)(*args, **kwargs)
    if cache is None:
        return client
    from ..cache import LLMCache
    from .cached import CachedClient

    if cache == "default":
        cache = LLMCache.default()
    elif not isinstance(cache, LLMCache):
        cache = LLMCache(cache)
    return CachedClient(client, cache)


__all__ = ["BACKENDS", "LLMClient", "Message", "Prompt", "Usage", "cost_stats", "generate_from_template", "get_client", "mean_logprob",
           "parse_client_spec", "total_logprob"]
