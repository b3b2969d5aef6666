"""Action-PPO: a language model as the policy over an env's admissible actions, trained with PPO
(TWOSOME, Tan et al. 2024, "True Knowledge Comes from Practice"; GLAM, Carta et al. 2023,
"Grounding Large Language Models in Interactive Environments with Online RL").

Each step the env lists what the agent may do (``info["valid_actions"]``). The policy scores
every admissible action ``a`` by its token log-likelihood after the prompt, ``S(a) = sum of log
p(token | prompt, earlier tokens of a)``, normalised as TWOSOME does (``normalisation``):

- ``"token"``: ``S(a) / n_tokens(a)`` (TWOSOME's token normalisation);
- ``"word"``: ``S(a) / n_words(a)`` (TWOSOME's word normalisation);
- ``"none"``: ``S(a)`` itself (GLAM);

and ``pi(a | prompt) = softmax_a`` of those scores. A value head (an MLP) reads the model's last
hidden state at the prompt's last token. PPO updates the model and the head together: the clipped
objective (clip 0.2), an entropy bonus (0.01) and a value loss (0.5), gradients clipped at 0.5,
early stop of an update's epochs when the approximate KL passes ``target_kl`` (0.02), GAE with
``gamma`` and ``lambda`` 0.95 (TWOSOME's settings). ``lora=True`` trains LoRA adapters (rank 8,
alpha 16, on the attention's query and value projections, through ``peft``) instead of every weight.
Dropout is off throughout: rollouts and updates both run the model in eval mode, so PPO's ratio
compares the policy that chose the rollout's actions with itself (1 before the first step), not
with a copy thinned at random (TRL's trainers disable dropout for the same reason).

Simplified: TWOSOME's critic is the base model with its adapters off; here the value head shares
the policy's model (GLAM's choice), which also works without LoRA. The prompt is the env's
observation text, then ``"Your next action:"``; each action is scored as ``" " + action``.

Rewards come through the shaping stack: the agent trains on ``env_reward + sum(reward_terms)`` of
any spec, and reports the task return (the sum of ``info["env_reward"]``) and success, never the
shaped return. :func:`evaluate_action_policy` scores a policy on the unshaped task as the bench
scores SB3 agents, and ``align-gym bench --agent action_ppo --n-envs 1`` runs it in the bench.

>>> from align_gym.agents.llm_policy import ActionPPOConfig, train_action_ppo
>>> result = train_action_ppo(ActionPPOConfig(env_id="Align/TextQuest-easy-v0", model="tiny", steps=32,
...                                           rollout_steps=16, minibatch=8))  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from ..wrappers.core import shaping_layers
from ..wrappers.registry import shape_env
from ..wrappers.terms import EPISODE_SUMMARY

if TYPE_CHECKING:
    from .sb3 import Evaluation

PROMPT_SUFFIX = "\nYour next action:"


@dataclass
class ActionPPOConfig:
    """Every setting of an action-PPO run (TWOSOME's defaults where it states one)."""

    env_id: str = "Align/TextQuest-easy-v0"
    shaping: str = "none"
    model: str = "tiny"  # "tiny" (a random 2-layer Llama on SmolLM2's tokenizer), "embedded", or an HF folder
    normalisation: str = "token"  # token | word | none
    steps: int = 4096  # env steps in all
    rollout_steps: int = 128  # env steps between updates
    epochs: int = 1
    minibatch: int = 32  # steps per gradient step
    lr: float = 1e-6  # the model's (TWOSOME: about 1e-6 with LoRA; a tiny model needs far more)
    value_lr: float = 1e-5
    clip: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    target_kl: float | None = 0.02
    gamma: float = 0.99
    gae_lambda: float = 0.95
    lora: bool = False
    seed: int = 0
    device: str = "auto"  # cuda where present, else cpu
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    out: str | None = None  # a folder for log.jsonl and checkpoint.pt, written after every update
    resume: bool = False  # go on from out/checkpoint.pt where there is one
    allow_changes: list[str] = field(default_factory=list)  # settings a resume may change (others are refused)


# -- the model ---------------------------------------------------------------------------------

def resolve_device(spec: str) -> str:
    """``spec`` itself, or for ``"auto"`` CUDA where present, else the CPU."""
    if spec != "auto":
        return spec
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(spec: str, seed: int = 0, device: str = "cpu") -> tuple[Any, Any]:
    """The (model, tokenizer) ``spec`` names: ``"tiny"``, ``"embedded"`` (SmolLM2-135M-Instruct)
    or a local Hugging Face causal-LM folder. bf16 where the device supports it (CUDA with bf16),
    float32 on CPU."""
    from pathlib import Path

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .models import embedded_tokenizer, tiny_causal_lm

    if spec == "tiny":
        tokenizer = embedded_tokenizer()
        model = tiny_causal_lm(tokenizer, seed=seed)
    elif spec == "embedded":
        from ..llm_rewards.clients.transformers_backend import _dequantized_default

        folder = _dequantized_default()
        tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder)
    else:
        if not Path(spec).is_dir():
            raise FileNotFoundError(f"no model folder at {spec!r}: give 'tiny', 'embedded' or a local Hugging Face "
                                    "causal-LM folder (with config.json and the weights)")
        tokenizer, model = AutoTokenizer.from_pretrained(spec), AutoModelForCausalLM.from_pretrained(spec)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
    return model.to(device=device, dtype=dtype), tokenizer


