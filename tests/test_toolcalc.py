"""ToolCalc: solvable for every seed, a calculator that evaluates arithmetic and nothing else,
strict and total call parsing."""

import json

import gymnasium as gym
import numpy as np
import pytest

import align_gym  # noqa: F401
from align_gym.envs.text.core import CHARSET, solve
from align_gym.envs.tools.calls import CallError, format_call, parse_call
from align_gym.envs.tools.toolcalc import TOOLS, calculate


def make(seed=0):
    env = gym.make("Align/ToolCalc-v0").unwrapped
    obs, info = env.reset(seed=seed)
    return env, obs, info


def test_the_search_solver_answers_every_problem_for_seeds_0_to_99():
    for seed in range(100):
        env, _, info = make(seed)
        commands = solve(env)
        assert commands and len(commands) == info["state"]["plan_steps"] + 1, seed
        for command in commands:
            assert command in info["valid_actions"] and command == info["state"]["reference_call"]
            _, reward, terminated, _, info = env.step(command)
        assert (reward, terminated, info["success"], info["reward_parts"]) == (1.0, True, True, {"answer": 1.0})


def test_a_wrong_answer_ends_the_episode_with_nothing():
    env, _, _ = make(1)
    obs, reward, terminated, _, info = env.step('```json\n{"name": "answer", "arguments": {"value": "-1"}}\n```')
    assert (reward, terminated, info["success"], info["reward_parts"]) == (0.0, True, False, {"answer": 0.0})
    assert "wrong (the answer was" in obs and info["caption"] == "You answer wrongly."  # captions carry no numbers


@pytest.mark.parametrize("expression", ["__import__('os')", "(1).real", "2 ** 99", "[1, 2]", "x + 1", "1 / 0",
                                        "9" * 13 + " * 10", "True + 1", "'a' * 3", "lambda: 1"])
def test_the_calculator_refuses_anything_but_arithmetic(expression):
    with pytest.raises(CallError):
        calculate(expression)
    env, _, info = make(2)
    *_, after = env.step(format_call("calculator", {"expression": expression}))
    assert not after["action_valid"] and after["state_hash"] == info["state_hash"]


def test_calls_are_parsed_strictly_with_messages():
    assert calculate("-(2 + 4) * 3 / 4") == -4.5
    assert parse_call('{"name": "answer", "arguments": {"value": 3}} and more', TOOLS) == ("answer", {"value": 3})
    for command, message in [("answer 3", "Not a tool call"), ('{"name": "answer", "arguments": {', "Malformed JSON"),
                             ('{"name": "search", "arguments": {}}', "Unknown tool 'search'"),
                             ('{"name": "answer", "arguments": {"v": 3}}', "answer takes value; got v"),
                             ('{"name": "answer", "arguments": [3]}', "must be an object"), ("[1]", "Not a tool call")]:
        with pytest.raises(CallError, match=message):
            parse_call(command, TOOLS)


def test_ten_thousand_random_strings_and_calls_never_raise_nor_change_the_state_when_refused():
    env, _, info = make(3)
    rng = np.random.default_rng(0)
    chars = np.array(list(CHARSET))
    pieces = ["1", "2.5", "+", "-", "*", "/", "(", ")", "x", "**", "1e400", " "]
    for i in range(10_000):
        kind = i % 3
        if kind == 0:
            command = "".join(rng.choice(chars, size=int(rng.integers(0, 60))))
        elif kind == 1:
            command = format_call("calculator", {"expression": "".join(rng.choice(pieces, size=int(rng.integers(0, 8))))})
        else:
            value = [None, "abc", [1], {"a": 1}, True, float(rng.normal()), "1e999"][i % 7]
            command = json.dumps({"name": str(rng.choice(["answer", "calculator", "x"])), "arguments": {"value": value}})
        before = info["state_hash"]
        _, reward, terminated, truncated, info = env.step(command)
        if not info["action_valid"]:
            assert info["state_hash"] == before and reward == 0.0 and info["invalid_action"]
        if terminated or truncated:
            _, info = env.reset()
