"""Token-by-token decoding of a batch of rows with one causal LM: what the embedded client and
``serve-llm`` generate with.

Each row has its own settings (budget, temperature, stop strings, how many top log-probabilities
to keep) and its own :class:`torch.Generator`, so a row's sample depends on its seed alone, never on
the rows beside it, and no global RNG (Python's, numpy's, torch's) is touched: an SB3 agent
sampling in the same process, or an annotator thread sampling beside it, keeps its own stream.
Rows share the forward passes (left-padded, with a KV cache), which is how concurrent server
requests are batched. A prompt prefix every row shares (a template's instructions and few-shot
examples, often most of the prompt) is run once and its KV cache copied to every row: each row is
laid out as the shared prefix, its padding, then its own tokens, so positions stay those of the row
alone. A row ends at the end-of-sequence token or a stop string
(``finish_reason="stop"``) or when its budget is spent (``"length"``). A row whose ``cancelled``
flag is set (a server's client left) stops at the next step (``"abort"``); the decoding ends as
soon as no row runs, so a batch of cancelled rows frees the model at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Row:
    """One sequence to continue: prompt token ids and its settings."""

    prompt_ids: list[int]
    max_tokens: int
    temperature: float = 0.0
    stop: Sequence[str] = ()
    seed: int | None = None  # None: drawn from the OS, never from a global RNG
    top_logprobs: int = 0
    on_token: Callable[[Piece], None] | None = None  # called with each new token as it comes (streaming)
    cancelled: bool = False  # set from another thread to stop decoding this row at the next step


@dataclass
class Piece:
    """One generated token as a stream sends it: the text it adds (empty for an end-of-sequence
    token or one past a stop string), the token, its log-probability and its top alternatives
    (None unless asked for)."""

    text: str
    token: str
    logprob: float
    top_logprobs: dict[str, float] | None = None


@dataclass
class Result:
    """What a row produced: its text (cut before a stop string), its tokens, each token's
    log-probability under the model and the top alternatives, and why it ended."""

    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top_logprobs: list[dict[str, float]] = field(default_factory=list)
    finish_reason: str = "length"


# Below this many shared tokens, the prefix's own forward pass costs about what it saves.
MIN_SHARED_PREFIX = 32


def shared_prefix(rows: Sequence[Row]) -> int:
    """How many leading prompt tokens every row shares, leaving each row at least one of its own
    (0 for a single row, or when fewer than :data:`MIN_SHARED_PREFIX` are shared)."""
    if len(rows) < 2:
        return 0
    shared = min(len(os.path.commonprefix([list(row.prompt_ids) for row in rows])),
                 min(len(row.prompt_ids) for row in rows) - 1)
    return shared if shared >= MIN_SHARED_PREFIX else 0


def sample_seed(seed: int | None, index: int) -> int | None:
    """The seed of sample ``index`` of a call seeded ``seed`` (None stays None: OS entropy)."""
    return None if seed is None else (int(seed) * 1_000_003 + index) % (1 << 63)


def sample_rows(prompt_ids: list[int], n: int, max_tokens: int, temperature: float, stop: Sequence[str] = (),
                seed: int | None = None, top_logprobs: int = 0) -> list[Row]:
    """The ``n`` rows that sample ``n`` completions of one prompt, sample ``j`` seeded from
    ``seed`` and ``j``: a seeded answer is the same whatever else shares its batch."""
    return [Row(prompt_ids, max_tokens, temperature, tuple(stop), sample_seed(seed, j), top_logprobs) for j in range(n)]


def generator_for(seed: int | None, device: str = "cpu"):
    """A private torch generator: seeded, or from the OS's entropy."""
    import torch

    value = seed if seed is not None else int.from_bytes(os.urandom(8), "big") >> 1
    return torch.Generator(device=device).manual_seed(int(value) & 0x7FFF_FFFF_FFFF_FFFF)


