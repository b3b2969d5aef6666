"""A language model as the agent: action-PPO on a text game, token-PPO on a tool task, and the
per-turn rewards exported in the shapes LLM-RL trainers read.

1. Action-PPO (TWOSOME, GLAM) on ``Align/TextQuest-easy-v0`` with potential-based shaping: the
   model scores each valid action by its token likelihood; the task return and success are
   printed per update (the shaped reward is what it trains on, never what is reported).
2. Token-PPO on ``Align/ToolCalc-v0``: the model writes each call token by token; each turn's
   record is token in, token out (``prompt_ids``, ``completion_ids``, ``logprobs``, the reward
   and its terms).
3. One token-PPO episode's turn rewards as a per-turn list, ``(reward, response_end_index)``
   pairs and a per-token tensor (``align_gym.wrappers.tokens``).

The tiny random model (the default) shows the plumbing in a minute on a CPU; ``--model embedded``
(SmolLM2-135M-Instruct) or a local Hugging Face folder trains for real (a GPU helps).

    python examples/llm_agents.py [--model tiny] [--steps 512] [--turns 16]
"""

from __future__ import annotations

import argparse

from align_gym.agents.llm_policy import ActionPPOConfig, train_action_ppo
from align_gym.agents.token_ppo import TokenPPOConfig, train_token_ppo
from align_gym.wrappers.tokens import per_token_tensor, per_turn_list, response_end_pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny", help="tiny, embedded, or a local Hugging Face folder")
    parser.add_argument("--steps", type=int, default=512, help="action-PPO env steps (default 512)")
    parser.add_argument("--turns", type=int, default=16, help="token-PPO turns (default 16)")
    args = parser.parse_args()

    print("1. action-PPO on Align/TextQuest-easy-v0, shaped by the reference potential")
    config = ActionPPOConfig(env_id="Align/TextQuest-easy-v0", model=args.model, shaping="pbrs(potential=reference)",
                             steps=args.steps, rollout_steps=128, minibatch=32, epochs=2, lr=1e-3, value_lr=1e-3)
    train_action_ppo(config, on_update=lambda row, _: print(
        f"   step {int(row['step']):5d}: task return {row['task_return']:.3f}, success {row['success_rate']:.2f}"))

    print("2. token-PPO on Align/ToolCalc-v0")
    result = train_token_ppo(TokenPPOConfig(env_id="Align/ToolCalc-v0", model=args.model, turns=args.turns,
                                            rollout_turns=8, max_new_tokens=24, lr=1e-4))
    first = result.turns[0]
    print(f"   a turn's record: {len(first['prompt_ids'])} prompt tokens, {len(first['completion_ids'])} completion "
          f"tokens, reward {first['reward']:.2f} (task {first['env_reward']:.2f}), answer {first['text'][:60]!r}")

    print("3. the last rollout's first episode: its turn rewards as trainers read them")
    episode = [turn for turn in result.turns if turn["episode"] == result.turns[0]["episode"]]
    rewards = [turn["reward"] for turn in episode]
    completions = [len(turn["completion_ids"]) for turn in episode]
    # each turn's prompt is the last one plus its sampled ids and the reply: count only what it adds
    prompts = [len(episode[0]["prompt_ids"])] + [
        len(turn["prompt_ids"]) - len(before["prompt_ids"]) - len(before["completion_ids"])
        for before, turn in zip(episode, episode[1:])]
    print(f"   per turn: {per_turn_list(rewards)}")
    print(f"   (reward, response_end_index): {response_end_pairs(rewards, completions, prompts)}")
    tensor = per_token_tensor(rewards, completions, placement="last_token", prompt_lengths=prompts)
    print(f"   per token: a tensor of {tuple(tensor.shape)}, sum {float(tensor.sum()):.2f}")


if __name__ == "__main__":
    main()
