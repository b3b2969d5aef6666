"""The shaping spec language and registry."""

import subprocess
import sys

import gymnasium as gym
import pytest

import align_gym  # noqa: F401
from align_gym.wrappers import (
    ShapingSpec,
    format_spec,
    is_invariant,
    make_modules,
    parse_spec,
    register_shaping,
    shape_env,
    shaping_layers,
    split_specs,
)


def test_split_keeps_commas_inside_brackets_and_quotes():
    text = ('none, pbrs(potential=reference, scale=2),pbrs(potential=distance),'
            'x(prompt="pick up, then open", coefs=[0.1, 0.2]),y(note=\'a, b\')+z')
    assert split_specs(text) == ["none", "pbrs(potential=reference, scale=2)", "pbrs(potential=distance)",
                                 'x(prompt="pick up, then open", coefs=[0.1, 0.2])', "y(note='a, b')+z"]
    assert split_specs("Align/KeyDoor-5x5-v0, Align/PointMaze-v0") == ["Align/KeyDoor-5x5-v0", "Align/PointMaze-v0"]


def test_parse_types_values():
    [spec] = parse_spec("pbrs(potential=reference, scale=0.5, name='p2', flag=true, n=3, off=False, neg=-2)")
    assert spec.name == "pbrs"
    assert spec.kwargs == {"potential": "reference", "scale": 0.5, "name": "p2", "flag": True, "n": 3,
                           "off": False, "neg": -2}
    assert parse_spec(str(spec)) == [spec]


def test_quoted_strings_with_commas_lists_and_dicts_are_values():
    [spec] = parse_spec('x(prompt="pick up, then open", coefs=[0.1, 0.2], words=[key, door], table={"a": 1})')
    assert spec.kwargs == {"prompt": "pick up, then open", "coefs": [0.1, 0.2], "words": ["key", "door"],
                           "table": {"a": 1}}
    assert parse_spec(format_spec([spec])) == [spec]


def test_layers_compose_with_plus_innermost_first():
    layers = parse_spec("pbrs(potential=reference) + pbrs(potential=distance, name=d, scale=0.5)+none")
    assert [layer.name for layer in layers] == ["pbrs", "pbrs", "none"]
    assert layers[1].kwargs == {"potential": "distance", "name": "d", "scale": 0.5}
    assert parse_spec(format_spec(layers)) == layers


@pytest.mark.parametrize("bad,message", [
    ("pbrs(potential=reference", "never closed|malformed"), ("pbrs(reference)", "key=value"),
    ("2pbrs", "malformed"), ("pbsr", "did you mean 'pbrs'"), ("pbrs(potential=reference)+pbsr", "did you mean 'pbrs'"),
    ("pbrs(potential=reference)*2", "not name or name"),
])
def test_malformed_or_unknown_specs_say_what_is_wrong(bad, message):
    with pytest.raises(ValueError, match=message):
        make_modules(bad, gym.make("Align/KeyDoor-5x5-v0"), gamma=0.99)


def test_bad_arguments_name_the_spec():
    with pytest.raises(ValueError, match="bad arguments for shaping pbrs"):
        make_modules("pbrs(potential=reference, colour=red)", gym.make("Align/KeyDoor-5x5-v0"), gamma=0.99)


def test_two_layers_with_one_name_are_refused_when_built():
    with pytest.raises(ValueError, match="all named 'pbrs'"):
        make_modules("pbrs(potential=reference)+pbrs(potential=distance)", gym.make("Align/KeyDoor-5x5-v0"), gamma=0.99)


def test_spec_builds_the_wrapper_on_an_align_env():
    env = shape_env(gym.make("Align/KeyDoor-5x5-v0"), "pbrs(potential=distance, scale=2)", gamma=0.9)
    env.reset(seed=0)
    _, reward, *_, info = env.step(0)
    assert reward == pytest.approx(info["env_reward"] + info["reward_terms"]["pbrs"])
    assert is_invariant("pbrs(potential=distance)") and is_invariant("none")


def test_a_composed_spec_builds_a_stack_and_is_invariant_only_if_every_layer_is():
    env = shape_env(gym.make("Align/KeyDoor-5x5-v0"), "pbrs(potential=reference)+pbrs(potential=distance, name=d)",
                    gamma=0.9)
    assert [layer.module.name for layer in shaping_layers(env)] == ["pbrs", "d"]
    env.reset(seed=0)
    _, reward, *_, info = env.step(0)
    assert set(info["reward_terms"]) == {"pbrs", "d"}
    assert is_invariant("pbrs(potential=reference)+pbrs(potential=distance, name=d)")
    if "bonus_for_registry_test" not in {e.name for e in align_gym.wrappers.shaping_entries()}:
        register_shaping("bonus_for_registry_test", lambda env, gamma: None, invariant=False, summary="test")
    assert not is_invariant("pbrs(potential=reference)+bonus_for_registry_test")


def test_specs_may_hold_python_objects():
    spec = [ShapingSpec("pbrs", {"potential": lambda obs: float(obs[0])})]
    env = shape_env(gym.make("CartPole-v1"), spec, gamma=0.9)
    env.reset(seed=0)
    assert "pbrs" in env.step(0)[-1]["reward_terms"]


def test_wrappers_and_shaping_names_import_neither_torch_nor_sb3():
    code = ("import sys, align_gym, align_gym.wrappers as w; from align_gym.wrappers import PotentialShaping; "
            "names = [e.name for e in w.shaping_entries()]; "
            "assert w.is_invariant('pbrs(potential=reference)') and {'pbrs', 'none'} <= set(names); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'stable_baselines3'})); "
            "w.ShapingVecEnvWrapper; print('stable_baselines3' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]"
    assert out[1] == "True"  # the SB3 adapter loads when asked for
    listing = subprocess.run(["align-gym", "list", "--shaping"], capture_output=True, text=True, check=True).stdout
    assert "pbrs" in listing and "[invariant]" in listing
