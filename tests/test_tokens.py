"""Token-level credit: what each placement keeps, PURE's min-form values, and the export shapes."""

import doctest
import subprocess
import sys

import numpy as np
import pytest
import torch

from align_gym.wrappers import tokens
from align_gym.wrappers.tokens import (
    PLACEMENTS,
    discounted,
    last_token,
    min_form_advantages,
    min_form_values,
    per_token_tensor,
    per_turn_list,
    place,
    response_end_pairs,
    uniform,
    value_shaping,
)

# (reward, n_tokens, gamma): random turns, long and short, every gamma below 1
CASES = [
    (float(r), int(n), float(g))
    for r, n, g in zip(
        np.random.default_rng(0).normal(0.0, 3.0, 12),
        np.random.default_rng(1).integers(2, 60, 12),
        np.random.default_rng(2).uniform(0.8, 0.999, 12),
    )
]


def discounted_return(rewards, gamma, start=0):
    """sum_k gamma^k r_{start+k}: the return seen from token ``start``."""
    tail = np.asarray(rewards, dtype=float)[start:]
    return float(np.sum(gamma ** np.arange(len(tail)) * tail))


@pytest.mark.parametrize("reward, n, gamma", CASES)
def test_last_token_keeps_the_sum_and_the_undiscounted_return_from_every_token(reward, n, gamma):
    placed = last_token(reward, n)
    assert placed.shape == (n,) and placed.sum() == pytest.approx(reward)
    for k in range(n):
        assert discounted_return(placed, 1.0, start=k) == pytest.approx(reward)
    # not the discounted return: the reward fades over the turn
    assert discounted_return(placed, gamma) == pytest.approx(gamma ** (n - 1) * reward)
    assert discounted_return(placed, gamma) != pytest.approx(reward)


@pytest.mark.parametrize("reward, n, gamma", CASES)
def test_uniform_keeps_the_sum_but_not_the_return_from_later_tokens(reward, n, gamma):
    placed = uniform(reward, n)
    assert placed.sum() == pytest.approx(reward)
    assert np.allclose(placed, reward / n)
    assert discounted_return(placed, 1.0, start=n - 1) == pytest.approx(reward / n)
    assert discounted_return(placed, gamma) != pytest.approx(reward)


@pytest.mark.parametrize("reward, n, gamma", CASES)
def test_discounted_keeps_the_discounted_return_from_the_first_token_not_the_sum(reward, n, gamma):
    placed = discounted(reward, n, gamma=gamma)
    assert discounted_return(placed, gamma) == pytest.approx(reward)
    # each token carries an equal share of that return
    assert np.allclose(gamma ** np.arange(n) * placed, reward / n)
    assert placed.sum() != pytest.approx(reward)
    assert abs(placed.sum()) > abs(reward)


def test_discounted_is_uniform_when_gamma_is_one():
    assert np.allclose(discounted(2.5, 7, gamma=1.0), uniform(2.5, 7))


@pytest.mark.parametrize("reward, n, gamma", CASES)
def test_value_shaping_return_is_the_last_token_return_minus_the_first_value(reward, n, gamma):
    values = np.random.default_rng(n).normal(size=n)
    placed = value_shaping(reward, n, values=values, gamma=gamma)
    baseline = discounted_return(last_token(reward, n), gamma)
    assert discounted_return(placed, gamma) == pytest.approx(baseline - values[0])
    assert placed.sum() != pytest.approx(reward)
    # mid-episode: the value after the turn enters, discounted over the turn
    placed = value_shaping(reward, n, values=values, gamma=gamma, next_value=1.5)
    assert discounted_return(placed, gamma) == pytest.approx(baseline - values[0] + gamma**n * 1.5)


def test_value_shaping_with_zero_values_is_last_token():
    assert np.array_equal(value_shaping(3.0, 4, values=np.zeros(4), gamma=0.9), last_token(3.0, 4))