def decode(model: Any, tokenizer: Any, rows: Sequence[Row], device: str = "cpu", share_prefix: bool = True) -> list[Result]:
    """Continue every row; one forward pass per step for all rows still running (after one pass
    over the prompt prefix they all share, unless ``share_prefix`` is False)."""
    import torch

    if not rows:
        return []
    results = [Result() for _ in rows]
    generators = [generator_for(row.seed, device) for row in rows]
    eos = {tokenizer.eos_token_id} - {None}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eos), 0)
    width = max(len(row.prompt_ids) for row in rows)
    shared = shared_prefix(rows) if share_prefix else 0
    prefix = list(rows[0].prompt_ids[:shared])
    # Each row: the shared prefix, its padding, its own tokens (all padding first when nothing is shared).
    ids = torch.tensor([prefix + [pad] * (width - len(r.prompt_ids)) + list(r.prompt_ids[shared:]) for r in rows],
                       device=device)
    mask = torch.tensor([[1] * shared + [0] * (width - len(r.prompt_ids)) + [1] * (len(r.prompt_ids) - shared)
                         for r in rows], device=device)
    running = [row.max_tokens > 0 and not row.cancelled for row in rows]
    budget = max((row.max_tokens for row in rows), default=0)
    past, step_ids = None, ids
    with torch.inference_mode():
        if shared and budget:
            past = model(input_ids=ids[:1, :shared], use_cache=True, logits_to_keep=1).past_key_values
            past.batch_repeat_interleave(len(rows))
            step_ids = ids[:, shared:]
        for _ in range(budget):
            for i, row in enumerate(rows):
                if running[i] and row.cancelled:  # checked between steps: the row's client has left
                    running[i], results[i].finish_reason = False, "abort"
            if not any(running):
                break
            positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -step_ids.shape[1]:]
            output = model(input_ids=step_ids, attention_mask=mask, position_ids=positions, past_key_values=past,
                           use_cache=True, logits_to_keep=1)
            past = output.past_key_values
            logits = output.logits[:, -1].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            greedy = logits.argmax(-1).tolist()  # one call for every greedy row
            chosen = []
            for i, row in enumerate(rows):
                if not running[i]:
                    chosen.append(pad)
                    continue
                if row.temperature > 0:
                    probs = torch.softmax(logits[i] / row.temperature, dim=-1)
                    chosen.append(int(torch.multinomial(probs, 1, generator=generators[i])))
                else:
                    chosen.append(greedy[i])
            picked = logprobs.gather(-1, torch.tensor(chosen, device=device).unsqueeze(-1)).squeeze(-1).tolist()
            for i, row in enumerate(rows):
                if running[i]:
                    _record(results[i], row, chosen[i], picked[i], logprobs[i], tokenizer, eos)
                    running[i] = results[i].finish_reason != "stop" and len(results[i].token_ids) < row.max_tokens
            step_ids = torch.tensor([[t] for t in chosen], device=device)
            mask = torch.cat([mask, torch.tensor([[int(r)] for r in running], device=device)], dim=-1)
    for row, result in zip(rows, results):  # token strings and, where nothing needed it sooner, the text
        result.tokens = [tokenizer.decode([t]) for t in result.token_ids]
        if not row.stop and row.on_token is None:
            result.text = tokenizer.decode(result.token_ids, skip_special_tokens=True)
    return results


def _record(result: Result, row: Row, token: int, logprob: float, logprobs: Any, tokenizer: Any, eos: set[int]) -> None:
    """Add ``token`` to ``result``: its log-probability and top alternatives, and the end of the
    row at end-of-sequence or a stop string. The text is followed step by step only where a stop
    string or a stream needs it."""
    result.token_ids.append(token)
    result.logprobs.append(logprob)
    top = None
    if row.top_logprobs:
        values, indices = logprobs.topk(row.top_logprobs)
        top = {tokenizer.decode([j]): v for v, j in zip(values.tolist(), indices.tolist())}
        result.top_logprobs.append(top)
    if token in eos:
        result.finish_reason = "stop"
    if not row.stop and row.on_token is None:
        return
    text = tokenizer.decode(result.token_ids, skip_special_tokens=True)
    cut = min((text.find(s) for s in row.stop if s and s in text), default=-1)
    if cut >= 0:
        text, result.finish_reason = text[:cut], "stop"
    new = text[len(result.text):] if len(text) > len(result.text) else ""
    result.text = text
    if row.on_token is not None:
        row.on_token(Piece(new, tokenizer.decode([token]), logprob, top))
