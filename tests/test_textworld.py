"""The TextWorld adapter: games from TextWorld's generator played through the text-task contract."""

import json
import sys

import gymnasium as gym
import numpy as np
import pytest

import align_gym  # noqa: F401
from align_gym.envs.text.core import CHARSET
from align_gym.envs.text.textworld import TextWorldEnv


@pytest.fixture(scope="module")
def env():
    env = gym.make("Align/TextWorld-v0").unwrapped
    yield env
    env.close()


def test_the_walkthrough_solver_wins_every_game_for_seeds_0_to_19(env):
    games = set()
    for seed in range(20):
        _, info = env.reset(seed=seed)
        games.add(env.seed_of_game)
        for _ in range(env.max_steps):
            command = env.walkthrough()[0]
            assert command in info["valid_actions"]
            _, reward, terminated, _, info = env.step(command)
            if terminated:
                break
        assert (reward, terminated, info["success"]) == (1.0, True, True), seed
        assert info["caption"].endswith("*** The End ***")
    assert len(games) > 5


def test_a_thousand_random_strings_and_json_never_raise_nor_change_the_game(env):
    _, info = env.reset(seed=0)
    rng = np.random.default_rng(0)
    chars = np.array(list(CHARSET))
    for i in range(1000):
        if i % 3 == 0:
            command = "".join(rng.choice(chars, size=int(rng.integers(0, 30))))
        elif i % 3 == 1:
            command = " ".join(rng.choice(["take", "open", "go", "east", "key", "box", "the", "unlock", "with"], size=3))
        else:
            command = json.dumps({"name": "go", "arguments": {"direction": str(rng.choice(["east", None, 3]))}})
        before = info["state_hash"]
        _, reward, terminated, truncated, info = env.step(command)
        if not info["action_valid"]:
            assert info["state_hash"] == before and reward == 0.0 and info["invalid_action"]
        if terminated or truncated:
            _, info = env.reset(seed=0)


def test_commands_that_change_nothing_are_allowed_but_not_listed(env):
    _, info = env.reset(seed=1)
    assert not any(c.startswith(("look", "inventory", "examine")) for c in info["valid_actions"])
    before = info["state_hash"]
    *_, info = env.step("LOOK")
    assert info["action_valid"] and info["state_hash"] == before


def test_missing_extra_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "textworld", None)
    with pytest.raises(ImportError, match=r"align-gym\[textworld\]"):
        TextWorldEnv()
