"""Token-PPO: a language model writes free-text actions token by token, and each token is an action
of PPO (the RLHF recipe of Ziegler et al. 2019 and Ouyang et al. 2022, applied to multi-turn envs).

An episode is one growing token sequence. Its first prompt is the env's first observation as a
user message, rendered by the model's chat template; each turn the model samples an answer,
recording per token its log-probability, a value (a head on the hidden state that predicts the
token) and, once per rollout, the frozen reference model's log-probability (the reference never
changes, so the update's epochs reuse it). The env's reward for the turn (the task reward plus
every shaping term of the spec) is placed on the turn's tokens by a placement of
:mod:`align_gym.wrappers.tokens` (``last_token``, ``uniform``, ``discounted``, ``value_shaping``);
each token also pays ``-kl_coef * (log pi - log pi_ref)``, the KL penalty to the reference model.
Advantages are GAE over the episode's tokens (``token_gamma``, ``gae_lambda``), and PPO's clipped
objective and a value loss update the model and the head.

``value_shaping`` is potential-based over the whole episode, as
:func:`align_gym.wrappers.tokens.per_token_tensor` chains it: V after a turn's last token is V at
the next turn's first token; after the last turn it is 0 where the episode ended and, where it was
cut (the env's time limit, or the run's budget), V where the next turn would start. The terms then
telescope to ``-V`` of the episode's first token, paid once.

Token in, token out: the next turn's prompt is this turn's prompt, the ids it sampled, and the
tokenised rest (the end of the turn, the env's reply, the next answer's prompt;
:func:`next_prompt_ids`). Generated text is never decoded and tokenised again, so the episode's
last prompt and completion are exactly what was sampled, and every turn's record (``prompt_ids``,
``completion_ids``, ``completion_mask``, ``logprobs``, the turn's ``reward`` and its
``reward_terms``: the names TRL's and verifiers' rollouts use) trains on the tokens the model saw.

Dropout is off throughout: rollouts and updates both run the model in eval mode, so PPO's ratio
compares the sampling policy with itself (1 on every token before the first step), not with a
copy thinned at random (TRL's trainers disable dropout for the same reason).

>>> from align_gym.agents.token_ppo import TokenPPOConfig, train_token_ppo
>>> result = train_token_ppo(TokenPPOConfig(env_id="Align/ToolCalc-v0", model="tiny", turns=8))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from ..wrappers.core import shaping_layers
from ..wrappers.registry import shape_env
from ..wrappers.terms import EPISODE_SUMMARY
from ..wrappers.tokens import place
from .llm_policy import (
    gae,
    load_model,
    recent_scores,
    record_update,
    refuse_redistribution,
    resolve_device,
    resume_run,
)


@dataclass
class TokenPPOConfig:
    """Every setting of a token-PPO run."""

    env_id: str = "Align/ToolCalc-v0"
    shaping: str = "none"
    model: str = "tiny"  # "tiny", "embedded", or a local Hugging Face causal-LM folder
    placement: str = "last_token"  # last_token | uniform | discounted | value_shaping
    turns: int = 256  # env steps (turns) in all
    rollout_turns: int = 16  # turns between updates
    max_new_tokens: int = 24
    temperature: float = 1.0
    lr: float = 1e-5
    value_lr: float = 1e-4
    clip: float = 0.2
    kl_coef: float = 0.05
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    epochs: int = 2
    gamma: float = 1.0  # the env-level discount the shaping uses (trainers score undiscounted returns)
    token_gamma: float = 1.0
    gae_lambda: float = 0.95
    seed: int = 0
    device: str = "auto"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    out: str | None = None  # a folder for log.jsonl and checkpoint.pt, written after every update
    resume: bool = False  # go on from out/checkpoint.pt where there is one
    allow_changes: list[str] = field(default_factory=list)  # settings a resume may change (others are refused)


class TokenPolicy(nn.Module):
    """The model, a value head on each position's hidden state, and a frozen reference copy."""

    def __init__(self, model: Any, tokenizer: Any, reference: Any, seed: int = 0):
        super().__init__()
        self.model, self.tokenizer, self.reference = model, tokenizer, reference.eval().requires_grad_(False)
        generator = torch.Generator().manual_seed(seed)
        self.value_head = nn.Linear(model.config.hidden_size, 1)
        nn.init.orthogonal_(self.value_head.weight, gain=0.01, generator=generator)
        nn.init.zeros_(self.value_head.bias)
        self.value_head.to(next(model.parameters()).device)
        self.stop_ids = {i for i in (tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>"))
                         if isinstance(i, int) and i >= 0}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def evaluate(self, prompt_ids: list[int], completion_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per completion token: log pi, value and entropy (one forward of the model)."""
        ids = torch.tensor([prompt_ids + completion_ids], device=self.device)
        # Logits only where a completion token is predicted: over a long multi-turn context, the
        # vocabulary's projection at every position would cost more than the model itself.
        out = self.model(input_ids=ids, output_hidden_states=True, logits_to_keep=len(completion_ids) + 1)
        start = len(prompt_ids) - 1  # the position that predicts the first completion token
        logits = out.logits[0, :-1].float()
        targets = ids[0, len(prompt_ids):]
        logp_all = torch.log_softmax(logits, -1)
        logprobs = logp_all.gather(1, targets[:, None]).squeeze(1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        values = self.value_head(out.hidden_states[-1][0, start:-1].float()).squeeze(-1)
        return logprobs, values, entropy

    @torch.no_grad()
    def reference_logprobs(self, prompt_ids: list[int], completion_ids: list[int]) -> torch.Tensor:
        """Per completion token, log pi_ref: the frozen reference's (one forward of it). The
        reference never changes, so a rollout computes this once and every epoch reuses it."""
        ids = torch.tensor([prompt_ids + completion_ids], device=self.device)
        logits = self.reference(input_ids=ids, logits_to_keep=len(completion_ids) + 1).logits[0, :-1].float()
        return torch.log_softmax(logits, -1).gather(1, ids[0, len(prompt_ids):, None]).squeeze(1)

    @torch.no_grad()
    def value(self, prompt_ids: list[int]) -> float:
        """V of the state a prompt leaves the agent in: the value head at the prompt's last position
        (where a completion's first token would be predicted)."""
        out = self.model(input_ids=torch.tensor([prompt_ids], device=self.device), output_hidden_states=True,
                         logits_to_keep=1)
        return float(self.value_head(out.hidden_states[-1][0, -1].float()))

    @torch.no_grad()
    def generate(self, prompt_ids: list[int], max_new_tokens: int, temperature: float,
                 generator: torch.Generator) -> list[int]:
        """Sample a completion, token by token, until a stop token or ``max_new_tokens``."""
        ids = torch.tensor([prompt_ids], device=self.device)
        past, completion = None, []
        for _ in range(max_new_tokens):
            out = self.model(input_ids=ids, past_key_values=past, use_cache=True)
            past = out.past_key_values
            probs = torch.softmax(out.logits[0, -1].float() / temperature, -1).cpu()
            token = int(torch.multinomial(probs, 1, generator=generator))
            completion.append(token)
            if token in self.stop_ids:
                break
            ids = torch.tensor([[token]], device=self.device)
        return completion


def chat_prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """The token ids of ``messages`` rendered by the chat template, ready for the assistant's turn."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def next_prompt_ids(tokenizer: Any, prompt_ids: list[int], completion_ids: list[int], reply: str,
                    stop_ids: set[int]) -> list[int]:
    """The next turn's prompt, token in, token out: the turn's ``prompt_ids``, its ``completion_ids``
    exactly as sampled, then what the chat template writes after an assistant's answer: the end of
    the turn (its end-of-turn token only where the completion did not sample a stop token), the
    env's ``reply`` as a user message, and the prompt for the next answer.

    Only that new text is tokenised. The ids already in the context are never decoded and tokenised
    again: a decoded answer can tokenise differently (``" lunchtime"`` as ``" lunch"``, ``"tim"``,
    ...), and the model would then be trained on tokens it never sampled. A template that rewrites
    earlier answers (dropping reasoning, say) is read only for this suffix, so it rewrites nothing.
    """
    probe = [{"role": "user", "content": "?"}]
    head = tokenizer.apply_chat_template(probe, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(probe + [{"role": "assistant", "content": ""}, {"role": "user", "content": reply}],
                                         add_generation_prompt=True, tokenize=False)
    if not full.startswith(head):
        raise ValueError("the chat template renders a conversation's first turn differently once more turns follow: "
                         "token-PPO needs a template whose rendering only grows turn by turn")
    tail = full[len(head):]  # the (empty) answer, the end of its turn, the reply, the next prompt
    ends = sorted((tail.find(text), text) for text in tokenizer.convert_ids_to_tokens(sorted(stop_ids)) if text in tail)
    if not ends:
        raise ValueError("the chat template ends an assistant's answer with none of the model's stop tokens "
                         f"({sorted(stop_ids)}): token-PPO cannot tell where a turn ends")
    start, end_of_turn = ends[0]
    closed = bool(completion_ids) and completion_ids[-1] in stop_ids  # the sampled stop token ends the turn
    suffix = tail[start + len(end_of_turn):] if closed else tail[start:]
    return prompt_ids + completion_ids + list(tokenizer(suffix, add_special_tokens=False)["input_ids"])


def token_rewards(turn_reward: float, n_tokens: int, placement: str, token_gamma: float,
                  values: np.ndarray | None = None, next_value: float = 0.0) -> np.ndarray:
    """The turn's reward over its tokens by ``placement`` (see :mod:`align_gym.wrappers.tokens`);
    ``value_shaping`` reads the turn's ``values`` and ``next_value``, V after its last token."""
    kwargs: dict[str, Any] = {}
    if placement in ("discounted", "value_shaping"):
        kwargs["gamma"] = token_gamma
    if placement == "value_shaping":
        kwargs.update(values=values, next_value=next_value)
    return place(placement, turn_reward, n_tokens, **kwargs)


@dataclass
class TrainResult:
    config: dict[str, Any]
    turns: list[dict[str, Any]] = field(default_factory=list)  # the last rollout's token-in, token-out records
    updates: list[dict[str, float]] = field(default_factory=list)
    episodes: list[dict[str, Any]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)  # settings changed on resume, with the step
    policy: Any = None  # the trained policy


def train_token_ppo(config: TokenPPOConfig, policy: TokenPolicy | None = None,
                    on_update: Callable[[dict[str, float], TrainResult], None] | None = None) -> TrainResult:
    """Train ``config.model`` on ``config.env_id`` with token-level PPO; returns the records and logs.
    ``on_update`` sees each update's row and the run so far."""
    device = resolve_device(config.device)
    if policy is None:
        model, tokenizer = load_model(config.model, seed=config.seed, device=device)
        reference, _ = load_model(config.model, seed=config.seed, device=device)
        policy = TokenPolicy(model, tokenizer, reference, seed=config.seed)
    tokenizer = policy.tokenizer
    params = [p for p in policy.model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam([{"params": params, "lr": config.lr},
                                  {"params": list(policy.value_head.parameters()), "lr": config.value_lr}], eps=1e-5)
    env = shape_env(gym.make(config.env_id, **config.env_kwargs), config.shaping, gamma=config.gamma)
    if not isinstance(env.action_space, gym.spaces.Text):
        raise ValueError(f"{config.env_id} takes {env.action_space}; token-PPO writes text actions")
    refuse_redistribution([layer.module for layer in shaping_layers(env)], "token-PPO")
    rng, generator = np.random.default_rng(config.seed), torch.Generator().manual_seed(config.seed)
    result = TrainResult(asdict(config))
    taken = resume_run(config, policy, optimizer, rng, generator, result)
    while taken < config.turns:
        # -- play episodes until the rollout has enough turns -------------------------------------
        episodes: list[tuple[list[dict[str, Any]], float]] = []  # each episode's turns, and V after its last
        policy.eval()
        while sum(len(records) for records, _ in episodes) < config.rollout_turns and taken < config.turns:
            obs, info = env.reset(seed=int(rng.integers(2**31)))
            prompt_ids = chat_prompt_ids(tokenizer, [{"role": "user", "content": obs}])
            records, terminated, done = [], False, False
            while not done and taken < config.turns:
                completion_ids = policy.generate(prompt_ids, config.max_new_tokens, config.temperature, generator)
                with torch.no_grad():
                    logprobs, values, _ = policy.evaluate(prompt_ids, completion_ids)
                ref_logprobs = policy.reference_logprobs(prompt_ids, completion_ids)  # once: every epoch reuses it
                text = tokenizer.decode([t for t in completion_ids if t not in policy.stop_ids], skip_special_tokens=True)
                obs, reward, terminated, truncated, info = env.step(text)
                done = terminated or truncated
                taken += 1
                records.append({
                    "prompt_ids": prompt_ids, "completion_ids": completion_ids, "completion_mask": [1] * len(completion_ids),
                    "logprobs": logprobs.tolist(), "ref_logprobs": ref_logprobs.tolist(), "values": values.tolist(),
                    "reward": float(reward), "env_reward": float(info.get("env_reward", reward)),
                    "reward_terms": dict(info.get("reward_terms", {})), "text": text, "done": bool(terminated),
                    "episode": len(result.episodes)})
                prompt_ids = next_prompt_ids(tokenizer, prompt_ids, completion_ids, obs, policy.stop_ids)
            # V after the last turn: 0 where the episode ended (a terminal state is worth nothing),
            # else (cut by the env's time limit or by the budget) V where the next turn would start.
            episodes.append((records, 0.0 if terminated else policy.value(prompt_ids)))
            if done:  # the shaping stack's summary: task return, shaped return, each term, success
                result.episodes.append({**info[EPISODE_SUMMARY], "turn": taken})
        # -- per-token rewards, advantages ----------------------------------------------------------
        result.turns = []  # only the latest rollout's records are kept: they hold every token
        for records, last_value in episodes:
            rewards, values, dones = [], [], []
            for k, record in enumerate(records):
                # value_shaping's potential chains across turns (as wrappers/tokens.py's per-token
                # tensor does): V after a turn's last token is V at the next turn's first token, so
                # the terms telescope over the whole episode instead of paying -V at every turn.
                following = records[k + 1]["values"][0] if k + 1 < len(records) else last_value
                placed = token_rewards(record["reward"], len(record["completion_ids"]), config.placement,
                                       config.token_gamma, np.array(record["values"]), following)
                kl = np.array(record["logprobs"]) - np.array(record["ref_logprobs"])
                rewards.append(placed - config.kl_coef * kl)
                values.append(np.array(record["values"]))
                dones.append(np.zeros(len(placed), dtype=bool))
            dones[-1][-1] = records[-1]["done"]  # a cut episode bootstraps from last_value
            flat_rewards, flat_values = np.concatenate(rewards), np.concatenate(values)
            advantages = gae(flat_rewards, flat_values, np.concatenate(dones), last_value, config.token_gamma,
                             config.gae_lambda)
            start = 0
            for record, r in zip(records, rewards):
                record["advantages"] = advantages[start : start + len(r)]
                record["returns"] = record["advantages"] + np.array(record["values"])
                record["token_rewards"] = r.tolist()
                start += len(r)
            result.turns.extend(records)
        # -- PPO update over the rollout's turns ----------------------------------------------------
        batch = [record for records, _ in episodes for record in records]
        all_advantages = np.concatenate([r["advantages"] for r in batch])
        mean, std = all_advantages.mean(), all_advantages.std() + 1e-8
        n_tokens = sum(len(r["completion_ids"]) for r in batch)
        # The policy stays in eval mode here too: dropout off, so the ratio compares the function
        # that sampled (and scored) the rollout with itself as it learns; see the module docstring.
        stats: dict[str, float] = {}
        for _ in range(config.epochs):
            optimizer.zero_grad()
            losses, log_ratios = [], []
            for record in batch:
                logprobs, values, entropy = policy.evaluate(record["prompt_ids"], record["completion_ids"])
                old = torch.tensor(record["logprobs"], device=logprobs.device)
                advantage = torch.tensor((record["advantages"] - mean) / std, device=logprobs.device, dtype=logprobs.dtype)
                ratio = (logprobs - old).exp()
                policy_loss = -torch.min(ratio * advantage, ratio.clamp(1 - config.clip, 1 + config.clip) * advantage)
                returns = torch.tensor(record["returns"], device=values.device, dtype=values.dtype)
                value_loss = 0.5 * (values - returns) ** 2
                losses.append((policy_loss + config.vf_coef * value_loss).sum())
                log_ratios.append((logprobs - old).detach())
            loss = torch.stack(losses).sum() / n_tokens  # the mean over the rollout's tokens
            loss.backward()
            nn.utils.clip_grad_norm_(params + list(policy.value_head.parameters()), config.max_grad_norm)
            optimizer.step()
            log_ratio = torch.cat(log_ratios)
            stats = {"loss": float(loss.detach()),
                     # this epoch's ratio before its step (the first epoch's is 1 on every token)
                     "approx_kl": float((log_ratio.exp() - 1 - log_ratio).mean()),
                     "clip_fraction": float(((log_ratio.exp() - 1).abs() > config.clip).float().mean())}
        row = {"turn": float(taken), **stats, "tokens": float(n_tokens), **recent_scores(result.episodes)}
        result.updates.append(row)
        record_update(config, policy, optimizer, rng, generator, result, taken, row)
        if on_update is not None:
            on_update(row, result)
    env.close()
    result.policy = policy
    return result
