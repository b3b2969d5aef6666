"""ToolCalc: solvable for every seed, a calculator that evaluates arithmetic and nothing else,
strict and total call parsing, a menu of calls that each change something."""

import copy
import json
import time

import gymnasium as gym
import numpy as np
import pytest

import align_gym  # noqa: F401
from align_gym.envs.text.core import CHARSET, solve, state_hash
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
                             ('{"name": "answer", "arguments": {"v": 3}}', "answer takes value; got 'v'"),
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


HOSTILE_EXPRESSIONS = ["9 ** 9 ** 9", "10 ** 10 ** 10", "(" * 99 + "1" + ")" * 99, "(" * 150 + "1" + ")" * 150,
                       "-" * 199 + "1", "9" * 199, "9" * 5000, "1e999 - 1e999", "1e308 * 1e308", "1 / 1e-300",
                       "1\x00", "1 + 1 # \u043a\u043b\u044e\u0447", "\udcff", "1\n+\t2", "\u0661 + 1", "1_000 * 1_000_000"]


@pytest.mark.parametrize("expression", HOSTILE_EXPRESSIONS, ids=range(len(HOSTILE_EXPRESSIONS)))
def test_the_calculator_answers_hostile_expressions_at_once_with_a_number_or_a_refusal(expression):
    start = time.monotonic()
    try:
        assert isinstance(calculate(expression), float)
    except CallError as error:
        assert set(str(error)) <= set(CHARSET) and len(str(error)) < 200
    assert time.monotonic() - start < 0.1
    env, _, info = make(4)
    obs, _, _, _, after = env.step(format_call("calculator", {"expression": expression}))
    assert env.observation_space.contains(obs)
    if after["action_valid"]:
        echo = obs.splitlines()[1]  # the expression as read, on one line, and nothing but arithmetic
        assert echo.startswith("calculator: ") and set(echo) <= set("calculator: 0123456789.eE_+-*/()=")
    else:
        assert after["state_hash"] == info["state_hash"] and env.observation_space.contains(after["invalid_action"])


@pytest.mark.parametrize("value", ["1" * 400, "9" * 5000, "[" * 10_000], ids=["400 digits", "5000 digits", "10000 deep"])
def test_answers_past_a_floats_range_or_past_any_parser_are_invalid_actions_with_messages(value):
    env, _, info = make(5)
    command = '{"name": "answer", "arguments": {"value": ' + value + "}}"
    obs, reward, terminated, _, after = env.step(command)
    assert not after["action_valid"] and not terminated and reward == 0.0
    assert after["state_hash"] == info["state_hash"] and after["invalid_action"] in obs
    assert env.observation_space.contains(obs)


def test_every_listed_call_changes_the_state_or_ends_the_episode_over_300_random_states():
    """The menu is exactly the calls that change something: a calculator call whose result is
    already known (a distractor made before) changes nothing, so it is not listed."""
    env = gym.make("Align/ToolCalc-v0").unwrapped
    rng = np.random.default_rng(0)
    states = unchanged = seed = 0
    while states < 300:
        _, info = env.reset(seed=seed)
        seed += 1
        ended = False
        while not ended:
            states += 1
            for action in info["valid_actions"]:
                child = copy.deepcopy(env)
                _, _, terminated, truncated, after = child.step(action)
                assert after["action_valid"]
                unchanged += not (terminated or truncated or after["state_hash"] != state_hash(env.state_dict()))
            action = info["valid_actions"][int(rng.integers(len(info["valid_actions"])))]
            _, _, terminated, truncated, info = env.step(action)
            ended = terminated or truncated
    assert unchanged == 0, f"{unchanged} listed calls changed nothing"
