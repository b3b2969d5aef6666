"""Token-PPO: token-in, token-out records, the placements and KL penalty wired through, GAE over a
multi-turn episode's tokens, the history check, and learning a rewarded answer with the embedded
model."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import align_gym  # noqa: F401
from align_gym.agents.llm_policy import gae, load_model
from align_gym.agents.token_ppo import (
    TokenPolicy,
    TokenPPOConfig,
    chat_prompt_ids,
    extends,
    train_token_ppo,
)
from align_gym.wrappers.tokens import place

CHARSET = "".join(chr(c) for c in range(32, 127)) + "\n"


class TwoTurnEnv(gym.Env):
    """Two turns; each pays the share of the answer's letters that are capitals."""

    def __init__(self):
        self.observation_space = gym.spaces.Text(200, charset=CHARSET)
        self.action_space = gym.spaces.Text(400, charset=CHARSET)
        self.turn = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.turn = 0
        return "Answer in capitals.", {}

    def step(self, action):
        self.turn += 1
        letters = [c for c in action if c.isalpha()]
        reward = sum(c.isupper() for c in letters) / max(len(letters), 1)
        return "Again, in capitals.", reward, self.turn == 2, False, {"success": reward > 0.5}


gym.register("AlignTest/TwoTurn-v0", entry_point=TwoTurnEnv)


@pytest.fixture
def models():
    """A fresh tiny policy and its reference (the same weights): each test trains its own."""
    model, tokenizer = load_model("tiny", seed=0)
    reference, _ = load_model("tiny", seed=0)
    return model, tokenizer, reference


def run(models, **settings):
    model, tokenizer, reference = models
    policy = TokenPolicy(model, tokenizer, reference, seed=0)
    config = TokenPPOConfig(env_id="AlignTest/TwoTurn-v0", model="tiny", turns=8, rollout_turns=8, max_new_tokens=6,
                            lr=1e-3, epochs=1, seed=0, **settings)
    return train_token_ppo(config, policy=policy), policy


@pytest.mark.parametrize("placement", ["last_token", "uniform", "discounted", "value_shaping"])
def test_each_turn_record_is_token_in_token_out_with_its_placement_and_kl_penalty(models, placement):
    result, _ = run(models, placement=placement, kl_coef=0.1, token_gamma=0.9)
    assert len(result.turns) == 8
    for record in result.turns:
        assert set(record) >= {"prompt_ids", "completion_ids", "completion_mask", "logprobs", "reward", "reward_terms"}
        n = len(record["completion_ids"])
        assert len(record["logprobs"]) == len(record["completion_mask"]) == n >= 1
        kwargs = {"gamma": 0.9} if placement in ("discounted", "value_shaping") else {}
        if placement == "value_shaping":
            kwargs["values"] = record["values"]
        placed = place(placement, record["reward"], n, **kwargs)
        kl = np.array(record["logprobs"]) - np.array(record["ref_logprobs"])
        np.testing.assert_allclose(record["token_rewards"], placed - 0.1 * kl, atol=1e-6)


def test_gae_runs_over_the_tokens_of_both_turns_of_an_episode(models):
    result, _ = run(models, kl_coef=0.0, token_gamma=0.9, gae_lambda=0.8)
    first, second = result.turns[0], result.turns[1]
    rewards = np.concatenate([first["token_rewards"], second["token_rewards"]])
    values = np.concatenate([first["values"], second["values"]])
    dones = np.zeros(len(rewards), dtype=bool)
    dones[-1] = True  # the episode ends with the second turn
    expected = gae(rewards, values, dones, 0.0, 0.9, 0.8)
    np.testing.assert_allclose(np.concatenate([first["advantages"], second["advantages"]]), expected, atol=1e-6)
    assert expected[len(first["token_rewards"]) - 1] != pytest.approx(first["token_rewards"][-1] - first["values"][-1])


