"""Train an LLM on an Align tool task with TRL's GRPOTrainer, shaping included.

``trl_environment`` turns ``Align/ToolCalc-v0`` into the class TRL's ``environment_factory``
wants: the calculator and the answer are the model's tools, ``get_reward`` is the task reward,
and ``Env.reward_funcs`` adds each shaping term as its own reward, so TRL logs
``rewards/ToolCalc_v0/mean`` (the task), ``rewards/pbrs/mean`` (the potential-based term) and
``reward`` (their sum, what GRPO optimises) at every step.

The default model is the embedded SmolLM2-135M-Instruct with a tool-calling chat template. At
135M parameters it never calls a tool by itself, so the script first warms it up as LLM-RL
pipelines do: two supervised passes over ``--warm-start`` solved episodes (the env's reference
calls, on seeds GRPO never sees), then GRPO. About 12 minutes on 2 CPU cores; on a GPU, pass a
larger local model folder and ``--warm-start 0``. ``--model tiny`` uses a randomly initialised
two-layer model: a smoke test in seconds.

Measured here with the defaults: after the warm start the model solves every one-step problem
(task reward 1.0 in each of the 10 GRPO steps, two tool calls per rollout), so GRPO's groups have
no variance left to learn from. With ``--problem-steps 2`` (16 warm-start episodes) it made both
calculator calls and stopped without answering in every rollout: task reward 0, and the
potential-based term paid ``Phi`` of where each rollout stopped, 0.67 (measured when that was the
only behaviour, today's ``--rollout-end progress``). Under the default ``--rollout-end terminal``
a rollout's end counts as terminal, so every ToolCalc rollout's term is ``-Phi(s_0) = 0``: logged,
it changes nothing GRPO learns; ``progress`` makes it a progress bonus that does, marked
non-invariant (see ``align_gym.agents.trl_env``). Either way the logs show each part of the reward.

    python examples/trl_grpo.py [--model embedded|tiny|/path/to/hf/model] [--steps 10] [--warm-start 32]
        [--problem-steps 1] [--rollout-end terminal|progress]
"""

import argparse
import json
import os

import torch
from tqdm import tqdm
from transformers.utils import get_json_schema
from trl import GRPOConfig, GRPOTrainer

from align_gym.agents import trl_environment
from align_gym.agents.llm_policy import load_model
from align_gym.agents.models import tool_calling_tokenizer

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--model", default="embedded", help="embedded, tiny, or a local Hugging Face model folder")
parser.add_argument("--steps", type=int, default=10, help="GRPO steps (default 10)")
parser.add_argument("--shaping", default="pbrs(potential=reference)", help="a shaping spec (default pbrs)")
parser.add_argument("--warm-start", type=int, default=32, help="solved episodes to learn from first (default 32)")
parser.add_argument("--problem-steps", type=int, default=1, help="calculator steps per ToolCalc problem (default 1)")
parser.add_argument("--rollout-end", default="terminal", choices=["terminal", "progress"],
                    help="an unfinished rollout's end: terminal (Phi=0, invariant; default) or progress (Phi kept)")
parser.add_argument("--out", default="runs/trl_grpo", help="output folder (default runs/trl_grpo)")
args = parser.parse_args()
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

# The environment: short problems keep CPU rollouts short; GRPO's groups share a seed.
Env = trl_environment("Align/ToolCalc-v0", shaping=args.shaping, rollout_end=args.rollout_end,
                      steps=args.problem_steps)

# float32 on the CPU; TRL refuses SmolLM2's own chat template (it ignores tools): swap in one that
# renders them, and hand the tokenizer to the trainer as processing_class.
model, tokenizer = load_model(args.model)
tokenizer = tool_calling_tokenizer(tokenizer)


def solved_episode(seed: int) -> list[dict]:
    """One episode played by the env's reference calls, as chat messages with tool calls."""
    env = Env()
    messages = [{"role": "user", "content": env.reset(seed=seed)}]
    while not env.record["done"]:
        call = json.loads(env.session.env.unwrapped.state_dict()["reference_call"])
        messages.append({"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": call}]})
        messages.append({"role": "tool", "name": call["name"], "content": getattr(env, call["name"])(**call["arguments"])})
    return messages[:-1]  # end on the model's last call


def warm_start(episodes: int) -> None:
    """Supervised learning on the assistant's tokens of solved episodes (2 passes)."""
    tools = [get_json_schema(getattr(Env(), name)) for name in Env.tool_names]
    optimiser = torch.optim.AdamW(model.parameters(), lr=5e-5)
    conversations = [solved_episode(10_000 + i) for i in range(episodes)]  # seeds apart from GRPO's
    for messages in tqdm(conversations * 2, desc="warm start"):
        ids = torch.tensor(tokenizer.apply_chat_template(messages, tools=tools, return_dict=True)["input_ids"])
        labels = torch.full_like(ids, -100)
        for turn in range(1, len(messages), 2):  # each assistant turn: the tokens it adds to the conversation
            start = len(tokenizer.apply_chat_template(messages[:turn], tools=tools, add_generation_prompt=True,
                                                      return_dict=True)["input_ids"])
            end = len(tokenizer.apply_chat_template(messages[:turn + 1], tools=tools, return_dict=True)["input_ids"])
            labels[start:end] = ids[start:end]
        loss = model(input_ids=ids[None].to(model.device), labels=labels[None].to(model.device)).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


if args.warm_start:
    warm_start(args.warm_start)

config = GRPOConfig(output_dir=args.out, max_steps=args.steps, per_device_train_batch_size=4, num_generations=4,
                    max_completion_length=128 + 96 * args.problem_steps, learning_rate=1e-5, logging_steps=1, report_to="none",
                    save_strategy="no", bf16=False, use_cpu=not torch.cuda.is_available())
trainer = GRPOTrainer(model=model, processing_class=tokenizer, args=config, train_dataset=Env.dataset(64, seed=0),
                      environment_factory=Env, reward_funcs=Env.reward_funcs)
trainer.train()

print("\nstep  reward  = task   + " + " + ".join(Env.term_names))
for log in (entry for entry in trainer.state.log_history if "reward" in entry):
    terms = "  ".join(f"{log[f'rewards/{name}/mean']:6.3f}" for name in Env.term_names)
    print(f"{log['step']:4d}  {log['reward']:6.3f}   {log['rewards/ToolCalc_v0/mean']:6.3f}   {terms}")
