"""LLM-written code from answer to checked function: every way code can be bad is caught with its reason."""

import pytest

from align_gym.llm_rewards.codegen import CodeRejected, CodeSpec, check_code, write_code

STATES = [{"x": 1, "y": 2}, {"x": 3, "y": 0}]
BAD = {
    "nan": ("def potential(state):\n    return float('nan')", "not finite"),
    "infinite": ("def potential(state):\n    return 1e308 * 10", "not finite"),
    "import": ("import os\ndef potential(state):\n    return 0.0", "importing 'os' is not allowed"),
    "signature": ("def potential(a, b):\n    return 0.0", "takes 2 arguments"),
    "type": ("def potential(state):\n    return 'high'", "expected a number"),
    "loop": ("def potential(state):\n    while True:\n        pass", "timed out"),
    "exception": ("def potential(state):\n    return state['z']", "KeyError"),
    "changing components": ("def potential(state):\n    return {'a': 1.0} if state['x'] == 1 else {'b': 2.0}",
                            "components changed"),
    "syntax": ("def potential(state)\n    return 0", "syntax error"),
    "escape": ("def potential(state):\n    return state.__class__", "dunder"),
    "missing": ("def phi(state):\n    return 0.0", "no top-level function 'potential'"),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_code_is_rejected_with_its_reason(kind):
    source, reason = BAD[kind]
    with pytest.raises(CodeRejected, match=reason):
        check_code(source, CodeSpec("potential", 1, timeout=1.0), STATES)


def test_good_code_gives_totals_and_components():
    checked = check_code("def potential(state):\n    return {'a': state['x'], 'b': 0.5}", CodeSpec("potential"), STATES)
    assert checked.values == [1.5, 3.5] and checked.components == ["a", "b"]
    reward = check_code("def reward(s, a, t):\n    return t['x'] - s['x'] + a", CodeSpec("reward", 3), [(STATES[0], 1, STATES[1])])
    assert reward.values == [3.0]


class FakeCoder:
    """A FAKE LLM for the repair path only: broken code first, fixed code once told why."""

    def __init__(self):
        self.prompts = []

    def generate(self, prompts, **_):
        self.prompts += prompts
        return [["```python\ndef potential(state):\n    return state['x'] / 0\n```"] if len(p) == 1 else
                ["```python\ndef potential(state):\n    return state['x'] / 2\n```"] for p in prompts]


def test_the_reason_is_fed_back_and_every_attempt_is_kept():
    coder = FakeCoder()
    [attempt] = write_code(coder, [{"role": "user", "content": "Write it."}], CodeSpec("potential"), STATES, samples=1,
                           repairs=1)
    assert attempt.status == "valid" and attempt.checked.values == [0.5, 1.5]
    assert len(attempt.answers) == 2 and "ZeroDivisionError" in attempt.errors[0]
    assert "ZeroDivisionError" in coder.prompts[-1][-1]["content"]  # the repair prompt quotes the reason
    [given_up] = write_code(coder, [{"role": "user", "content": "Write it."}], CodeSpec("potential"), STATES,
                            samples=1, repairs=0)
    assert given_up.status == "rejected" and "ZeroDivisionError" in given_up.reason


def test_the_embedded_model_writes_code_that_is_checked_or_rejected_with_a_reason(embedded):
    import gymnasium as gym

    import align_gym  # noqa: F401
    from align_gym.llm_rewards.reward_code import reward_prompt

    env = gym.make("Align/KeyDoor-5x5-v0")
    states = [env.reset(seed=seed)[1]["state"] for seed in range(4)]
    attempts = write_code(embedded, reward_prompt(env, example_state=states[0]), CodeSpec("potential"), states,
                          samples=2, repairs=1, max_tokens=200, temperature=1.0)
    assert len(attempts) == 2
    for attempt in attempts:
        assert attempt.status == "valid" or attempt.reason  # never silently lost
        assert len(attempt.answers) in (1, 2)
