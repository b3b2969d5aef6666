"""WebShop: solvable for every seed with WebShop's score, a parser that never raises, isolated instances."""

import copy

import gymnasium as gym
import numpy as np
import pytest

import align_gym  # noqa: F401
from align_gym.envs.text.core import CHARSET
from align_gym.envs.web.catalogue import Goal, get_catalogue, score
from align_gym.envs.web.webshop import scripted_shopper


def make(seed=0, **kwargs):
    env = gym.make("Align/WebShop-v0", **kwargs)
    obs, info = env.reset(seed=seed)
    return env, obs, info


def test_the_catalogue_is_large_seeded_and_shared():
    catalogue = get_catalogue(0, 1000)
    assert len(catalogue.products) == 1000 and len({p.id for p in catalogue.products}) == 1000
    assert get_catalogue(0, 1000) is catalogue  # built once per process, read-only
    again = type(catalogue)(0, 1000)
    assert [p.title for p in again.products] == [p.title for p in catalogue.products]
    assert [p.title for p in type(catalogue)(1, 1000).products] != [p.title for p in catalogue.products]
    assert all(p.attributes and p.options and p.price > 0 for p in catalogue.products)


def test_the_scripted_shopper_scores_full_reward_on_seeds_0_to_99():
    for seed in range(100):
        env, _, _ = make(seed)
        actions = scripted_shopper(env.unwrapped)
        assert actions[0] == f"search[{env.unwrapped.goal.query}]"
        replay, _, info = make(seed)  # through the wrapped env, from the actions alone
        for action in actions:
            _, reward, terminated, truncated, info = replay.step(action)
        assert terminated and info["success"] and reward == pytest.approx(1.0), seed
        assert sum(info["reward_parts"].values()) == pytest.approx(reward)


def test_webshop_score_follows_the_paper():
    catalogue = get_catalogue(0, 1000)
    product = next(p for p in catalogue.products if p.type == "t-shirt" and len(p.attributes) >= 2)
    color = product.option_values("color")[0]
    goal = Goal(type="t-shirt", category="clothing", attributes=product.attributes[:2], options=(("color", color),),
                price_bound=product.price + 1, query="", text="")
    assert sum(score(goal, product, {"color": color}).values()) == pytest.approx(1.0)
    # one of four parts missing: the wrong colour chosen
    assert sum(score(goal, product, {}).values()) == pytest.approx(3 / 4)
    # too expensive: the price part is lost
    cheap = Goal(**{**goal.__dict__, "price_bound": product.price - 1})
    assert score(cheap, product, {"color": color})["price"] == 0.0
    # another type of the same category: everything halves (r_type = 0.5)
    hoodie = next(p for p in catalogue.products if p.type == "hoodie")
    parts = score(goal, hoodie, {})
    assert sum(parts.values()) <= 0.5 and score(Goal(**{**goal.__dict__, "type": "mug", "category": "kitchen"}),
                                                  product, {"color": color})["options"] == 0.0


def test_valid_actions_all_work_and_change_something():
    env, _, info = make(3)
    rng = np.random.default_rng(0)
    for _ in range(300):
        for action in info["valid_actions"]:
            probe = copy.deepcopy(env.unwrapped)
            _, _, terminated, _, probe_info = probe.step(action)
            assert probe_info["action_valid"], action
            assert terminated or probe_info["state_hash"] != info["state_hash"], action
        action = info["valid_actions"][int(rng.integers(len(info["valid_actions"])))]
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            _, info = env.reset()


def test_ten_thousand_random_strings_never_raise_nor_change_the_state():
    env, _, info = make(1)
    rng = np.random.default_rng(0)
    chars = np.array(list(CHARSET))
    words = ["search", "click", "type", "select", "[", "]", "next >", "buy now", "back to search", "b0001", "red", ""]
    for i in range(10_000):
        if i % 2:
            command = "".join(rng.choice(chars, size=int(rng.integers(0, 40))))
        else:
            command = f"{rng.choice(words)}[{' '.join(rng.choice(words, size=int(rng.integers(0, 4))))}]"
        before = info["state_hash"]
        _, reward, terminated, truncated, info = env.step(command)
        if not info["action_valid"]:
            assert info["state_hash"] == before and reward == 0.0 and info["invalid_action"]
        if terminated or truncated:
            _, info = env.reset()


def test_two_instances_never_see_each_others_state():
    alone = {}
    for seed in (5, 6):
        env, _, _ = make(seed)
        alone[seed] = [env.step(a)[0] for a in scripted_shopper(copy.deepcopy(env.unwrapped))]
    a, _, _ = make(5)
    b, _, _ = make(6)
    plans = {5: scripted_shopper(copy.deepcopy(a.unwrapped)), 6: scripted_shopper(copy.deepcopy(b.unwrapped))}
    seen = {5: [], 6: []}
    for step in range(max(map(len, plans.values()))):  # interleaved, one step each
        for seed, env in ((5, a), (6, b)):
            if step < len(plans[seed]):
                seen[seed].append(env.step(plans[seed][step])[0])
    assert seen == alone


def test_html_observations_carry_the_same_page():
    env, obs, info = make(0, observation="html")
    assert obs.startswith("<h1>WebShop</h1>") and "<form>" in obs
    obs, *_ = env.step(info["valid_actions"][0])
    assert "<a href" in obs and "Next &gt;" in obs


def test_reference_potential_rises_along_the_shoppers_path():
    env, _, info = make(2)
    potential = env.unwrapped.potentials["reference"]
    values = [potential(info["state"])]
    for action in scripted_shopper(copy.deepcopy(env.unwrapped))[:-1]:
        *_, info = env.step(action)
        values.append(potential(info["state"]))
    assert values == sorted(values) and values[-1] == pytest.approx(0.9)


@pytest.mark.parametrize("env_id", ["Align/WebShop-v0", "Align/WebForm-v0"])
def test_the_choice_view_has_a_slot_for_every_valid_action(env_id):
    from align_gym.registration import ENV_TABLE

    slots = ENV_TABLE[env_id.replace("-v0", "-Choice-v0")][1]["slots"]
    env = gym.make(env_id)
    _, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(5000):
        assert len(info["valid_actions"]) <= slots
        _, _, terminated, truncated, info = env.step(info["valid_actions"][int(rng.integers(len(info["valid_actions"])))])
        if terminated or truncated:
            _, info = env.reset()
