"""Token-level credit for LLM agents: a turn's reward placed on its tokens, and the shapes trainers read.

An LLM agent acts one token at a time, but a multi-turn env pays one reward per turn. This module
turns each turn's scalar reward into per-token rewards, in three parts:

- Placements (:data:`PLACEMENTS`, looked up by :func:`place`): ``last_token``, ``uniform``,
  ``discounted`` and ``value_shaping``. Each says in its docstring exactly what it preserves; none
  preserves everything, and a trainer's discount decides which matters.
- PURE's min-form transform of per-step process rewards (:func:`min_form_values`,
  :func:`min_form_advantages`), which by design preserves no sum.
- Export of one multi-turn episode's turn rewards as a per-turn list (:func:`per_turn_list`),
  ``(reward, response_end_index)`` pairs (:func:`response_end_pairs`) and a per-token tensor over
  the whole token sequence (:func:`per_token_tensor`).

The token sequence of an episode is, turn after turn, that turn's prompt tokens then its completion
tokens. Only completion tokens are the agent's decisions, so rewards go on them alone.

>>> place("uniform", 1.0, n_tokens=4).tolist()
[0.25, 0.25, 0.25, 0.25]
>>> response_end_pairs([0.0, 1.0], completion_lengths=[2, 3], prompt_lengths=[4, 1])
[(0.0, 5), (1.0, 9)]
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .potential import check_gamma

if TYPE_CHECKING:
    import torch


def _check_turn(reward: float, n_tokens: int) -> tuple[float, int]:
    if isinstance(n_tokens, bool) or int(n_tokens) != n_tokens or n_tokens < 1:
        raise ValueError(f"a turn needs at least one completion token; got n_tokens={n_tokens!r}")
    if not math.isfinite(float(reward)):
        raise ValueError(f"a turn's reward must be a finite number; got {reward!r}")
    return float(reward), int(n_tokens)


# --- Placements -----------------------------------------------------------------------------------


def last_token(reward: float, n_tokens: int) -> np.ndarray:
    """The whole reward on the turn's last token, zero on the others.

    Preserves the sum, and the undiscounted return from every token at or before the turn's end
    (each token sees the full reward ahead of it). With a discount below 1 the return from an
    earlier token is ``gamma^(n-1-k) * reward``: the reward's worth fades with the turn's length.

    >>> last_token(2.0, 3).tolist()
    [0.0, 0.0, 2.0]
    """
    reward, n_tokens = _check_turn(reward, n_tokens)
    out = np.zeros(n_tokens)
    out[-1] = reward
    return out


def uniform(reward: float, n_tokens: int) -> np.ndarray:
    """``reward / n_tokens`` on every token of the turn.

    Preserves the sum (and so the undiscounted return from the turn's first token), not the
    return from later tokens: token ``k`` sees only ``(n - k) / n`` of the reward ahead of it.

    >>> uniform(1.0, 4).tolist()
    [0.25, 0.25, 0.25, 0.25]
    """
    reward, n_tokens = _check_turn(reward, n_tokens)
    return np.full(n_tokens, reward / n_tokens)


def discounted(reward: float, n_tokens: int, *, gamma: float) -> np.ndarray:
    """The reward spread so that the discounted return from the turn's first token, with the
    token-level ``gamma``, equals the turn's reward: ``sum_k gamma^k w_k = reward``.

    Token ``k`` gets ``w_k = reward / (n * gamma^k)``, i.e. weights proportional to
    ``gamma^(n-1-k)``, so every token carries the same share, ``reward / n``, of the discounted
    return. Why this spread rather than ``reward / gamma^(n-1)`` on the last token (which preserves
    the same return): at ``gamma = 1`` it is exactly :func:`uniform`, and its largest entry, on the
    last token, is ``n`` times smaller, so long turns inflate rewards less.

    Does not preserve the plain sum unless ``gamma`` is 1 (the sum is larger, since
    ``1 / gamma^k >= 1``), nor the discounted return from any later token. The entries grow as
    ``gamma^-k``: for turns of hundreds of tokens use a ``gamma`` close to 1.

    >>> w = discounted(1.0, 2, gamma=0.5)
    >>> w.tolist(), float(w[0] + 0.5 * w[1]), float(w.sum())
    ([0.5, 1.0], 1.0, 1.5)
    """
    reward, n_tokens = _check_turn(reward, n_tokens)
    gamma = check_gamma(gamma)
    return reward / (n_tokens * gamma ** np.arange(n_tokens))


def value_shaping(
    reward: float, n_tokens: int, *, values: Sequence[float], gamma: float, next_value: float = 0.0
) -> np.ndarray:
    """The reward on the last token plus potential-based shaping with a value function as the
    potential (Ng, Harada and Russell 1999): token ``k`` also gets ``gamma * V(k+1) - V(k)``.

    ``values[k]`` is ``V(k)``, the caller's value (a critic's estimate) of the state in which token
    ``k`` is generated. ``V(n)``, after the last token, is ``next_value``: 0 when the turn ends the
    episode (a terminal state's potential must be 0, or ending there would pay), otherwise the value
    of the state the next turn starts from.

    Preserves what is optimal, not the sum: the shaping terms telescope, so the discounted return
    from the first token is the :func:`last_token` placement's, ``gamma^(n-1) * reward``, plus
    ``gamma^n * next_value - V(0)``, which at the end of an episode is just ``-V(0)``. That offset
    does not depend on what the agent does next, so no choice of tokens gains or loses by it.
    ``gamma`` must be the trainer's own token-level discount, or the terms do not telescope.

    >>> value_shaping(1.0, 3, values=[0.5, 0.75, 0.25], gamma=1.0).tolist()
    [0.25, -0.5, 0.75]
    """
    reward, n_tokens = _check_turn(reward, n_tokens)
    gamma = check_gamma(gamma)
    values = np.asarray(values, dtype=float)
    if values.shape != (n_tokens,):
        raise ValueError(f"value_shaping needs one value per completion token: {n_tokens} values; got shape {values.shape}")
    following = np.append(values[1:], float(next_value))  # V(k+1) for every k
    return last_token(reward, n_tokens) + gamma * following - values


Placement = Callable[..., np.ndarray]

PLACEMENTS: dict[str, Placement] = {
    "last_token": last_token,
    "uniform": uniform,
    "discounted": discounted,
    "value_shaping": value_shaping,
}


def place(name: str, reward: float, n_tokens: int, **kwargs: Any) -> np.ndarray:
    """A turn's ``reward`` on its ``n_tokens`` completion tokens by the placement called ``name``;
    ``kwargs`` are that placement's own (``gamma``, ``values``, ``next_value``).

    >>> place("discounted", 1.0, 2, gamma=0.5).tolist()
    [0.5, 1.0]
    >>> place("last", 1.0, 2)
    Traceback (most recent call last):
    ...
    ValueError: unknown placement 'last': did you mean 'last_token'? choices: last_token, uniform, discounted, value_shaping
    """
    if name not in PLACEMENTS:
        close = difflib.get_close_matches(str(name), PLACEMENTS, n=1) or [
            choice for choice in PLACEMENTS if choice.startswith(str(name))]
        hint = f": did you mean {close[0]!r}?" if close else ";"
        raise ValueError(f"unknown placement {name!r}{hint} choices: {', '.join(PLACEMENTS)}")
    placement = PLACEMENTS[name]
    signature = inspect.signature(placement)
    try:
        signature.bind(reward, n_tokens, **kwargs)
    except TypeError as error:
        accepted = ", ".join(list(signature.parameters)[2:]) or "none"
        raise ValueError(f"placement {name!r}: {error}; its keyword arguments: {accepted}") from None
    return placement(reward, n_tokens, **kwargs)


# --- PURE min-form credit -------------------------------------------------------------------------


def min_form_values(step_rewards: Sequence[float]) -> np.ndarray:
    """PURE's min-form values (Cheng et al. 2025, "Stop Summation: Min-Form Credit Assignment Is All
    Process Reward Model Needs for Reasoning"): ``V_t = min over t' >= t of r_t'``.

    A step's worth is the worst step still ahead of it, not the sum of the rewards ahead: a
    process reward model's scores are then not something the policy can pile up by adding steps
    (the reward hacking that summation invites). By design no sum is preserved, neither of the
    rewards nor of any discounted return.

    >>> rewards = [0.9, 0.2, 0.7, 0.5]
    >>> min_form_values(rewards).tolist()
    [0.2, 0.2, 0.5, 0.5]
    >>> round(sum(rewards), 6), round(float(min_form_values(rewards).sum()), 6)  # no sum is kept
    (2.3, 1.4)
    """
    rewards = np.asarray(step_rewards, dtype=float)
    if rewards.ndim != 1 or rewards.size == 0:
        raise ValueError(f"step_rewards must be a non-empty list of per-step rewards; got shape {rewards.shape}")
    return np.minimum.accumulate(rewards[::-1])[::-1].copy()


def min_form_advantages(
    step_rewards: Sequence[float] | Sequence[Sequence[float]], baseline: float | None = None
) -> np.ndarray | list[np.ndarray]:
    """Per-step advantages from :func:`min_form_values`: ``A_t = V_t - b``.

    ``step_rewards`` is a group of responses (to the same prompt), each a list of its step rewards
    (lengths may differ); the advantages come back as one array per response. A plain list of
    floats is one response, and gets one array back.

    The baseline ``b`` is ``baseline`` when given (e.g. a running mean the caller keeps).
    Otherwise it is the mean over the group of each response's min-form return ``V_0`` (the min
    of all its step rewards): responses are judged against the others sampled for the same prompt,
    a group-mean baseline as GRPO- and RLOO-style trainers use. A group of one response then gets ``V_t - V_0`` (never negative): for a single
    response pass a baseline. Like the values, the advantages preserve no sum, by design.

    >>> group = [[1.0, 0.25, 0.75, 0.5], [0.5, 0.75]]  # returns V_0: 0.25 and 0.5, mean 0.375
    >>> [a.tolist() for a in min_form_advantages(group)]
    [[-0.125, -0.125, 0.125, 0.125], [0.125, 0.375]]
    >>> min_form_advantages([1.0, 0.25, 0.75, 0.5], baseline=0.5).tolist()
    [-0.25, -0.25, 0.0, 0.0]
    """
    if len(step_rewards) == 0:
        raise ValueError("step_rewards is empty: give one response's step rewards, or a group of responses")
    single = np.ndim(step_rewards[0]) == 0
    values = [min_form_values(step_rewards)] if single else [min_form_values(r) for r in step_rewards]
    if baseline is None:
        baseline = float(np.mean([v[0] for v in values]))
    elif not math.isfinite(float(baseline)):
        raise ValueError(f"baseline must be a finite number or None; got {baseline!r}")
    advantages = [v - float(baseline) for v in values]
    return advantages[0] if single else advantages


# --- Export in the shapes LLM-RL trainers read ----------------------------------------------------


def per_turn_list(turn_rewards: Sequence[float]) -> list[float]:
    """One episode's turn rewards as a plain list of floats, one per turn (what trainers that take
    a reward per turn, or per response, read).

    >>> per_turn_list(np.array([0.0, 1.5]))
    [0.0, 1.5]
    """
    rewards = np.asarray(turn_rewards, dtype=float)
    if rewards.ndim != 1:
        raise ValueError(f"turn_rewards must be one reward per turn (a flat list); got shape {rewards.shape}")
    return rewards.tolist()


def _completion_spans(
    turn_rewards: Sequence[float], completion_lengths: Sequence[int], prompt_lengths: Sequence[int] | None
) -> tuple[list[float], list[tuple[int, int]], int]:
    """Each turn's reward, the ``[start, end)`` of its completion tokens in the concatenated
    sequence, and the sequence's length."""
    rewards = per_turn_list(turn_rewards)
    completions = list(completion_lengths)
    prompts = [0] * len(completions) if prompt_lengths is None else list(prompt_lengths)
    if not len(rewards) == len(completions) == len(prompts):
        raise ValueError(
            f"one reward, one completion length and one prompt length per turn: got {len(rewards)} rewards, "
            f"{len(completions)} completion lengths and {len(prompts)} prompt lengths")
    spans, position = [], 0
    for turn, (n_prompt, n_completion) in enumerate(zip(prompts, completions)):
        if int(n_completion) != n_completion or n_completion < 1:
            raise ValueError(f"turn {turn}: a completion needs at least one token; got length {n_completion!r}")
        if int(n_prompt) != n_prompt or n_prompt < 0:
            raise ValueError(f"turn {turn}: a prompt length must be a whole number >= 0; got {n_prompt!r}")
        start = position + int(n_prompt)
        position = start + int(n_completion)
        spans.append((start, position))
    return rewards, spans, position