def add_lora(model: Any) -> Any:
    """TWOSOME's adapters: LoRA rank 8, alpha 16, on the query and value projections."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:
        raise ImportError("lora=True needs peft: pip install 'align-gym[llm-agents]'") from error
    return get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))


class ActionLikelihoodPolicy(nn.Module):
    """pi(a | prompt) from each admissible action's token log-likelihood, and V(prompt) from a
    head on the last prompt token's hidden state; see the module docstring."""

    def __init__(self, model: Any, tokenizer: Any, normalisation: str = "token", seed: int = 0):
        super().__init__()
        if normalisation not in ("token", "word", "none"):
            raise ValueError(f"normalisation must be 'token', 'word' or 'none', got {normalisation!r}")
        self.model, self.tokenizer, self.normalisation = model, tokenizer, normalisation
        hidden = model.config.hidden_size
        generator = torch.Generator().manual_seed(seed)
        self.value_head = nn.Sequential(nn.Linear(hidden, 128), nn.Tanh(), nn.Linear(128, 1))
        for layer in self.value_head:
            if isinstance(layer, nn.Linear):
                nn.init.orthogonal_(layer.weight, gain=0.01 if layer.out_features == 1 else 1.0, generator=generator)
                nn.init.zeros_(layer.bias)
        self.value_head.to(device=next(model.parameters()).device)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def encode(self, prompt: str, actions: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """One row per action: the prompt's tokens then the action's (``" " + action``), right-padded
        (the plain layout, without a shared prompt: for comparisons). Returns ids, attention mask,
        the mask of action tokens among the targets, the prompt length."""
        prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        action_ids = [self.tokenizer(" " + a, add_special_tokens=False)["input_ids"] for a in actions]
        if not prompt_ids or any(not ids for ids in action_ids):
            raise ValueError("the prompt and every action must have at least one token")
        length = len(prompt_ids) + max(map(len, action_ids))
        ids = torch.full((len(actions), length), self.tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros_like(ids)
        targets = torch.zeros((len(actions), length - 1), dtype=torch.bool)  # target t is token t + 1
        for row, tokens in enumerate(action_ids):
            full = prompt_ids + tokens
            ids[row, : len(full)] = torch.tensor(full)
            attention[row, : len(full)] = 1
            targets[row, len(prompt_ids) - 1 : len(full) - 1] = True
        return ids.to(self.device), attention.to(self.device), targets.to(self.device), len(prompt_ids)

    def value(self, prompt: str) -> torch.Tensor:
        """V(prompt) alone (where no action is listed: the last state of a cut episode)."""
        ids = torch.tensor([self.tokenizer(prompt, add_special_tokens=False)["input_ids"]], device=self.device)
        hidden = self.model(input_ids=ids, output_hidden_states=True, logits_to_keep=1).hidden_states[-1]
        return self.value_head(hidden[0, -1].float()).squeeze(-1)

    def forward(self, prompt: str, actions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log pi over actions, V(prompt))`` for one state.

        The prompt runs once; its key-value cache is shared by every action, whose tokens then run
        side by side. Logits are computed only where an action token is predicted: the vocabulary
        is large, the actions short."""
        prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        action_ids = [self.tokenizer(" " + a, add_special_tokens=False)["input_ids"] for a in actions]
        if not prompt_ids or any(not ids for ids in action_ids):
            raise ValueError("the prompt and every action must have at least one token")
        out = self.model(input_ids=torch.tensor([prompt_ids], device=self.device), use_cache=True,
                         output_hidden_states=True, logits_to_keep=1)
        value = self.value_head(out.hidden_states[-1][0, -1].float()).squeeze(-1)
        first = torch.log_softmax(out.logits[0, -1].float(), -1)  # predicts every action's first token
        scores = first[torch.tensor([ids[0] for ids in action_ids], device=self.device)]
        # The rest of each action: its tokens but the last, which predict the tokens after them.
        longest = max(len(ids) for ids in action_ids) - 1
        if longest > 0:
            n = len(actions)
            ids = torch.full((n, longest), self.tokenizer.pad_token_id, dtype=torch.long)
            attention = torch.zeros((n, len(prompt_ids) + longest), dtype=torch.long)
            attention[:, : len(prompt_ids)] = 1
            for row, tokens in enumerate(action_ids):
                ids[row, : len(tokens) - 1] = torch.tensor(tokens[:-1])
                attention[row, len(prompt_ids) : len(prompt_ids) + len(tokens) - 1] = 1
            cache = out.past_key_values
            cache.batch_repeat_interleave(n)
            rest = self.model(input_ids=ids.to(self.device), attention_mask=attention.to(self.device),
                              past_key_values=cache, output_hidden_states=True, logits_to_keep=1)
            rows = torch.tensor([row for row, tokens in enumerate(action_ids) for _ in tokens[1:]], device=self.device)
            positions = torch.tensor([k for tokens in action_ids for k in range(len(tokens) - 1)], device=self.device)
            targets = torch.tensor([t for tokens in action_ids for t in tokens[1:]], device=self.device)
            logits = self.model.get_output_embeddings()(rest.hidden_states[-1][rows, positions]).float()
            token_logprobs = logits.gather(1, targets[:, None]).squeeze(1) - logits.logsumexp(1)
            scores = scores.index_add(0, rows, token_logprobs)
        if self.normalisation == "token":
            scores = scores / torch.tensor([len(ids) for ids in action_ids], device=scores.device)
        elif self.normalisation == "word":
            scores = scores / torch.tensor([max(len(a.split()), 1) for a in actions], device=scores.device)
        return torch.log_softmax(scores, dim=0), value


# -- PPO ----------------------------------------------------------------------------------------

@dataclass
class Step:
    prompt: str
    actions: list[str]
    choice: int
    logprob: float
    value: float
    reward: float = 0.0
    done: bool = False
    advantage: float = 0.0
    ret: float = 0.0


def gae(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, last_value: float, gamma: float,
        lam: float) -> np.ndarray:
    """Generalised advantage estimates (Schulman et al. 2016) of one stream of steps; ``dones[t]``
    marks that step ``t`` ended its episode (no bootstrap past it).

    >>> gae(np.array([0.0, 1.0]), np.array([0.5, 0.5]), np.array([False, True]), 0.0, 1.0, 1.0).tolist()
    [0.5, 0.5]
    """
    advantages, running = np.zeros(len(rewards)), 0.0
    for t in reversed(range(len(rewards))):
        next_value = last_value if t == len(rewards) - 1 else values[t + 1]
        live = 0.0 if dones[t] else 1.0
        delta = rewards[t] + gamma * next_value * live - values[t]
        running = delta + gamma * lam * live * running
        advantages[t] = running
    return advantages


def ppo_loss(new_logprob: torch.Tensor, old_logprob: torch.Tensor, advantage: torch.Tensor, entropy: torch.Tensor,
             value: torch.Tensor, ret: torch.Tensor, clip: float, ent_coef: float, vf_coef: float) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped objective with entropy bonus and value loss, for a minibatch of steps.

    >>> import torch
    >>> loss, stats = ppo_loss(torch.zeros(2), torch.zeros(2), torch.tensor([2.0, 0.0]), torch.zeros(2),
    ...                        torch.zeros(2), torch.zeros(2), 0.2, 0.0, 0.5)
    >>> float(loss), stats["clip_fraction"]  # ratio 1 everywhere: minus the mean advantage
    (-1.0, 0.0)
    """
    ratio = (new_logprob - old_logprob).exp()
    policy_loss = -torch.min(ratio * advantage, ratio.clamp(1 - clip, 1 + clip) * advantage).mean()
    value_loss = 0.5 * ((value - ret) ** 2).mean()
    loss = policy_loss - ent_coef * entropy.mean() + vf_coef * value_loss
    with torch.no_grad():
        approx_kl = float(((ratio - 1) - (new_logprob - old_logprob)).mean())
        clipped = float(((ratio - 1).abs() > clip).float().mean())
    return loss, {"policy_loss": float(policy_loss.detach()), "value_loss": float(value_loss.detach()), "approx_kl": approx_kl,
                  "clip_fraction": clipped}


@dataclass
class TrainResult:
    """What a run did: per-update logs (task return and success of the episodes that ended)."""

    config: dict[str, Any]
    updates: list[dict[str, float]] = field(default_factory=list)
    episodes: list[dict[str, Any]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)  # settings changed on resume, with the step
    policy: Any = None  # the trained policy


def recent_scores(episodes: list[dict[str, Any]], window: int = 20) -> dict[str, float]:
    """Task return (mean and its standard error) and success rate of the last ``window`` episodes,
    and how many there were: one episode's return is mostly sampling noise, so a reader needs the
    spread to tell learning from luck. NaN before the first episode ends (the error before two).

    >>> {k: round(v, 3) for k, v in recent_scores([{"true_return": r, "success": r > 0} for r in (0.0, 1.0, 1.0, 0.0)]).items()}
    {'task_return': 0.5, 'task_return_se': 0.289, 'success_rate': 0.5, 'recent_episodes': 4.0}
    """
    recent = episodes[-window:]
    returns = np.array([e["true_return"] for e in recent], dtype=float)
    return {"task_return": float(returns.mean()) if len(recent) else math.nan,
            "task_return_se": float(returns.std(ddof=1) / np.sqrt(len(recent))) if len(recent) > 1 else math.nan,
            "success_rate": float(np.mean([e["success"] for e in recent])) if len(recent) else math.nan,
            "recent_episodes": float(len(recent))}


def prompt_of(observation: str) -> str:
    return observation.rstrip() + PROMPT_SUFFIX


def make_action_policy(config: ActionPPOConfig) -> ActionLikelihoodPolicy:
    """The untrained policy ``config`` describes: its model (with LoRA adapters when
    ``config.lora``) on its device, seeded by ``config.seed``."""
    model, tokenizer = load_model(config.model, seed=config.seed, device=resolve_device(config.device))
    if config.lora:
        model = add_lora(model)
    return ActionLikelihoodPolicy(model, tokenizer, config.normalisation, seed=config.seed)


def train_action_ppo(config: ActionPPOConfig, policy: ActionLikelihoodPolicy | None = None,
                     on_update: Callable[[dict[str, float], TrainResult], None] | None = None) -> TrainResult:
    """Train an action-likelihood policy on ``config.env_id`` with PPO; returns the logs. A given
    ``policy`` (e.g. restored from a checkpoint) is trained further. ``on_update`` sees each
    update's row and the run so far."""
    policy = policy if policy is not None else make_action_policy(config)
    head_params = list(policy.value_head.parameters())
    model_params = [p for p in policy.model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam([{"params": model_params, "lr": config.lr},
                                  {"params": head_params, "lr": config.value_lr}], eps=1e-5)
    # Reward modules draw from streams of the run's seed, the same in every shaping of that seed.
    env = shape_env(gym.make(config.env_id, **config.env_kwargs), config.shaping, gamma=config.gamma, seed=config.seed)
    if not isinstance(env.action_space, gym.spaces.Text):
        raise ValueError(f"{config.env_id} takes {env.action_space}; action-PPO takes text envs that list valid_actions")
    refuse_redistribution([layer.module for layer in shaping_layers(env)], "action-PPO")
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    result = TrainResult(asdict(config))
    taken = resume_run(config, policy, optimizer, rng, generator, result)
    obs, info = env.reset(seed=int(rng.integers(2**31)))
    while taken < config.steps:
        # -- collect a rollout ----------------------------------------------------------------------
        steps: list[Step] = []
        policy.eval()
        for _ in range(min(config.rollout_steps, config.steps - taken)):
            actions = list(info.get("valid_actions") or [])
            if not actions:
                raise ValueError(f"{config.env_id} gave no info['valid_actions']: action-PPO chooses among them")
            prompt = prompt_of(obs)
            with torch.no_grad():
                logprobs, value = policy(prompt, actions)
            choice = int(torch.multinomial(logprobs.exp().cpu(), 1, generator=generator))
            obs, reward, terminated, truncated, info = env.step(actions[choice])
            steps.append(Step(prompt, actions, choice, float(logprobs[choice]), float(value), float(reward),
                              bool(terminated)))
            taken += 1
            if terminated or truncated:
                if truncated and not terminated:  # a cut episode: bootstrap its value, as SB3 does
                    with torch.no_grad():
                        steps[-1].reward += config.gamma * float(policy.value(prompt_of(obs)))
                steps[-1].done = True
                # The shaping stack's summary: task return, shaped return, each term, success, length.
                result.episodes.append({**info[EPISODE_SUMMARY], "step": taken})
                obs, info = env.reset(seed=int(rng.integers(2**31)))
        with torch.no_grad():
            last_value = 0.0 if steps[-1].done else float(policy.value(prompt_of(obs)))
        rewards = np.array([s.reward for s in steps])
        values = np.array([s.value for s in steps])
        advantages = gae(rewards, values, np.array([s.done for s in steps]), last_value, config.gamma, config.gae_lambda)
        for step, advantage in zip(steps, advantages):
            step.advantage, step.ret = float(advantage), float(advantage + step.value)
        # -- update ---------------------------------------------------------------------------------
        # The policy stays in eval mode here too: dropout off, so the ratio compares the function
        # that chose the rollout's actions with itself as it learns; see the module docstring.
        stats: dict[str, float] = {}
        order = np.arange(len(steps))
        for _ in range(config.epochs):
            rng.shuffle(order)
            for start in range(0, len(order), config.minibatch):
                batch = [steps[i] for i in order[start : start + config.minibatch]]
                outputs = [policy(s.prompt, s.actions) for s in batch]
                new_logprob = torch.stack([lp[s.choice] for (lp, _), s in zip(outputs, batch)])
                entropy = torch.stack([-(lp.exp() * lp).sum() for lp, _ in outputs])
                value = torch.stack([v for _, v in outputs])
                advantage = torch.tensor([s.advantage for s in batch], device=value.device)
                if len(batch) > 1:
                    advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)
                loss, stats = ppo_loss(new_logprob, torch.tensor([s.logprob for s in batch], device=value.device),
                                       advantage, entropy, value,
                                       torch.tensor([s.ret for s in batch], device=value.device, dtype=value.dtype),
                                       config.clip, config.ent_coef, config.vf_coef)
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model_params + head_params, config.max_grad_norm)
                optimizer.step()
            if config.target_kl is not None and stats.get("approx_kl", 0.0) > config.target_kl:
                break
        row = {"step": float(taken), **stats, **recent_scores(result.episodes), "time": time.time()}
        result.updates.append(row)
        record_update(config, policy, optimizer, rng, generator, result, taken, row)
        if on_update is not None:
            on_update(row, result)
    env.close()
    result.policy = policy
    return result


def evaluate_action_policy(policy: ActionLikelihoodPolicy, env_id: str, n_episodes: int = 10,
                           seed: int | np.random.SeedSequence = 10_000, deterministic: bool = True,
                           env_kwargs: dict[str, Any] | None = None) -> Evaluation:
    """Score ``policy`` on fresh, unshaped copies of ``env_id`` by the task reward, as the bench
    scores SB3 agents (:func:`align_gym.agents.sb3.evaluate`): episode ``k`` seeded with
    ``env_seeds(seed, n_episodes)[k]``; the most likely action when ``deterministic``, else one
    drawn from the policy (with a generator seeded from ``seed``)."""
    from .sb3 import Evaluation, env_seeds

    seeds = env_seeds(seed, n_episodes)
    generator = torch.Generator().manual_seed(seeds[0])
    env = gym.make(env_id, **(env_kwargs or {}))
    returns, successes, lengths = [], [], []
    was_training = policy.training
    policy.eval()
    for episode_seed in seeds:
        obs, info = env.reset(seed=episode_seed)
        total, length, done = 0.0, 0, False
        while not done:
            actions = list(info["valid_actions"])
            with torch.no_grad():
                logprobs, _ = policy(prompt_of(obs), actions)
            choice = int(logprobs.argmax()) if deterministic else int(torch.multinomial(logprobs.exp().cpu(), 1, generator=generator))
            obs, reward, terminated, truncated, info = env.step(actions[choice])
            total, length, done = total + float(reward), length + 1, terminated or truncated
        returns.append(total)
        successes.append(bool(info.get("success", False)))
        lengths.append(length)
    env.close()
    policy.train(was_training)
    return Evaluation(float(np.mean(returns)), float(np.std(returns)), float(np.mean(successes)), float(np.mean(lengths)))


def refuse_redistribution(modules: list[Any], agent: str) -> None:
    """ValueError if ``modules`` hold a redistribution that waits for an agent to relabel its
    rollouts (ircr, rrd, lare): our LLM agents do not (their online variants, ``online=true``, run)."""
    from ..wrappers.credit import waits_for_agent

    waiting = [m for m in modules if waits_for_agent(m)]
    if waiting:
        raise ValueError(f"{agent} does not relabel its rollouts, which {waiting[0].name} needs: train it with an SB3 "
                         f"agent, or pay its model's reward online ({waiting[0].name}(online=true)) where the method has that")


def resume_run(config: Any, policy: nn.Module, optimizer: Any, rng: np.random.Generator, generator: torch.Generator,
               result: Any) -> int:
    """Restore a run from ``config.out`` when ``config.resume`` is set; returns the steps taken.
    Settings that differ from the checkpoint's are refused unless named in ``config.allow_changes``
    (see :func:`align_gym.agents.llm_checkpoint.load_checkpoint`)."""
    from .llm_checkpoint import load_checkpoint

    if not (config.out and config.resume):
        return 0
    progress = load_checkpoint(config.out, policy, optimizer, asdict(config), config.allow_changes)
    if progress is None:
        return 0
    rng.bit_generator.state = progress["rng"]
    generator.set_state(progress["generator"])
    result.episodes, result.updates = list(progress["episodes"]), list(progress["updates"])
    result.changes = list(progress.get("changes", []))
    return int(progress["taken"])


def record_update(config: Any, policy: nn.Module, optimizer: Any, rng: np.random.Generator, generator: torch.Generator,
                  result: Any, taken: int, row: dict[str, float]) -> None:
    """Append the update's row to ``config.out/log.jsonl`` and write the checkpoint."""
    import json
    from pathlib import Path

    from .llm_checkpoint import save_checkpoint

    if not config.out:
        return
    folder = Path(config.out)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "log.jsonl", "a") as log:
        log.write(json.dumps(row) + "\n")
    save_checkpoint(folder, policy, optimizer, {
        "taken": taken, "rng": rng.bit_generator.state, "generator": generator.get_state(),
        "episodes": result.episodes, "updates": result.updates, "changes": result.changes, "config": asdict(config)})
