"""TextQuest: solvable for every seed, the text-task contract held exactly, a parser that never raises."""

import copy
import json

import gymnasium as gym
import numpy as np
import pytest

import align_gym  # noqa: F401
from align_gym.envs.text.core import CHARSET, solve
from align_gym.envs.text.textquest import command_vocabulary

LEVELS = ("easy", "medium", "hard")


def make(level, seed=0):
    env = gym.make(f"Align/TextQuest-{level}-v0").unwrapped
    obs, info = env.reset(seed=seed)
    return env, obs, info


@pytest.mark.parametrize("level", LEVELS)
def test_the_search_solver_completes_every_quest_for_seeds_0_to_99(level):
    for seed in range(100):
        env, _, _ = make(level, seed)
        commands = solve(env, explore=lambda c: not c.startswith("drop "))
        assert commands, f"no solution for {level} seed {seed}"
        env, _, info = make(level, seed)  # replayed on a fresh copy, through valid_actions only
        for command in commands:
            assert command in info["valid_actions"]
            _, reward, terminated, truncated, info = env.step(command)
        assert (reward, terminated, info["success"]) == (1.0, True, True)
        assert len(commands) <= env.max_steps


@pytest.mark.parametrize("level", LEVELS)
def test_valid_actions_are_exactly_the_commands_that_change_something(level):
    env, _, info = make(level, seed=5)
    rng = np.random.default_rng(0)
    for _ in range(30):
        for command in command_vocabulary():
            probe = copy.deepcopy(env)
            _, reward, terminated, _, after = probe.step(command)
            changed = after["state_hash"] != info["state_hash"] or terminated
            assert changed == (command in info["valid_actions"]) == after["action_valid"], command
            if not after["action_valid"]:
                assert reward == 0.0 and after["invalid_action"]
        _, _, terminated, truncated, info = env.step(str(rng.choice(info["valid_actions"])))
        if terminated or truncated:
            _, info = env.reset()


@pytest.mark.parametrize("level", LEVELS)
def test_ten_thousand_random_strings_and_json_never_raise_nor_change_the_state(level):
    env, _, info = make(level, seed=1)
    rng = np.random.default_rng(level.__len__())
    chars = np.array(list(CHARSET))
    words = ["go", "take", "drop", "open", "unlock", "with", "door", "key", "north", "the", "chest", "n", ""]
    for i in range(10_000):
        kind = i % 3
        if kind == 0:
            command = "".join(rng.choice(chars, size=int(rng.integers(0, 40))))
        elif kind == 1:
            command = json.dumps({"tool": str(rng.choice(words)), "arguments": [int(rng.integers(9)), None]})
        else:  # near-commands: real words in random order
            command = " ".join(rng.choice(words, size=int(rng.integers(1, 6))))
        before = info["state_hash"]
        _, reward, terminated, truncated, info = env.step(command)
        assert isinstance(info["action_valid"], bool)
        if not info["action_valid"]:
            assert info["state_hash"] == before and reward == 0.0 and info["invalid_action"]
        if terminated or truncated:
            _, info = env.reset()


def test_the_parser_takes_aliases_and_explains_refusals():
    env, obs, info = make("hard", seed=0)
    assert obs.splitlines()[0] == "Quest: bring the jade statue to the garden."
    start = info["state_hash"]
    _, _, _, _, info = env.step("N")
    assert info["action_valid"] and info["caption"] == "You go north. You are in the workshop."
    _, _, _, _, info = env.step("walk south.")
    assert info["state_hash"] == start  # the same situation again hashes the same
    _, _, _, _, info = env.step("dance wildly")
    assert info["invalid_action"].startswith("I don't understand 'dance wildly'")
    assert info["caption"] == ""  # nothing changed: no event (the parser's message is the refusal)
    assert info["surroundings"] == "You are in the armoury."
    _, _, _, _, info = env.step("open door")
    assert "unlock <direction> door with <key>" in info["invalid_action"]
    env.step("s")
    _, _, _, _, info = env.step("open the chest")  # the wooden chest, by its last word
    assert info["caption"] == "You open the wooden chest. Inside: a copper key."  # the event alone
    assert info["surroundings"] == "You are in the library. You see a copper key."
    _, _, _, _, info = env.step("pick up key")
    assert info["state"]["carrying"] == "copper key" and info["caption"] == "You take the copper key."
    assert info["task"] == "bring the jade statue to the garden" == env.unwrapped.task


def test_progress_potential_rises_along_a_solution():
    env, _, info = make("medium", seed=3)
    reference = env.potentials["reference"]
    values = [reference(info["state"])]
    for command in solve(env, explore=lambda c: not c.startswith("drop ")):
        *_, info = env.step(command)
        values.append(reference(info["state"]))
    assert values[-1] == 1.0 and values[0] < 0.5 and np.all(np.diff(values) >= 0)


def test_the_quests_last_action_still_pays_under_potential_based_shaping():
    from align_gym.wrappers.registry import shape_env

    env = shape_env(gym.make("Align/TextQuest-easy-v0"), "pbrs(potential=reference)", gamma=0.99)
    _, info = env.reset(seed=3)
    for command in solve(env.unwrapped, explore=lambda c: not c.startswith("drop ")):
        *_, info = env.step(command)
    # arriving earns half the subgoal's potential, taking the treasure the other half
    assert info["success"] and info["reward_terms"]["pbrs"] == pytest.approx(-0.5)
