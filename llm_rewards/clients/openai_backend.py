"""Any OpenAI-compatible server (``vllm serve``, llama.cpp's server, ``align-gym serve-llm``, hosted
APIs), selected by ``base_url``.

Requests time out, are retried with exponential backoff and jitter on 429, 5xx and connection
errors (``Retry-After`` is honoured), and at most ``concurrency`` run at once. The API key is read
from an environment variable (``OPENAI_API_KEY`` by default) and never logged. ``score`` asks the
completions endpoint to echo the prompt with log-probabilities (vLLM and ``serve-llm`` support
this); a server that does not gets a clear error.

>>> client = OpenAIClient("Qwen/Qwen2.5-7B-Instruct", "http://127.0.0.1:8000/v1")  # doctest: +SKIP
>>> client.generate([[{"role": "user", "content": "Say hi."}]], max_tokens=8)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .base import LLMClient, Prompt, check_sampling, cut_at_stop
from .decoding import Result

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class LLMServerError(RuntimeError):
    """A request that failed for good: a non-retryable status, or retries used up."""


class OpenAIClient(LLMClient):
    """Client of an OpenAI-compatible HTTP API."""

    backend = "openai"

    def __init__(self, model: str, base_url: str = "http://127.0.0.1:8000/v1", *, api_key_env: str = "OPENAI_API_KEY",
                 timeout: float = 60.0, max_retries: int = 5, backoff: float = 0.5, max_backoff: float = 20.0,
                 concurrency: int = 8):
        import httpx

        super().__init__(model)
        self.base_url = base_url.rstrip("/")
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self._jitter = random.Random()  # its own: the global RNG belongs to the agent
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="openai-client")

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "model": self.model, "base_url": self.base_url}

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._http.close()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        attempt = 0
        while True:
            try:
                response = self._http.post(path, json=body)
                if response.status_code < 400:
                    return response.json()
                if response.status_code not in RETRY_STATUS or attempt >= self.max_retries:
                    self.count(errors=1)
                    raise LLMServerError(f"{self.base_url}{path} answered {response.status_code}: {response.text[:300]}")
                wait = _retry_after(response) or self._delay(attempt)
            except (httpx.TransportError, httpx.TimeoutException) as error:
                if attempt >= self.max_retries:
                    self.count(errors=1)
                    raise LLMServerError(f"{self.base_url}{path} failed after {attempt + 1} tries: {error!r}") from error
                wait = self._delay(attempt)
            attempt += 1
            self.count(retries=1)
            time.sleep(wait)

    def _delay(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff * 2 ** attempt) * (0.5 + self._jitter.random() / 2)

    def _one_generation(self, prompt: Prompt, params: dict[str, Any]) -> list[str]:
        if isinstance(prompt, str):
            reply = self._post("/completions", {"model": self.model, "prompt": prompt, **params})
            texts = [choice["text"] for choice in sorted(reply["choices"], key=lambda c: c.get("index", 0))]
        else:
            reply = self._post("/chat/completions", {"model": self.model, "messages": list(prompt), **params})
            texts = [choice["message"]["content"] or "" for choice in sorted(reply["choices"], key=lambda c: c.get("index", 0))]
        usage = reply.get("usage") or {}
        self.count(prompt_tokens=usage.get("prompt_tokens", 0), completion_tokens=usage.get("completion_tokens", 0))
        return texts

    def generate(self, prompts: Sequence[Prompt], *, max_tokens: int = 64, temperature: float = 0.0, n: int = 1,
                 stop: Sequence[str] | None = None, seed: int | None = None) -> list[list[str]]:
        check_sampling(max_tokens, temperature, n)
        params: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature, "n": n}
        if stop:
            params["stop"] = list(stop)
        if seed is not None:
            params["seed"] = seed
        with self.timed_call(len(prompts)):
            results = list(self._pool.map(lambda p: self._one_generation(p, params), prompts))
        return [[cut_at_stop(text, stop) for text in texts] for texts in results]

    def completions(self, prompts: Sequence[Prompt], *, max_tokens: int = 64, temperature: float = 0.0, n: int = 1,
                    stop: Sequence[str] | None = None, seed: int | None = None, top_logprobs: int = 0) -> list[list[Result]]:
        """Completions with the server's token log-probabilities (``logprobs`` on
        ``/v1/completions``, ``logprobs``/``top_logprobs`` on chat), as vLLM's server gives them."""
        check_sampling(max_tokens, temperature, n)
        params: dict[str, Any] = {"max_tokens": max_tokens, "temperature": temperature, "n": n,
                                  **({"stop": list(stop)} if stop else {}), **({"seed": seed} if seed is not None else {})}
        with self.timed_call(len(prompts)):
            return list(self._pool.map(lambda p: self._one_completion(p, params, top_logprobs), prompts))

    def _one_completion(self, prompt: Prompt, params: dict[str, Any], top: int) -> list[Result]:
        if isinstance(prompt, str):
            reply = self._post("/completions", {"model": self.model, "prompt": prompt, "logprobs": max(top, 1), **params})
        else:
            reply = self._post("/chat/completions", {"model": self.model, "messages": list(prompt), "logprobs": True,
                                                     "top_logprobs": top, **params})
        out = []
        for choice in sorted(reply["choices"], key=lambda c: c.get("index", 0)):
            logprobs = choice.get("logprobs") or {}
            if isinstance(prompt, str):
                text, tokens = choice["text"], list(logprobs.get("tokens") or [])
                values = [float(v) for v in logprobs.get("token_logprobs") or []]
                alternatives = [dict(t) for t in logprobs.get("top_logprobs") or []] if top else []
            else:
                text, content = choice["message"]["content"] or "", logprobs.get("content") or []
                tokens, values = [t["token"] for t in content], [float(t["logprob"]) for t in content]
                alternatives = [{a["token"]: float(a["logprob"]) for a in t.get("top_logprobs") or []}
                                for t in content] if top else []
            if not tokens:
                raise LLMServerError(f"{self.base_url} returned no token log-probabilities: completions needs a server "
                                     "that does, e.g. vllm serve or align-gym serve-llm")
            out.append(Result(text, [], tokens, values, [{k: v for k, v in list(a.items())[:top]} for a in alternatives],
                              choice.get("finish_reason") or "stop"))
        usage = reply.get("usage") or {}
        self.count(prompt_tokens=usage.get("prompt_tokens", 0), completion_tokens=usage.get("completion_tokens", 0))
        return out

    def _one_score(self, prompt: Prompt, continuation: str) -> list[float]:
        if not isinstance(prompt, str):
            raise ValueError("openai score needs string prompts: render chat messages to text first "
                             "(the completions endpoint scores raw text)")
        body = {"model": self.model, "prompt": prompt + continuation, "max_tokens": 0, "echo": True,
                "logprobs": 1, "temperature": 0.0}
        reply = self._post("/completions", body)
        logprobs = (reply.get("choices") or [{}])[0].get("logprobs") or {}
        tokens, values, offsets = logprobs.get("tokens"), logprobs.get("token_logprobs"), logprobs.get("text_offset")
        if not tokens or values is None or offsets is None:
            raise LLMServerError(f"{self.base_url} does not return prompt log-probabilities (echo=True, logprobs): "
                                 "score needs a server that does, e.g. vllm serve or align-gym serve-llm")
        start = len(prompt)
        # The continuation's tokens are those that begin at or after the prompt's end.
        picked = [float(v) for v, offset in zip(values, offsets) if offset >= start and v is not None]
        self.count(prompt_tokens=len(tokens))
        return picked

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[list[float]]:
        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
        with self.timed_call(len(prompts)):
            return list(self._pool.map(lambda pc: self._one_score(*pc), zip(prompts, continuations)))


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return min(float(value), 60.0) if value is not None else None
    except ValueError:
        return None
