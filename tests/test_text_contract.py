"""The text-task contract on every registered text, tool and web id (and their -Choice views):
``step`` never raises on any string, observations stay inside ``observation_space``, and
``valid_actions`` (and the -Choice masks) are exactly the commands that change something now."""

import copy
import json

import gymnasium as gym
import numpy as np
import pytest

import align_gym  # noqa: F401
from align_gym.envs.text.core import state_hash
from align_gym.registration import ENV_TABLE

TEXT_IDS = [env_id for env_id, (entry, _) in ENV_TABLE.items()
            if entry.split(":")[0].rsplit(".", 1)[0] in ("align_gym.envs.text", "align_gym.envs.tools", "align_gym.envs.web")]
CHOICE_IDS = [env_id for env_id, (entry, _) in ENV_TABLE.items() if entry == "align_gym.choice:ChoiceEnv"]
LONG_NUMBER = "9" * 5000


def hostile_commands(rng: np.random.Generator) -> list[str]:
    """Strings a careless or hostile player sends: non-ASCII, NUL, deep nesting, long numbers, huge
    text, as free text, as tool calls and as web actions."""
    call = lambda name, **arguments: json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)  # noqa: E731
    random_text = "".join(chr(int(c)) for c in rng.integers(0, 0x3000, size=50))
    return [
        "", "\x00", "take ключ", "go " + "x" * 1_000_000, "drop 🗝️ key\x00", random_text, "\udcff lone surrogate",
        "[" * 10_000, "{" * 10_000, '{"a": ' * 10_000, '{"name": "calculator", "arguments": ' + "[" * 10_000,
        '{"name": "answer", "arguments": {"value": ' + LONG_NUMBER + "}}",
        '{"name": "answer", "arguments": {"value": 1e999}}', '{"name": "answer", "arguments": {"value": NaN}}',
        call("calculator", expression=LONG_NUMBER + " * 2"), call("calculator", expression="9 ** 9 ** 9"),
        call("calculator", expression="(" * 5000 + "1" + ")" * 5000), call("calculator", expression="ключ\x00"),
        call("query", sql="SELECT 'ключ', char(0)"), call("query", sql="SELECT " + LONG_NUMBER),
        call("describe", table="ключ" * 1000), call("answer", value="Zoë\x00"),
        "type[city=Zoë\x00]", "type[first name=" + "é" * 10_000 + "]", "click[\x00]", "select[ü]",
        "search[ключ " + "x" * 100_000 + "]", "click[" * 10_000,
    ]


def random_walk(env, seed: int, steps: int, rng: np.random.Generator):
    """Reset ``env`` with ``seed`` and take up to ``steps`` random valid actions, yielding
    ``(prefix, info)`` at each state reached (the actions taken so far and the info there)."""
    _, info = env.reset(seed=seed)
    prefix: list = []
    for _ in range(steps):
        yield prefix, info
        if not info["valid_actions"]:
            return
        action = info["valid_actions"][int(rng.integers(len(info["valid_actions"])))]
        _, _, terminated, truncated, info = env.step(action)
        prefix = prefix + [action]
        if terminated or truncated:
            return


@pytest.mark.parametrize("env_id", TEXT_IDS)
def test_step_never_raises_and_every_observation_stays_in_the_space(env_id):
    env = gym.make(env_id)
    space = env.observation_space
    rng = np.random.default_rng(0)
    commands = hostile_commands(rng)
    obs, info = env.reset(seed=0)
    assert space.contains(obs)
    for k, command in enumerate(commands * 2):  # the second round from later states
        if k >= len(commands) and info["valid_actions"]:
            obs, *_, info = env.step(info["valid_actions"][0])
        obs, reward, terminated, truncated, info = env.step(command)
        assert space.contains(obs), (command[:40], obs[:200])
        assert isinstance(info["action_valid"], bool) and isinstance(info["caption"], str)
        assert len(info["caption"]) < 2000
        if not info["action_valid"]:
            message = info["invalid_action"]
            assert isinstance(message, str) and 0 < len(message) < 2000 and space.contains(message), message[:200]
        if terminated or truncated:
            obs, info = env.reset(seed=k)
    env.close()


def _copy_or_replay(env, env_id: str, seed: int, prefix: list):
    """An env in the same state as ``env``: a deep copy, or (for envs that hold a process or a
    connection and cannot be copied) a fresh one replaying ``prefix`` from ``seed``."""
    try:
        return copy.deepcopy(env)
    except TypeError:
        replay = gym.make(env_id).unwrapped
        replay.reset(seed=seed)
        for action in prefix:
            replay.step(action)
        return replay


