"""Token-PPO: a language model writes free-text actions token by token, and each token is an action
of PPO (the RLHF recipe of Ziegler et al. 2019 and Ouyang et al. 2022, applied to multi-turn envs).

Each turn the conversation so far is rendered with the model's chat template (the env's
observations as user messages, the agent's earlier answers as assistant messages) and the model
samples an answer, recording per token its log-probability, a value (a head on the hidden state
that predicts the token) and the frozen reference model's log-probability. The env's reward for the
turn (the task reward plus every shaping term of the spec) is placed on the turn's tokens by a
placement of :mod:`align_gym.wrappers.tokens` (``last_token``, ``uniform``, ``discounted``,
``value_shaping``); each token also pays ``-kl_coef * (log pi - log pi_ref)``, the KL penalty to the
reference model. Advantages are GAE over the episode's tokens (``token_gamma``, ``gae_lambda``),
and PPO's clipped objective and a value loss update the model and the head.

Token in, token out: every turn's record holds ``prompt_ids``, ``completion_ids``,
``completion_mask``, ``logprobs``, the turn's ``reward`` and its ``reward_terms`` (the names TRL's
and verifiers' rollouts use). From the second turn on, the new prompt must extend the previous
prompt and completion token for token; where the chat template re-tokenised or rewrote history, the
turn is flagged (``history_rewritten``), counted, and trained on its own prompt, never crashed on.

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

    def evaluate(self, prompt_ids: list[int], completion_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per completion token: log pi, value, entropy, and log pi_ref (one forward of each model)."""
        ids = torch.tensor([prompt_ids + completion_ids], device=self.device)
        out = self.model(input_ids=ids, output_hidden_states=True)
        start = len(prompt_ids) - 1  # the position that predicts the first completion token
        logits = out.logits[0, start:-1].float()
        targets = ids[0, len(prompt_ids):]
        logp_all = torch.log_softmax(logits, -1)
        logprobs = logp_all.gather(1, targets[:, None]).squeeze(1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        values = self.value_head(out.hidden_states[-1][0, start:-1].float()).squeeze(-1)
        with torch.no_grad():
            ref_logits = self.reference(input_ids=ids).logits[0, start:-1].float()
            ref_logprobs = torch.log_softmax(ref_logits, -1).gather(1, targets[:, None]).squeeze(1)
        return logprobs, values, entropy, ref_logprobs

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


def extends(previous: list[int], prompt_ids: list[int]) -> bool:
    """Whether ``prompt_ids`` starts with ``previous`` (the last prompt and completion): multi-turn
    token sequences must not drift between turns.

    >>> extends([1, 2, 3], [1, 2, 3, 4]), extends([1, 2, 3], [1, 2, 5, 4])
    (True, False)
    """
    return prompt_ids[: len(previous)] == previous


def token_rewards(turn_reward: float, n_tokens: int, placement: str, token_gamma: float,
                  values: np.ndarray | None = None) -> np.ndarray:
    """The turn's reward over its tokens by ``placement`` (see :mod:`align_gym.wrappers.tokens`)."""
    kwargs: dict[str, Any] = {}
    if placement in ("discounted", "value_shaping"):
        kwargs["gamma"] = token_gamma
    if placement == "value_shaping":
        kwargs["values"] = values
    return place(placement, turn_reward, n_tokens, **kwargs)


@dataclass
class TrainResult:
    config: dict[str, Any]
    turns: list[dict[str, Any]] = field(default_factory=list)  # the last rollout's token-in, token-out records
    updates: list[dict[str, float]] = field(default_factory=list)
    episodes: list[dict[str, Any]] = field(default_factory=list)
    history_rewritten: int = 0
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
        episodes: list[list[dict[str, Any]]] = []
        policy.eval()
        while sum(map(len, episodes)) < config.rollout_turns and taken < config.turns:
            obs, info = env.reset(seed=int(rng.integers(2**31)))
            messages, previous, records, done = [{"role": "user", "content": obs}], None, [], False
            while not done and taken < config.turns:
                prompt_ids = chat_prompt_ids(tokenizer, messages)
                rewritten = previous is not None and not extends(previous, prompt_ids)
                result.history_rewritten += rewritten
                completion_ids = policy.generate(prompt_ids, config.max_new_tokens, config.temperature, generator)
                with torch.no_grad():
                    logprobs, values, _, ref_logprobs = policy.evaluate(prompt_ids, completion_ids)
                text = tokenizer.decode([t for t in completion_ids if t not in policy.stop_ids], skip_special_tokens=True)
                obs, reward, terminated, truncated, info = env.step(text)
                done = terminated or truncated
                taken += 1
                records.append({
                    "prompt_ids": prompt_ids, "completion_ids": completion_ids, "completion_mask": [1] * len(completion_ids),
                    "logprobs": logprobs.tolist(), "ref_logprobs": ref_logprobs.tolist(), "values": values.tolist(),
                    "reward": float(reward), "env_reward": float(info.get("env_reward", reward)),
                    "reward_terms": dict(info.get("reward_terms", {})), "text": text, "done": bool(terminated),
                    "episode": len(result.episodes),
                    "history_rewritten": bool(rewritten)})
                previous = prompt_ids + completion_ids
                messages += [{"role": "assistant", "content": text}, {"role": "user", "content": obs}]
            episodes.append(records)
            if done:  # the shaping stack's summary: task return, shaped return, each term, success
                result.episodes.append({**info[EPISODE_SUMMARY], "turn": taken})
        # -- per-token rewards, advantages ----------------------------------------------------------
        result.turns = []  # only the latest rollout's records are kept: they hold every token
        for records in episodes:
            rewards, values, dones = [], [], []
            for record in records:
                placed = token_rewards(record["reward"], len(record["completion_ids"]), config.placement,
                                       config.token_gamma, np.array(record["values"]))
                kl = np.array(record["logprobs"]) - np.array(record["ref_logprobs"])
                rewards.append(placed - config.kl_coef * kl)
                values.append(np.array(record["values"]))
                dones.append(np.zeros(len(placed), dtype=bool))
            dones[-1][-1] = records[-1]["done"]  # a truncated episode's last token bootstraps from its own value
            flat_rewards, flat_values = np.concatenate(rewards), np.concatenate(values)
            advantages = gae(flat_rewards, flat_values, np.concatenate(dones),
                             0.0 if records[-1]["done"] else float(flat_values[-1]), config.token_gamma, config.gae_lambda)
            start = 0
            for record, r in zip(records, rewards):
                record["advantages"] = advantages[start : start + len(r)]
                record["returns"] = record["advantages"] + np.array(record["values"])
                record["token_rewards"] = r.tolist()
                start += len(r)
            result.turns.extend(records)
        # -- PPO update over the rollout's turns ----------------------------------------------------
        batch = [record for records in episodes for record in records]
        all_advantages = np.concatenate([r["advantages"] for r in batch])
        mean, std = all_advantages.mean(), all_advantages.std() + 1e-8
        policy.train()
        stats: dict[str, float] = {}
        for _ in range(config.epochs):
            optimizer.zero_grad()
            losses = []
            for record in batch:
                logprobs, values, entropy, _ = policy.evaluate(record["prompt_ids"], record["completion_ids"])
                old = torch.tensor(record["logprobs"], device=logprobs.device)
                advantage = torch.tensor((record["advantages"] - mean) / std, device=logprobs.device, dtype=logprobs.dtype)
                ratio = (logprobs - old).exp()
                policy_loss = -torch.min(ratio * advantage, ratio.clamp(1 - config.clip, 1 + config.clip) * advantage)
                returns = torch.tensor(record["returns"], device=values.device, dtype=values.dtype)
                value_loss = 0.5 * (values - returns) ** 2
                losses.append((policy_loss + config.vf_coef * value_loss).sum())
            n_tokens = sum(len(r["completion_ids"]) for r in batch)
            loss = torch.stack(losses).sum() / n_tokens  # the mean over the rollout's tokens
            loss.backward()
            nn.utils.clip_grad_norm_(params + list(policy.value_head.parameters()), config.max_grad_norm)
            optimizer.step()
            stats = {"loss": float(loss.detach())}
        row = {"turn": float(taken), **stats, "tokens": float(n_tokens), **recent_scores(result.episodes),
               "history_rewritten": float(result.history_rewritten)}
        result.updates.append(row)
        record_update(config, policy, optimizer, rng, generator, result, taken, row)
        if on_update is not None:
            on_update(row, result)
    env.close()
    result.policy = policy
    return result
