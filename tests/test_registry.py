"""The shaping spec language and registry."""

import gymnasium as gym
import pytest

import align_gym  # noqa: F401
from align_gym.wrappers import is_invariant, make_module, parse_spec, shape_env, split_specs


def test_split_keeps_commas_inside_parentheses():
    assert split_specs("none, pbrs(potential=reference, scale=2),pbrs(potential=distance)") == [
        "none", "pbrs(potential=reference, scale=2)", "pbrs(potential=distance)"]


def test_parse_types_values():
    spec = parse_spec("pbrs(potential=reference, scale=0.5, name='p2', flag=true, n=3)")
    assert spec.name == "pbrs"
    assert spec.kwargs == {"potential": "reference", "scale": 0.5, "name": "p2", "flag": True, "n": 3}
    assert parse_spec(str(spec)) == spec


@pytest.mark.parametrize("bad,message", [
    ("pbrs(potential=reference", "unbalanced|missing"), ("pbrs(reference)", "key=value"),
    ("2pbrs", "malformed"), ("pbsr", "did you mean 'pbrs'"),
])
def test_malformed_or_unknown_specs_say_what_is_wrong(bad, message):
    with pytest.raises(ValueError, match=message):
        make_module(bad, gym.make("Align/KeyDoor-5x5-v0"), gamma=0.99)


def test_bad_arguments_name_the_spec():
    with pytest.raises(ValueError, match="bad arguments for shaping pbrs"):
        make_module("pbrs(potential=reference, colour=red)", gym.make("Align/KeyDoor-5x5-v0"), gamma=0.99)


def test_spec_builds_the_wrapper_on_an_align_env():
    env = shape_env(gym.make("Align/KeyDoor-5x5-v0"), "pbrs(potential=distance, scale=2)", gamma=0.9)
    env.reset(seed=0)
    _, reward, *_, info = env.step(0)
    assert reward == pytest.approx(info["env_reward"] + info["reward_terms"]["pbrs"])
    assert is_invariant("pbrs(potential=distance)") and is_invariant("none")
