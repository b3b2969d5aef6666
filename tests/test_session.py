"""EnvSession: the one core both trainer doors drive."""

import gymnasium as gym
import pytest

import align_gym  # noqa: F401
from align_gym.agents.session import EnvSession, EpisodeError, check_text_env_id, text_env_ids
from align_gym.envs.text.core import solve
from align_gym.wrappers import shape_env

SHAPING = "pbrs(potential=reference)+count(key=state, scope=episode)"


def test_steps_report_what_the_wrapped_env_reports_term_by_term():
    session = EnvSession("Align/TextQuest-easy-v0", SHAPING)
    env = shape_env(gym.make("Align/TextQuest-easy-v0"), SHAPING, gamma=1.0)
    first = session.reset(seed=4)
    observation, info = env.reset(seed=4)
    assert first.text == observation and first.valid_actions == info["valid_actions"]
    for command in solve(env.unwrapped):
        turn = session.step(command)
        _, reward, terminated, truncated, info = env.step(command)
        assert turn.reward == pytest.approx(reward)
        assert turn.env_reward == info["env_reward"] and turn.reward_terms == pytest.approx(info["reward_terms"])
        assert (turn.terminated, turn.truncated) == (terminated, truncated)
    assert turn.done and turn.success and session.env_return == 1.0
    assert session.term_returns["pbrs"] == pytest.approx(sum(t.reward_terms["pbrs"] for t in session.turns[1:]))
    assert session.turn_rewards == [t.reward for t in session.turns[1:]]


def test_steps_out_of_place_are_refused_with_the_reason():
    session = EnvSession("Align/ToolCalc-v0")
    with pytest.raises(EpisodeError, match="reset first"):
        session.step("x")
    session.reset(seed=0)
    with pytest.raises(EpisodeError, match="text"):
        session.step(3)
    assert session.step('{"name": "answer", "arguments": {"value": -1}}').terminated
    with pytest.raises(EpisodeError, match="ended"):
        session.step("x")


def test_seeds_drawn_by_the_session_are_reproducible():
    a, b = EnvSession("Align/TextQuest-medium-v0", seed=3), EnvSession("Align/TextQuest-medium-v0", seed=3)
    assert [a.reset().text for _ in range(3)] == [b.reset().text for _ in range(3)]
    assert a.seed == b.seed


def test_only_text_and_tool_envs_are_taken():
    assert "Align/ToolSQL-v0" in text_env_ids() and "Align/KeyDoor-v0" not in text_env_ids()
    for env_id, message in [("Align/KeyDoor-v0", "no text actions"), ("Align/TextQuest-easy-Choice-v0", "SB3 view"),
                            ("Align/ToolCal-v0", "did you mean")]:
        with pytest.raises(ValueError, match=message):
            check_text_env_id(env_id)