def response_end_pairs(
    turn_rewards: Sequence[float], completion_lengths: Sequence[int], prompt_lengths: Sequence[int] | None = None
) -> list[tuple[float, int]]:
    """One ``(reward, response_end_index)`` pair per turn.

    The index is the 0-based position of the turn's last completion token in the episode's
    concatenated token sequence: turn 0's prompt tokens, turn 0's completion tokens, turn 1's prompt
    tokens, and so on. It counts every prompt and completion token before it, of this turn and the
    earlier ones. Without ``prompt_lengths`` the sequence is the completions alone.

    >>> # tokens: P P P C C | P C C C  (prompts of 3 and 1 tokens, completions of 2 and 3)
    >>> response_end_pairs([0.5, 1.0], completion_lengths=[2, 3], prompt_lengths=[3, 1])
    [(0.5, 4), (1.0, 8)]
    >>> response_end_pairs([0.5, 1.0], completion_lengths=[2, 3])
    [(0.5, 1), (1.0, 4)]
    """
    rewards, spans, _ = _completion_spans(turn_rewards, completion_lengths, prompt_lengths)
    return [(reward, end - 1) for reward, (_, end) in zip(rewards, spans)]


def per_token_tensor(
    turn_rewards: Sequence[float],
    completion_lengths: Sequence[int],
    placement: str = "last_token",
    prompt_lengths: Sequence[int] | None = None,
    **kwargs: Any,
) -> torch.Tensor:
    """A float32 tensor over the episode's whole concatenated token sequence (as in
    :func:`response_end_pairs`): zero on prompt tokens, each turn's reward placed over its
    completion tokens by ``placement`` (see :func:`place`; ``kwargs`` go to it, for every turn).

    For ``value_shaping``, ``values`` covers the whole sequence, one per token as a critic gives
    them (values on prompt tokens are not read). Prompt tokens are not the agent's decisions, so
    the shaping chains over completion tokens: a turn's last token is followed by the next turn's
    first completion token, whose value is its ``V(n)``; after the last turn, ``next_value``
    (default 0, the episode's end).

    >>> per_token_tensor([0.5, 1.0], completion_lengths=[2, 3], prompt_lengths=[3, 1]).tolist()
    [0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 1.0]
    >>> per_token_tensor([1.0], completion_lengths=[4], placement="uniform").tolist()
    [0.25, 0.25, 0.25, 0.25]
    """
    import torch  # here only: the wrappers package imports without torch

    rewards, spans, length = _completion_spans(turn_rewards, completion_lengths, prompt_lengths)
    values = kwargs.pop("values", None)
    if values is not None:
        final_value = kwargs.pop("next_value", 0.0)
        values = np.asarray(values, dtype=float)
        if values.shape != (length,):
            raise ValueError(f"values must have one entry per token of the whole sequence: {length}; got shape {values.shape}")
    out = np.zeros(length)
    for turn, (reward, (start, end)) in enumerate(zip(rewards, spans)):
        turn_kwargs = dict(kwargs)
        if values is not None:
            following = values[spans[turn + 1][0]] if turn + 1 < len(spans) else final_value
            turn_kwargs.update(values=values[start:end], next_value=following)
        out[start:end] = place(placement, reward, end - start, **turn_kwargs)
    return torch.from_numpy(out).float()
