"""Speed of the token-level agents, each against a peer in the same run:

- action scoring (action-PPO's rollout): admissible actions scored per second by
  ``ActionLikelihoodPolicy`` (the prompt run once, its key-value cache shared by the actions, and
  logits only where an action token is predicted) against the plain way (the prompt repeated in
  one row per action, the full vocabulary's log-softmax at every position);
- generation (token-PPO's rollout): tokens per second of ``TokenPolicy.generate`` (a sampling loop
  over the KV cache) against Hugging Face's ``model.generate`` with the same settings;
- update: tokens per second of one PPO gradient step of each agent on its rollout; token-PPO's
  against the same step that also runs the frozen reference model again (as it did before the
  reference's log-probabilities were computed once per rollout and reused by every epoch).

For the tiny random model and the embedded SmolLM2-135M, on the CPU, and on CUDA (bf16) where
there is one.

    python benchmarks/llm_agent_speed.py [--models tiny,embedded] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from align_gym.agents.llm_policy import ActionLikelihoodPolicy, load_model
from align_gym.agents.token_ppo import TokenPolicy, chat_prompt_ids

PROMPT = ("Quest: take the ruby amulet.\nYou are in the library.\nLibrary. Exits: north, east.\n"
          "You see: a golden idol.\nYou carry nothing.\nYour next action:")
ACTIONS = ["go north", "go east", "take the golden idol", "look", "inventory", "examine the golden idol"]


def timed(function, repeats: int) -> float:
    """Median seconds of ``function()`` over ``repeats`` runs, after one warm-up."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def full_vocabulary_scores(policy: ActionLikelihoodPolicy, prompt: str, actions: list[str]) -> torch.Tensor:
    """The plain way: one row per action (the prompt repeated), log-softmax over the vocabulary at
    every position, then the action tokens."""
    ids, attention, targets, _ = policy.encode(prompt, actions)
    logits = policy.model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
    token_logprobs = torch.log_softmax(logits, -1).gather(2, ids[:, 1:, None]).squeeze(2)
    return torch.log_softmax((token_logprobs * targets).sum(1) / targets.sum(1), 0)


def measure(spec: str, device: str, repeats: int) -> list[str]:
    model, tokenizer = load_model(spec, device=device)
    reference, _ = load_model(spec, device=device)
    action_policy = ActionLikelihoodPolicy(model, tokenizer)
    token_policy = TokenPolicy(model, tokenizer, reference)
    rows = []
    with torch.no_grad():
        ours = timed(lambda: action_policy(PROMPT, ACTIONS), repeats)
        plain = timed(lambda: full_vocabulary_scores(action_policy, PROMPT, ACTIONS), repeats)
    rows.append(f"| {spec} | {device} | action scoring | {len(ACTIONS) / ours:,.1f} actions/s | "
                f"{len(ACTIONS) / plain:,.1f} (full vocabulary) | {plain / ours:.2f} |")
    prompt_ids = chat_prompt_ids(tokenizer, [{"role": "user", "content": PROMPT}])
    new_tokens = 32
    generator = torch.Generator().manual_seed(0)
    token_policy.stop_ids = set()  # generate exactly new_tokens tokens, as the peer does
    ours = timed(lambda: token_policy.generate(prompt_ids, new_tokens, 1.0, generator), repeats)
    ids = torch.tensor([prompt_ids], device=model.device)
    with torch.no_grad():
        peer = timed(lambda: model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True,
                                            pad_token_id=tokenizer.pad_token_id), repeats)
    rows.append(f"| {spec} | {device} | generation | {new_tokens / ours:,.1f} tokens/s | "
                f"{new_tokens / peer:,.1f} (HF generate) | {peer / ours:.2f} |")
    completion = token_policy.generate(prompt_ids, new_tokens, 1.0, generator)
    optimizer = torch.optim.Adam(list(model.parameters()) + list(token_policy.value_head.parameters()), lr=1e-6)

    def token_update(rerun_reference: bool = False) -> None:
        logprobs, values, _ = token_policy.evaluate(prompt_ids, completion)
        if rerun_reference:
            token_policy.reference_logprobs(prompt_ids, completion)
        loss = -(logprobs.mean()) + values.pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def action_update() -> None:
        logprobs, value = action_policy(PROMPT, ACTIONS)
        loss = -logprobs[0] + value.pow(2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    update = timed(token_update, repeats)
    peer = timed(lambda: token_update(rerun_reference=True), repeats)
    rows.append(f"| {spec} | {device} | token-PPO update | {len(completion) / update:,.1f} tokens/s | "
                f"{len(completion) / peer:,.1f} (reference rerun every epoch) | {peer / update:.2f} |")
    update = timed(action_update, repeats)
    rows.append(f"| {spec} | {device} | action-PPO update | {1 / update:,.1f} states/s ({len(ACTIONS)} actions) | | |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny,embedded")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # one core each, as the bench's cells run; more threads thrash on a busy machine
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print("| model | device | what | ours | peer | ratio |\n|---|---|---|---|---|---|")
    for device in devices:
        for spec in args.models.split(","):
            for row in measure(spec, device, args.repeats):
                print(row, flush=True)


if __name__ == "__main__":
    main()