@pytest.mark.parametrize("name", sorted(PLACEMENTS))
def test_place_calls_the_named_placement(name):
    kwargs = {"discounted": {"gamma": 0.9}, "value_shaping": {"gamma": 0.9, "values": [0.1, 0.2, 0.3]}}
    expected = PLACEMENTS[name](1.5, 3, **kwargs.get(name, {}))
    assert np.array_equal(place(name, 1.5, 3, **kwargs.get(name, {})), expected)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: place("lastt_token", 1.0, 3), "did you mean 'last_token'"),
        (lambda: place("nonsense", 1.0, 3), "choices: last_token, uniform, discounted, value_shaping"),
        (lambda: place("uniform", 1.0, 0), "at least one completion token"),
        (lambda: place("last_token", 1.0, 2.5), "at least one completion token"),
        (lambda: place("uniform", float("nan"), 3), "finite"),
        (lambda: place("value_shaping", 1.0, 3, values=[0.1, 0.2], gamma=1.0), "one value per completion token: 3"),
        (lambda: place("discounted", 1.0, 3), "missing a required argument: 'gamma'"),
        (lambda: place("uniform", 1.0, 3, gamma=0.9), "its keyword arguments: none"),
        (lambda: place("discounted", 1.0, 3, gamma=1.5), "gamma must be"),
        (lambda: place("discounted", 1.0, 3, gamma=0.0), "gamma must be"),
    ],
)
def test_bad_placements_raise_a_useful_value_error(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_min_form_values_match_a_hand_computed_case():
    assert min_form_values([0.9, 0.2, 0.7, 0.5]).tolist() == [0.2, 0.2, 0.5, 0.5]
    assert min_form_values([3.0]).tolist() == [3.0]
    assert min_form_values([1.0, 2.0, 3.0]).tolist() == [1.0, 2.0, 3.0]


def test_min_form_values_keep_no_sum():
    rewards = np.random.default_rng(3).uniform(size=8)
    values = min_form_values(rewards)
    assert np.all(values <= rewards) and values.sum() < rewards.sum()


def test_min_form_advantages_subtract_the_group_mean_return_or_the_given_baseline():
    group = [[0.9, 0.2, 0.7, 0.5], [0.8, 0.6]]  # returns V_0: 0.2 and 0.6, mean 0.4
    first, second = min_form_advantages(group)
    assert first == pytest.approx([-0.2, -0.2, 0.1, 0.1])
    assert second == pytest.approx([0.2, 0.2])
    single = min_form_advantages([0.9, 0.2, 0.7, 0.5], baseline=0.25)
    assert isinstance(single, np.ndarray) and single == pytest.approx([-0.05, -0.05, 0.25, 0.25])


@pytest.mark.parametrize("bad", [[], [[]], [[0.1, 0.2], []], np.zeros((2, 2, 2))])
def test_min_form_rejects_empty_or_misshapen_rewards(bad):
    with pytest.raises(ValueError, match="step_rewards"):
        min_form_advantages(bad)


# A hand-made two-turn episode: P P P C C | P C C C
TURN_REWARDS, COMPLETIONS, PROMPTS = [0.5, -2.0], [2, 3], [3, 1]


def test_response_end_pairs_point_at_each_turns_last_completion_token():
    assert response_end_pairs(TURN_REWARDS, COMPLETIONS, PROMPTS) == [(0.5, 4), (-2.0, 8)]
    assert response_end_pairs(TURN_REWARDS, COMPLETIONS) == [(0.5, 1), (-2.0, 4)]
    dense = per_token_tensor(TURN_REWARDS, COMPLETIONS, prompt_lengths=PROMPTS)
    for reward, index in response_end_pairs(TURN_REWARDS, COMPLETIONS, PROMPTS):
        assert dense[index].item() == reward
    assert per_turn_list(TURN_REWARDS) == [0.5, -2.0]


@pytest.mark.parametrize("placement, kwargs", [("last_token", {}), ("uniform", {})])
def test_per_token_tensor_sums_to_the_per_turn_list_for_sum_keeping_placements(placement, kwargs):
    dense = per_token_tensor(TURN_REWARDS, COMPLETIONS, placement, PROMPTS, **kwargs)
    assert dense.dtype == torch.float32 and dense.shape == (sum(COMPLETIONS) + sum(PROMPTS),)
    spans = [(3, 5), (6, 9)]
    sums = [dense[start:end].sum().item() for start, end in spans]
    assert sums == pytest.approx(per_turn_list(TURN_REWARDS))
    prompt_positions = [0, 1, 2, 5]
    assert torch.all(dense[prompt_positions] == 0)


def test_per_token_tensor_discounted_keeps_each_turns_discounted_return():
    dense = per_token_tensor(TURN_REWARDS, COMPLETIONS, "discounted", PROMPTS, gamma=0.9).double().numpy()
    assert discounted_return(dense[3:5], 0.9) == pytest.approx(0.5, rel=1e-6)
    assert discounted_return(dense[6:9], 0.9) == pytest.approx(-2.0, rel=1e-6)


def test_per_token_tensor_value_shaping_chains_over_the_completion_tokens():
    gamma = 0.95
    values = np.random.default_rng(4).normal(size=sum(COMPLETIONS) + sum(PROMPTS))
    completion = [3, 4, 6, 7, 8]  # positions of the completion tokens, in order
    shaped = per_token_tensor(TURN_REWARDS, COMPLETIONS, "value_shaping", PROMPTS, values=values, gamma=gamma)
    plain = per_token_tensor(TURN_REWARDS, COMPLETIONS, "last_token", PROMPTS)
    shaped_return = discounted_return(shaped.double().numpy()[completion], gamma)
    plain_return = discounted_return(plain.double().numpy()[completion], gamma)
    assert shaped_return == pytest.approx(plain_return - values[3], rel=1e-5)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: response_end_pairs([1.0, 2.0], [3]), "got 2 rewards, 1 completion lengths and 1 prompt lengths"),
        (lambda: response_end_pairs([1.0], [3], [1, 2]), "got 1 rewards, 1 completion lengths and 2 prompt lengths"),
        (lambda: per_token_tensor([1.0, 2.0], [3, 0]), "turn 1: a completion needs at least one token"),
        (lambda: per_token_tensor([1.0], [3], prompt_lengths=[-1]), "turn 0: a prompt length"),
        (lambda: per_token_tensor([1.0], [3], values=[0.0] * 3, gamma=1.0, prompt_lengths=[2]), "one entry per token of the whole sequence: 5"),
        (lambda: per_token_tensor([1.0], [3], "uniformm"), "did you mean 'uniform'"),
        (lambda: per_turn_list([[1.0, 2.0]]), "one reward per turn"),
    ],
)
def test_bad_exports_raise_a_useful_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_module_imports_without_torch():
    code = "import sys, align_gym.wrappers.tokens; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_docstring_examples_run():
    result = doctest.testmod(tokens, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
