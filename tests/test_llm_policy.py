"""Action-PPO (TWOSOME, GLAM): action log-likelihoods, the PPO loss, and learning with a tiny model."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import align_gym  # noqa: F401
from align_gym.agents.llm_policy import (
    ActionLikelihoodPolicy,
    ActionPPOConfig,
    evaluate_action_policy,
    gae,
    load_model,
    make_action_policy,
    ppo_loss,
    train_action_ppo,
)

CHARSET = "".join(chr(c) for c in range(32, 127)) + "\n"


class OneStepChoiceEnv(gym.Env):
    """One decision among four commands; only "open the red door" pays (and succeeds)."""

    actions = ["open the red door", "open the blue door", "wait here", "look around"]

    def __init__(self):
        self.observation_space = gym.spaces.Text(200, charset=CHARSET)
        self.action_space = gym.spaces.Text(50, charset=CHARSET)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        order = list(self.np_random.permutation(self.actions))
        return "Two doors, red and blue. The treasure is behind the red one.", {"valid_actions": order}

    def step(self, action):
        win = action == self.actions[0]
        return "Done.", float(win), True, False, {"valid_actions": ["look around"], "success": win}


gym.register("AlignTest/OneStepChoice-v0", entry_point=OneStepChoiceEnv)


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny", seed=0)


@pytest.mark.parametrize("normalisation", ["token", "word", "none"])
def test_action_probabilities_are_softmaxed_normalised_token_log_likelihoods(tiny, normalisation):
    model, tokenizer = tiny
    policy = ActionLikelihoodPolicy(model, tokenizer, normalisation)
    prompt, actions = "You are in a hall.\nYour next action:", ["go north", "take the brass lamp", "x"]
    logprobs, _ = policy(prompt, actions)
    # The same scores from the model's full logits, one action at a time.
    scores = []
    for action in actions:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a = tokenizer(" " + action, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([p + a])).logits[0]
        total = sum(float(torch.log_softmax(logits[len(p) - 1 + k], -1)[token]) for k, token in enumerate(a))
        scores.append(total / {"token": len(a), "word": len(action.split()), "none": 1}[normalisation])
    expected = torch.log_softmax(torch.tensor(scores), 0)
    assert torch.allclose(logprobs.detach(), expected, atol=1e-4)
    assert float(logprobs.exp().sum()) == pytest.approx(1.0, abs=1e-5)


def test_the_ppo_loss_and_its_gradients_on_a_fixed_batch():
    new = torch.tensor([-0.5, -1.0, -2.0], requires_grad=True)
    old = torch.tensor([-1.0, -1.0, -1.0])
    advantage = torch.tensor([1.0, -1.0, 2.0])
    value = torch.tensor([0.5, 0.0, 1.0], requires_grad=True)
    ret = torch.tensor([1.0, 0.0, 0.0])
    entropy = torch.tensor([1.0, 1.0, 1.0])
    loss, stats = ppo_loss(new, old, advantage, entropy, value, ret, clip=0.2, ent_coef=0.01, vf_coef=0.5)
    ratio = np.exp([0.5, 0.0, -1.0])
    # step 0: ratio 1.65 > 1.2 with A > 0: clipped, no gradient; step 1: unclipped; step 2: ratio 0.37 < 0.8
    # with A > 0: min picks the unclipped 0.37 * 2, which has a gradient
    surrogate = [1.2 * 1.0, ratio[1] * -1.0, ratio[2] * 2.0]
    value_loss = 0.5 * np.mean([0.25, 0.0, 1.0])
    assert float(loss) == pytest.approx(-np.mean(surrogate) - 0.01 + 0.5 * value_loss, abs=1e-6)
    loss.backward()
    assert new.grad.tolist() == pytest.approx([0.0, ratio[1] / 3, -ratio[2] * 2 / 3], abs=1e-6)
    assert value.grad.tolist() == pytest.approx([0.5 * (0.5 - 1.0) / 3, 0.0, 0.5 * 1.0 / 3], abs=1e-6)
    assert stats["clip_fraction"] == pytest.approx(2 / 3)


def test_gae_against_a_hand_computed_case():
    rewards, values = np.array([1.0, 0.0, 2.0]), np.array([0.5, 1.0, 1.5])
    gamma, lam = 0.9, 0.8
    d2 = 2.0 - 1.5  # episode ends at step 2: no bootstrap
    d1 = 0.0 + 0.9 * 1.5 - 1.0
    d0 = 1.0 + 0.9 * 1.0 - 0.5
    expected = [d0 + 0.72 * (d1 + 0.72 * d2), d1 + 0.72 * d2, d2]
    assert gae(rewards, values, np.array([False, False, True]), 9.9, gamma, lam).tolist() == pytest.approx(expected)


@pytest.mark.parametrize("env_id, steps, lr, margin", [
    ("AlignTest/OneStepChoice-v0", 256, 1e-3, 0.4),
    # measured with these seeds: 0.58 -> 0.81 (a uniform choice among the listed actions: 0.66)
    ("Align/TextQuest-easy-v0", 2048, 3e-3, 0.15),
])
def test_action_ppo_raises_success_with_a_tiny_model(env_id, steps, lr, margin):
    config = ActionPPOConfig(env_id=env_id, model="tiny", steps=steps, rollout_steps=64, minibatch=32, epochs=2,
                             lr=lr, value_lr=1e-3, target_kl=None, seed=0)
    policy = make_action_policy(config)
    # The stochastic policy's success on 100 evaluation episodes, none of them trained on.
    before = evaluate_action_policy(policy, env_id, 100, seed=1000, deterministic=False).success_rate
    result = train_action_ppo(config, policy=policy)
    after = evaluate_action_policy(policy, env_id, 100, seed=1000, deterministic=False).success_rate
    assert after >= before + margin, (before, after)
    assert len(result.episodes) > 0 and all({"true_return", "shaped_return", "success"} <= set(e) for e in result.episodes)


def test_lora_trains_the_adapters_and_the_value_head_and_leaves_the_base_model_frozen():
    pytest.importorskip("peft")
    config = ActionPPOConfig(env_id="AlignTest/OneStepChoice-v0", model="tiny", steps=64, rollout_steps=32, minibatch=16,
                             lr=1e-2, value_lr=1e-3, target_kl=None, lora=True, seed=0)
    policy = make_action_policy(config)
    before = {name: p.detach().clone() for name, p in policy.named_parameters()}
    adapters = [name for name in before if "lora_" in name]
    assert adapters and all(policy.get_parameter(name).requires_grad for name in adapters)
    train_action_ppo(config, policy=policy)
    changed = {name for name, p in policy.named_parameters() if not torch.equal(before[name], p)}
    assert set(adapters) <= changed  # every adapter learned
    assert {name for name in before if name.startswith("value_head.")} <= changed
    assert changed <= set(adapters) | {name for name in before if name.startswith("value_head.")}  # the base did not


@pytest.mark.parametrize("env_id", ["Align/TextWorld-v0", "Align/WebShop-v0", "Align/WebForm-v0"])
def test_action_ppo_trains_on_each_task_family_that_lists_valid_actions(env_id):
    config = ActionPPOConfig(env_id=env_id, model="tiny", steps=16, rollout_steps=8, minibatch=8,
                             shaping="count(scope=episode, coef=0.01)", seed=0)
    result = train_action_ppo(config)
    assert [row["step"] for row in result.updates] == [8.0, 16.0]
    assert all(np.isfinite(row["policy_loss"]) for row in result.updates)


def test_the_first_ratio_is_one_with_a_model_that_has_dropout(tiny, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = tiny[1]
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=32, n_layer=1, n_head=2, resid_pdrop=0.1,
                        embd_pdrop=0.1, attn_pdrop=0.1, bos_token_id=tokenizer.bos_token_id,
                        eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    GPT2LMHeadModel(config).save_pretrained(tmp_path)  # a Hugging Face folder with dropout 0.1 everywhere
    tokenizer.save_pretrained(tmp_path)
    config = ActionPPOConfig(env_id="AlignTest/OneStepChoice-v0", model=str(tmp_path), steps=16, rollout_steps=16,
                             minibatch=16, epochs=1, lr=1e-3, target_kl=None, seed=0)
    policy = make_action_policy(config)
    assert any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in policy.model.modules())
    row = train_action_ppo(config, policy=policy).updates[0]
    # one gradient step on the whole rollout: the ratio is computed before it, so it is 1 everywhere
    assert row["approx_kl"] < 1e-9 and row["clip_fraction"] == 0.0, row
