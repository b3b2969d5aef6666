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
    next_prompt_ids,
    train_token_ppo,
)
from align_gym.wrappers.tokens import per_token_tensor, place, response_end_pairs

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
    settings = {"turns": 8, "rollout_turns": 8, "max_new_tokens": 6, "lr": 1e-3, "epochs": 1, **settings}
    config = TokenPPOConfig(env_id="AlignTest/TwoTurn-v0", model="tiny", seed=0, **settings)
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
        if placement == "value_shaping":  # chained over the episode's turns (see the test below)
            episode = [r for r in result.turns if r["episode"] == record["episode"]]
            following = episode.index(record) + 1
            kwargs["values"] = record["values"]
            kwargs["next_value"] = episode[following]["values"][0] if following < len(episode) else 0.0
        placed = place(placement, record["reward"], n, **kwargs)
        kl = np.array(record["logprobs"]) - np.array(record["ref_logprobs"])
        np.testing.assert_allclose(record["token_rewards"], placed - 0.1 * kl, atol=1e-6)


def episodes_of(turns):
    """The records of each episode, in order."""
    return [[r for r in turns if r["episode"] == e] for e in dict.fromkeys(r["episode"] for r in turns)]


def test_value_shaping_is_potential_based_across_the_turns_of_an_episode(models):
    """V(n) of a turn is V at the next turn's first token, 0 only where the episode ends, so the
    shaping telescopes over the whole episode: it pays -V(first token) once, not at every turn."""
    result, _ = run(models, placement="value_shaping", kl_coef=0.0, token_gamma=0.9)
    episodes = episodes_of(result.turns)
    assert len(episodes) == 4 and all(len(e) == 2 and e[-1]["done"] for e in episodes)
    for episode in episodes:
        placed = np.concatenate([r["token_rewards"] for r in episode])
        values = np.concatenate([r["values"] for r in episode])
        # the same chain as wrappers/tokens.py's per-token tensor over the episode's completions
        expected = per_token_tensor([r["reward"] for r in episode], [len(r["completion_ids"]) for r in episode],
                                    "value_shaping", values=values, gamma=0.9)
        np.testing.assert_allclose(placed, expected.double().numpy(), atol=1e-6)
        # the discounted return from the first token: the last-token placement's, minus V(0) once
        lasts = np.concatenate([place("last_token", r["reward"], len(r["completion_ids"])) for r in episode])
        discount = 0.9 ** np.arange(len(placed))
        assert float(discount @ placed) == pytest.approx(float(discount @ lasts) - values[0], abs=1e-6)


def test_value_shaping_bootstraps_an_episode_cut_by_the_budget_from_the_next_state(models):
    # Nothing trains (learning rates 0), so a run of 4 turns plays the first 3 of a run of 3 exactly:
    # its episode goes on where the shorter run's was cut, and V there is the cut turn's V(n).
    frozen = {"placement": "value_shaping", "kl_coef": 0.0, "lr": 0.0, "value_lr": 0.0}
    cut_run, _ = run(models, turns=3, rollout_turns=3, **frozen)
    full_run, _ = run(models, turns=4, rollout_turns=4, **frozen)
    cut, full = episodes_of(cut_run.turns)[-1], episodes_of(full_run.turns)[-1]
    assert len(cut) == 1 and not cut[0]["done"] and len(full) == 2
    assert cut[0]["completion_ids"] == full[0]["completion_ids"]
    record, following = cut[0], full[1]["values"][0]
    expected = place("value_shaping", record["reward"], len(record["completion_ids"]), values=record["values"],
                     gamma=1.0, next_value=following)
    np.testing.assert_allclose(record["token_rewards"], expected, atol=1e-6)
    np.testing.assert_allclose(record["token_rewards"], full[0]["token_rewards"], atol=1e-6)


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
    ref_after = policy.reference_logprobs(record["prompt_ids"], record["completion_ids"])
    assert torch.allclose(ref_after, ref, atol=1e-5)  # the reference never trains
    new, *_ = policy.evaluate(record["prompt_ids"], record["completion_ids"])
    assert not torch.allclose(new, ref_after, atol=1e-4)  # the policy did


def test_the_reference_model_runs_once_per_turn_not_once_per_epoch(models):
    calls = []
    models[2].register_forward_hook(lambda *_: calls.append(1))
    result, _ = run(models, epochs=3, kl_coef=0.1)
    assert len(result.turns) == 8 and len(calls) == 8  # the rollout's, kept for every epoch
    assert all(len(r["ref_logprobs"]) == len(r["completion_ids"]) for r in result.turns)


