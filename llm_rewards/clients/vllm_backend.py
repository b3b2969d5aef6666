"""In-process vLLM engine for GPU machines (optional extra ``[vllm]``, imported lazily).

vLLM pins a CUDA build of torch, so it is not installed by default and cannot be installed on a
CPU-only machine: there, serve the model with ``vllm serve`` elsewhere (or ``align-gym serve-llm``)
and use the ``openai`` backend instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .base import LLMClient, Prompt, check_sampling, render_prompt


class VLLMClient(LLMClient):
    """``vllm.LLM`` behind the client protocol: batched generation and prompt-logprob scoring."""

    backend = "vllm"

    def __init__(self, model: str, **engine_kwargs: Any):
        try:
            import vllm
        except ImportError as error:
            raise ImportError("the vllm backend needs vLLM on a GPU machine: pip install 'align-gym[vllm]'; "
                              "on a CPU machine use openai:MODEL@URL against a served model") from error
        super().__init__(model)
        self._vllm = vllm
        self.engine = vllm.LLM(model=model, **engine_kwargs)
        self.tokenizer = self.engine.get_tokenizer()

    def render(self, prompt: Prompt) -> str:
        return render_prompt(self.tokenizer, prompt)

    def generate(self, prompts: Sequence[Prompt], *, max_tokens: int = 64, temperature: float = 0.0, n: int = 1,
                 stop: Sequence[str] | None = None, seed: int | None = None) -> list[list[str]]:
        check_sampling(max_tokens, temperature, n)
        params = self._vllm.SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens,
                                           stop=list(stop) if stop else None, seed=seed)
        with self.timed_call(len(prompts)):
            outputs = self.engine.generate([self.render(p) for p in prompts], params, use_tqdm=False)
        for out in outputs:
            self.count(prompt_tokens=len(out.prompt_token_ids), completion_tokens=sum(len(o.token_ids) for o in out.outputs))
        return [[o.text for o in out.outputs] for out in outputs]

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[list[float]]:
        heads = [self.tokenizer(self.render(p), add_special_tokens=False)["input_ids"] for p in prompts]
        tails = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
        params = self._vllm.SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        requests = [{"prompt_token_ids": h + t} for h, t in zip(heads, tails)]
        with self.timed_call(len(prompts)):
            outputs = self.engine.generate(requests, params, use_tqdm=False)
        scores = []
        for out, head, tail in zip(outputs, heads, tails):
            entries = out.prompt_logprobs[len(head):]
            scores.append([entry[token].logprob for entry, token in zip(entries, tail)])
        return scores
