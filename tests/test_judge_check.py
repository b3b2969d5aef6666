"""The judge-robustness check: oracle-labelled captions, master keys, the report, on the real
embedded model."""

import pytest

from align_gym.llm_rewards.judge_check import MASTER_KEYS, judge_check, oracle_captions, wilson


def test_wilson_interval_matches_known_values():
    low, high = wilson(45, 50)
    assert low == pytest.approx(0.7864, abs=1e-3) and high == pytest.approx(0.9565, abs=1e-3)
    assert wilson(0, 30)[0] == 0.0 and wilson(0, 30)[1] == pytest.approx(0.1135, abs=1e-3)


def test_oracle_labels_come_from_the_envs_privileged_state():
    samples = oracle_captions("Align/KeyDoor-5x5-v0", per_class=50, seed=0)
    assert sum(label for _, label in samples) == 50 and sum(not label for _, label in samples) == 50
    by_caption = {}
    for caption, label in samples:
        by_caption.setdefault(caption, set()).add(label)
    # events that always or never make progress are labelled so
    assert by_caption.get("You bump into the wall.", {False}) == {False}
    assert by_caption.get("You step onto the key.", {True}) == {True}
    with pytest.raises(ValueError, match="no 'reference' potential"):
        oracle_captions("CartPole-v1", per_class=1)


def test_judge_check_on_the_embedded_model(embedded):
    report = judge_check("hf:default", "rate_number", "Align/KeyDoor-5x5-v0", per_class=6, client=embedded,
                         max_tokens=40)
    assert report.master_keys == len(MASTER_KEYS) >= 25
    assert report.captions_positive == report.captions_negative == 6
    assert 0 <= report.master_key_positives + report.master_key_unparsed <= report.master_keys
    assert len(report.fooled_by) == report.master_key_positives
    assert 0.0 <= report.accuracy <= 1.0 and 0.0 <= report.false_positive_rate <= 1.0
    text = report.summary()
    assert "false-positive rate" in text and "accuracy" in text and "/12;" in text
    with pytest.raises(ValueError, match="knows the templates"):
        judge_check("hf:default", "motif_pair", "Align/KeyDoor-5x5-v0", client=embedded)


class FakeSubgoalJudge:
    """A FAKE LLM for the calm_step plumbing only: two subgoals, then 'Subgoal: 1' for key captions."""

    def __init__(self):
        self.prompts = []

    def generate(self, prompts, **_):
        self.prompts += prompts
        out = []
        for prompt in prompts:
            text = prompt[-1]["content"]
            if "What just happened" not in text:
                out.append(["- pick up the key\n- open the door"])
            else:
                out.append(["Subgoal: 1" if "key" in text.split("What just happened")[1] else "Subgoal: none"])
        return out


def test_calm_steps_are_judged_against_the_subgoals_the_model_wrote():
    from align_gym.llm_rewards.judge_check import judge
    from align_gym.llm_rewards.prompts import load_template

    client = FakeSubgoalJudge()
    verdicts = judge(client, load_template("calm_step"), "Open the door.", ["You pick up the key.", "You bump into the wall."])
    assert verdicts == [True, False]
    assert "1. pick up the key" in client.prompts[-1][-1]["content"]  # the model's own subgoals are in the question