def _changes(env, action) -> bool:
    before = env.state_dict()
    _, _, terminated, truncated, info = env.step(action)
    return terminated or info["state_hash"] != state_hash(before)


def page_commands(env) -> list[str]:
    """A web env's clicks and selections on its current page (none for other envs)."""
    if not hasattr(env, "page"):
        return []
    page = env.page()
    options = [p.label for p in page.parts if getattr(p, "kind", "") == "option"]
    return [f"click[{label}]" for label in page.clickables()] + [f"select[{label}]" for label in options]


@pytest.mark.parametrize("env_id", TEXT_IDS)
def test_valid_actions_are_exactly_the_commands_that_change_something(env_id):
    env = gym.make(env_id).unwrapped
    rng = np.random.default_rng(1)
    vocabulary = env.vocabulary() if hasattr(env, "vocabulary") else None
    copyable = env_id not in ("Align/ToolSQL-v0", "Align/TextWorld-v0")
    states = 0
    for seed in range(30 if copyable else 2):
        for prefix, info in random_walk(env, seed, 15 if copyable else 4, rng):
            states += 1
            for action in info["valid_actions"]:
                assert _changes(_copy_or_replay(env, env_id, seed, prefix), action), (
                    f"{action!r} is listed but changes nothing (state {prefix})")
            # where the commands are a finite set (a vocabulary; a page's clicks and selections),
            # whatever is not listed changes nothing
            finite = set(vocabulary or []) | set(page_commands(env))
            for action in finite - set(info["valid_actions"]) if copyable else ():
                assert not _changes(copy.deepcopy(env), action), f"{action!r} changes something but is not listed"
    assert states >= 6


@pytest.mark.parametrize("env_id", CHOICE_IDS)
def test_choice_masks_admit_exactly_the_actions_that_change_something(env_id):
    env = gym.make(env_id).unwrapped
    rng = np.random.default_rng(2)
    copyable = env_id not in ("Align/ToolSQL-Choice-v0", "Align/TextWorld-Choice-v0")
    obs, info = env.reset(seed=0)
    prefix: list[int] = []
    for _ in range(10 if copyable else 3):
        masks = env.action_masks()
        assert masks.sum() == min(len(info["valid_actions"]), env.action_space.n)
        candidates = np.flatnonzero(masks)
        checked = list(candidates) + list(rng.choice(np.flatnonzero(~masks), size=min(4, int((~masks).sum())), replace=False))
        for action in checked:
            other = _copy_or_replay(env, env_id, 0, prefix)
            before = state_hash(other.state_dict())
            _, _, terminated, _, after = other.step(int(action))
            assert (terminated or after["state_hash"] != before) == bool(masks[action]), (action, other.command(int(action)))
        action = int(rng.choice(candidates))
        obs, _, terminated, truncated, info = env.step(action)
        prefix.append(action)
        if terminated or truncated:
            break


def test_textquest_choice_is_the_medium_quest_as_textquest_is():
    alias, medium = gym.make("Align/TextQuest-Choice-v0"), gym.make("Align/TextQuest-medium-Choice-v0")
    (a, info_a), (b, info_b) = alias.reset(seed=3), medium.reset(seed=3)
    assert np.array_equal(a, b) and info_a["state"] == info_b["state"]
    assert alias.unwrapped.text_env.spec.id == "Align/TextQuest-medium-v0"


def test_webshop_state_hash_is_what_the_page_shows():
    env = gym.make("Align/WebShop-v0")
    _, first = env.reset(seed=0)
    *_, results = env.step(first["valid_actions"][0])
    assert results["state"]["page"] == "results"
    *_, item = env.step(next(a for a in results["valid_actions"] if a.startswith("click[") and "Search" not in a
                                 and "Next" not in a))
    assert item["state"]["page"] == "item"
    *_, description = env.step("click[Description]")
    *_, back_on_item = env.step("click[< Prev]")
    *_, features = env.step("click[Features]")
    # the two detail pages show different things; back on the product page, the same as before
    assert description["state_hash"] != features["state_hash"]
    assert back_on_item["state_hash"] == item["state_hash"]
    # back on the search page, the page is the first one again: the last query no longer matters
    *_, search_again = env.step("click[Back to Search]")
    assert search_again["state"]["page"] == "search"
    assert search_again["state_hash"] == first["state_hash"]