def test_the_kl_penalty_is_measured_against_the_frozen_reference(models):
    model, tokenizer, reference = models
    result, policy = run(models, kl_coef=0.1)
    record = result.turns[0]
    assert np.allclose(record["logprobs"], record["ref_logprobs"], atol=1e-5)  # before any update: the same model
    ids = torch.tensor([record["prompt_ids"] + record["completion_ids"]])
    with torch.no_grad():
        logits = reference(input_ids=ids).logits[0, len(record["prompt_ids"]) - 1 : -1]
    ref = torch.log_softmax(logits, -1).gather(1, ids[0, len(record["prompt_ids"]):, None]).squeeze(1)
    _, _, _, ref_after = policy.evaluate(record["prompt_ids"], record["completion_ids"])
    assert torch.allclose(ref_after, ref, atol=1e-5)  # the reference never trains
    new, *_ = policy.evaluate(record["prompt_ids"], record["completion_ids"])
    assert not torch.allclose(new, ref_after, atol=1e-4)  # the policy did


# A chat template that rewrites history, as templates that drop earlier reasoning do: earlier
# answers are rendered as "(answered)", not as the tokens the model produced.
FORGETFUL_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['role'] == 'assistant' %}(answered){% else %}{{ m['content'] }}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_a_rewritten_history_is_flagged_not_crashed_on(models):
    assert extends([5, 6], [5, 6, 7]) and not extends([5, 6], [5, 7, 7])
    result, _ = run(models)  # SmolLM2's own template keeps history: nothing flagged wrongly
    pairs = [(a, b) for a, b in zip(result.turns, result.turns[1:]) if len(b["prompt_ids"]) > len(a["prompt_ids"])]
    assert pairs and all(b["history_rewritten"] == (not extends(a["prompt_ids"] + a["completion_ids"], b["prompt_ids"]))
                         for a, b in pairs)
    models[1].chat_template = FORGETFUL_TEMPLATE
    result, _ = run(models)
    second_turns = [r for r in result.turns if "(answered)" in models[1].decode(r["prompt_ids"])]
    assert second_turns and all(r["history_rewritten"] for r in second_turns)
    assert result.history_rewritten == len(second_turns) and len(result.updates) == 1  # trained on regardless


class OneAnswerEnv(gym.Env):
    """One question; an answer that starts with "yes" pays 1 (the model's prior favours "no")."""

    question = "Answer with one word, yes or no: do cats bark?"

    def __init__(self):
        self.observation_space = gym.spaces.Text(200, charset=CHARSET)
        self.action_space = gym.spaces.Text(400, charset=CHARSET)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.question, {}

    def step(self, action):
        win = action.strip().lower().startswith("yes")
        return "Done.", float(win), True, False, {"success": win}


gym.register("AlignTest/OneAnswer-v0", entry_point=OneAnswerEnv)


def test_token_ppo_raises_the_probability_of_the_rewarded_answer_with_the_embedded_model():
    model, tokenizer = load_model("embedded")
    reference, _ = load_model("embedded")
    policy = TokenPolicy(model, tokenizer, reference, seed=0)
    prompt = chat_prompt_ids(tokenizer, [{"role": "user", "content": OneAnswerEnv.question}])
    yes = [i for i in range(len(tokenizer)) if tokenizer.decode([i]).strip().lower() == "yes"]

    def p_yes() -> float:  # the probability that the answer's first token is "yes" in any case
        with torch.no_grad():
            logits = policy.model(input_ids=torch.tensor([prompt])).logits[0, -1].float()
        return float(torch.softmax(logits, -1)[yes].sum())

    before = p_yes()
    config = TokenPPOConfig(env_id="AlignTest/OneAnswer-v0", model="embedded", turns=16, rollout_turns=16,
                            max_new_tokens=1, lr=1e-5, epochs=2, seed=0)
    train_token_ppo(config, policy=policy)
    after = p_yes()
    assert before < 0.35 and after >= before + 0.25, (before, after)  # measured: 0.25 -> 0.73


@pytest.mark.parametrize("env_id, shaping, terms", [
    ("Align/ToolSQL-v0", "count(scope=episode, coef=0.01)", {"count"}),
    ("Align/TextQuest-easy-v0", "pbrs(potential=reference)+count(scope=episode, coef=0.01)", {"pbrs", "count"}),
])
def test_token_ppo_trains_on_tool_and_text_tasks_with_stacked_shaping(env_id, shaping, terms):
    config = TokenPPOConfig(env_id=env_id, model="tiny", turns=4, rollout_turns=4, max_new_tokens=8, shaping=shaping, seed=0)
    result = train_token_ppo(config)
    assert len(result.updates) == 1 and len(result.turns) == 4
    assert all(len(t["completion_ids"]) >= 1 and set(t["reward_terms"]) == terms for t in result.turns)