def dropout_model_folder(folder, tokenizer):
    """A one-layer GPT-2 with dropout 0.1 everywhere, saved with ``tokenizer`` as a Hugging Face folder."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=len(tokenizer), n_positions=1024, n_embd=32, n_layer=1, n_head=2, resid_pdrop=0.1,
                        embd_pdrop=0.1, attn_pdrop=0.1, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_the_first_ratio_is_one_with_a_model_that_has_dropout(models, tmp_path):
    folder = dropout_model_folder(tmp_path / "gpt2", models[1])
    model, tokenizer = load_model(folder)
    reference, _ = load_model(folder)
    assert any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules())
    policy = TokenPolicy(model, tokenizer, reference, seed=0)
    config = TokenPPOConfig(env_id="AlignTest/TwoTurn-v0", model=folder, turns=8, rollout_turns=8, max_new_tokens=6,
                            epochs=1, lr=1e-3, seed=0)
    row = train_token_ppo(config, policy=policy).updates[0]
    # one epoch, one gradient step: the ratio is computed before any update, so it is 1 on every token
    assert row["approx_kl"] < 1e-9 and row["clip_fraction"] == 0.0, row


def test_each_turn_extends_the_context_by_the_sampled_ids_and_the_tokenised_reply(models):
    """Token in, token out: the episode, exported as one sequence, holds every completion exactly
    as it was sampled, and between them only the env's reply as the chat template renders it."""
    tokenizer, stops = models[1], {models[1].eos_token_id, models[1].convert_tokens_to_ids("<|im_end|>")}
    result, _ = run(models, max_new_tokens=16)
    episodes = episodes_of(result.turns)
    assert len(episodes) == 4
    for episode in episodes:
        sequence = episode[-1]["prompt_ids"] + episode[-1]["completion_ids"]
        added = [len(episode[0]["prompt_ids"])] + [len(turn["prompt_ids"]) - len(before["prompt_ids"]) - len(before["completion_ids"])
                                                   for before, turn in zip(episode, episode[1:])]
        pairs = response_end_pairs([t["reward"] for t in episode], [len(t["completion_ids"]) for t in episode], added)
        for turn, (_, end) in zip(episode, pairs):
            assert sequence[: end + 1] == turn["prompt_ids"] + turn["completion_ids"]
        for before, turn in zip(episode, episode[1:]):
            reply = tokenizer.decode(turn["prompt_ids"][len(before["prompt_ids"]) + len(before["completion_ids"]):])
            closed = before["completion_ids"][-1] in stops  # else the turn's end-of-turn token is added
            assert reply == ("" if closed else "<|im_end|>") + "\n<|im_start|>user\nAgain, in capitals.<|im_end|>\n" \
                                                               "<|im_start|>assistant\n"


def test_the_next_prompt_is_what_the_chat_template_renders_where_the_answer_retokenises_the_same(models):
    tokenizer = models[1]
    stop = tokenizer.convert_tokens_to_ids("<|im_end|>")
    first = [{"role": "user", "content": "Add 2 and 3."}]
    prompt = chat_prompt_ids(tokenizer, first)
    answer = tokenizer("The sum is 5.", add_special_tokens=False)["input_ids"]
    rendered = chat_prompt_ids(tokenizer, [*first, {"role": "assistant", "content": "The sum is 5."},
                                           {"role": "user", "content": "Correct."}])
    # an answer that sampled its end-of-turn token, and one cut before it (which the context closes)
    assert next_prompt_ids(tokenizer, prompt, [*answer, stop], "Correct.", {stop}) == rendered
    assert next_prompt_ids(tokenizer, prompt, answer, "Correct.", {stop}) == rendered


# A chat template that rewrites history, as templates that drop earlier reasoning do: earlier
# answers are rendered as "(answered)", not as the tokens the model produced.
FORGETFUL_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['role'] == 'assistant' %}(answered){% else %}{{ m['content'] }}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_a_chat_template_that_rewrites_history_does_not_rewrite_the_context(models):
    models[1].chat_template = FORGETFUL_TEMPLATE
    result, _ = run(models)
    for before, turn in zip(result.turns, result.turns[1:]):
        if turn["episode"] == before["episode"]:
            assert turn["prompt_ids"][: len(before["prompt_ids"]) + len(before["completion_ids"])] == \
                before["prompt_ids"] + before["completion_ids"]
    assert not any("(answered)" in models[1].decode(r["prompt_ids"]) for r in result.turns)


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
