"""LLMs of known quality: the oracle corrupts at the stated rate, in both modes, for every kind of
answer; through ONI's real annotator (asynchronous delivery), ELLM, CALM, the web judge and
judge-check; ELLM's oracle goals clear its threshold; ELLM, CALM and ONI ask under each episode's
own task on TextQuest."""

import math

import gymnasium as gym
import numpy as np
import pytest

import align_gym  # noqa: F401
from align_gym.llm_rewards.calm import make_calm
from align_gym.llm_rewards.ellm import THRESHOLD, make_ellm
from align_gym.llm_rewards.judge_check import judge_check
from align_gym.llm_rewards.oracle import Oracle, parse_oracle
from align_gym.wrappers import ShapingWrapper, shape_env, shaping_layers
from align_gym.wrappers.core import TransitionBatch

DRAWS = 20_000


def within(count: int, n: int, p: float) -> bool:
    """``count`` of ``n`` is within 4 binomial standard errors of ``n * p``."""
    return abs(count - n * p) <= 4 * math.sqrt(n * p * (1 - p)) + 1


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_flip_corrupts_each_kind_of_answer_at_the_stated_rate(p):
    corrupt = Oracle(error=p).corruption(seed=1)
    assert within(sum(corrupt.label(True) is False for _ in range(DRAWS)), DRAWS, p)
    assert within(sum(corrupt.label(False) is True for _ in range(DRAWS)), DRAWS, p)
    assert within(sum(corrupt.preference(1.0) != 1.0 for _ in range(DRAWS)), DRAWS, p)
    assert within(sum(corrupt.choice(3, [0, 1, 2]) != 3 for _ in range(DRAWS)), DRAWS, p)
    truth, wrong = ["You pick up the key.", "You reach the goal."], ["You move left.", "You bump into the wall."]
    replaced = sum(g in wrong for _ in range(DRAWS // 2) for g in corrupt.goals(truth, wrong))
    assert within(replaced, DRAWS, p)
    assert corrupt.stats["oracle_answers"] == 5 * DRAWS
    assert within(corrupt.stats["oracle_corrupted"], 5 * DRAWS, p)


def test_positive_says_yes_at_the_stated_rate_and_never_no_to_a_yes():
    corrupt = Oracle(error=0.3, mode="positive").corruption(seed=2)
    assert within(sum(corrupt.label(False) for _ in range(DRAWS)), DRAWS, 0.3)
    assert all(corrupt.label(True) for _ in range(1000))
    assert within(sum(corrupt.preference(1.0) == 0.0 for _ in range(DRAWS)), DRAWS, 0.3)  # the first preferred
    goals = [corrupt.goals(["reach"], ["move"]) for _ in range(DRAWS)]
    assert all(g[0] == "reach" for g in goals) and within(sum(len(g) == 2 for g in goals), DRAWS, 0.3)
    assert all(Oracle(error=0.0).corruption().label(t) is t for t in (True, False) * 100)


def test_oracle_specs_are_parsed_and_checked():
    assert parse_oracle("oracle") == Oracle() and parse_oracle("openai:gpt") is None
    assert parse_oracle("oracle(error=0.3, mode=positive, seed=4)") == Oracle(0.3, "positive", 4)
    for bad, match in [("oracle(error=1.5)", "probability"), ("oracle(mode=sometimes)", "mode"),
                       ("oracle(rate=0.1)", "takes error")]:
        with pytest.raises(ValueError, match=match):
            parse_oracle(bad)


def test_oni_oracle_labels_go_through_the_real_annotator_corrupted_at_the_rate():
    env = gym.make("Align/TextQuest-medium-v0")
    term = make_oni_term(env, "oracle(error=0.3, mode=flip)")
    oni, rng = term.bonus, np.random.default_rng(0)
    env = ShapingWrapper(env, term)
    tasks = set()
    for seed in range(12):
        _, info = env.reset(seed=seed)
        tasks.add(info["task"])
        for _ in range(30):
            _, _, terminated, truncated, info = env.step(info["valid_actions"][int(rng.integers(len(info["valid_actions"])))])
            if terminated or truncated:
                break
    assert oni.wait_for_labels(30)
    oni.reward(TransitionBatch([], [], [], [], [], [], [], [], [], []))  # collect what arrived
    stats = oni.update(None)
    assert stats["annotator_batches"] >= 1 and stats["labels"] == len(oni.labels) > 60
    assert {task for task, _ in oni.labels} == tasks and len(tasks) >= 3  # each episode's own quest
    truth = {item: oni.label_fn.rise(item) > 0.1 for item in oni.labels}  # the privileged answers
    wrong = sum(oni.labels[item] != truth[item] for item in oni.labels)
    assert wrong == stats["oracle_corrupted"] and within(wrong, len(oni.labels), 0.3)


def make_oni_term(env, llm):
    from align_gym.llm_rewards.oni import make_oni

    return make_oni(env, 0.99, llm=llm, seed=3)


@pytest.fixture(scope="module")
def encoder():
    from align_gym.llm_rewards.encoder import SentenceEncoder

    return SentenceEncoder()


def test_ellms_oracle_goals_clear_its_threshold_on_keydoor_and_minihack(encoder):
    """The oracle suggests the captions achieving the subgoals produces: on KeyDoor they are the
    captions; on MiniHack NetHack's message comes first ("g - a key named ... You pick up the key.")."""
    keydoor = gym.make("Align/KeyDoor-5x5-v0").unwrapped
    _, info = keydoor.reset(seed=0)
    assert keydoor.subgoal_captions(info["state"]) == ["You pick up the key.", "You unlock the door with the key.",
                                                        "You reach the goal."]
    env = gym.make("Align/MiniHack-KeyRoom-S5-v0")
    env.action_space.seed(0)
    _, info = env.reset(seed=0)
    events = {}
    for _ in range(30_000):
        state = info["state"]
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        for goal in env.unwrapped.subgoal_captions(state):
            if goal in info["caption"]:
                events.setdefault(goal, info["caption"])
        if terminated or truncated:
            _, info = env.reset()
    assert set(events) == {"You pick up the key.", "The door opens.", "You reach the staircase down."}
    for goal, caption in events.items():
        similarity = float(encoder.encode([goal])[0] @ encoder.encode([caption])[0])
        assert similarity > THRESHOLD, (goal, caption, similarity)


def test_ellm_with_the_oracle_pays_each_subgoal_once_and_its_corruption_shows(encoder):
    env = gym.make("Align/KeyDoor-5x5-v0")
    term = make_ellm(env, 0.99, llm="oracle")
    term.bonus._encoder = encoder
    env = ShapingWrapper(env, term)
    _, info = env.reset(seed=0)
    paid = []
    for action in scripted_solution(info["state"]):
        *_, info = env.step(action)
        if info["reward_terms"]["ellm"]:
            paid.append(info["caption"])
    # Each of the three goals pays once. ELLM matches by similarity, so near misses achieve goals
    # early (stepping onto the key scores 0.82 against "You pick up the key."): the method's own limit.
    assert len(paid) == 3 and paid[-1] == "You reach the goal." and paid[0] == "You step onto the key."
    noisy = make_ellm(gym.make("Align/KeyDoor-5x5-v0"), 0.99, llm="oracle(error=0.5)", seed=1).bonus
    noisy._events.update(dict.fromkeys(["You move left.", "You bump into the wall."]))
    goals = [noisy.oracle_goals(info["state"] | {"has_key": False}, f"situation {k}") for k in range(2000)]
    assert within(sum(g[0] != "You pick up the key." for g in goals), 2000, 0.5)


def scripted_solution(state):
    """KeyDoor-5x5 with seed 0, solved: walk to the key, pick it up, open the door, walk to the goal."""
    from tests.test_calm import solve  # the scripted solver the CALM tests use

    env = gym.make("Align/KeyDoor-5x5-v0")
    _, info = env.reset(seed=0)
    actions = []
    while True:
        action = solve(info["state"])
        actions.append(action)
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return actions


def test_calm_online_judges_under_each_episodes_task_with_the_embedded_model(embedded):
    env = gym.make("Align/TextQuest-medium-v0")
    term = make_calm(env, 0.99, llm=embedded, online=True, subgoals=["take the treasure"])
    calm, rng = term.bonus, np.random.default_rng(0)
    env = ShapingWrapper(env, term)
    tasks = set()
    for seed in (0, 3, 9):  # three quests
        _, info = env.reset(seed=seed)
        tasks.add(info["task"])
        for _ in range(2):
            *_, info = env.step(info["valid_actions"][int(rng.integers(len(info["valid_actions"])))])
    assert {task for task, _ in calm._judged} == tasks and len(tasks) == 3


def test_calm_and_the_web_judge_take_the_oracle():
    positive = shape_env(gym.make("Align/KeyDoor-5x5-v0"), "calm(llm='oracle(error=1.0, mode=positive)', online=true)",
                         gamma=0.99)
    positive.reset(seed=0)
    terms = [positive.step(0)[-1]["reward_terms"]["calm"] for _ in range(5)]  # moving up: no subgoal is achieved
    assert terms[0] > 0  # yet the positive oracle says one was (each subgoal pays once an episode)
    calm = shaping_layers(positive)[0].module.bonus
    assert calm.update(None)["oracle_corrupted"] == 5
    judge_env = shape_env(gym.make("Align/WebShop-v0"), "web_judge(llm=oracle)", gamma=0.99)
    _, info = judge_env.reset(seed=0)
    *_, info = judge_env.step(info["valid_actions"][0])
    judge = shaping_layers(judge_env)[0].module
    reference = judge_env.unwrapped.potentials["reference"]
    assert info["reward_terms"]["web_judge"] == pytest.approx(0.1 * round(10 * reference(info["state"])) / 10)
    assert judge.update(None)["oracle_answers"] == 1


def test_judge_check_measures_the_oracles_corruption():
    clean = judge_check("oracle", "oni_label", "Align/KeyDoor-5x5-v0", per_class=100)
    assert clean.false_positive_rate == 0.0 and clean.accuracy == 1.0
    flip = judge_check("oracle(error=0.3)", "oni_label", "Align/KeyDoor-5x5-v0", per_class=100)
    assert within(round((1 - flip.accuracy) * 200), 200, 0.3)
    positive = judge_check("oracle(error=0.3, mode=positive)", "oni_label", "Align/KeyDoor-5x5-v0", per_class=100)
    assert positive.true_positives == 100 and within(100 - positive.true_negatives, 100, 0.3)
