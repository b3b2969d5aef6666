"""CALM: strict parsing of annotations (a fake LLM), the counts and their min-max table on a hand-made
case, the oracle on a scripted solving episode, and the embedded model end to end with a cache
file and its replay."""

import gymnasium as gym
import numpy as np
import pytest

import align_gym  # noqa: F401
from align_gym.envs.keydoor import DOWN, LEFT, PICKUP, RIGHT, TOGGLE, UP
from align_gym.llm_rewards.cache import LLMCache
from align_gym.llm_rewards.calm import CALMBonus, make_calm, min_max_table, transition_key
from align_gym.llm_rewards.clients.cached import CachedClient
from align_gym.wrappers import ShapingWrapper, TransitionBatch

SUBGOALS = ["pick up the key", "open the door"]


class FakeLLM:
    """A FAKE client (the generate protocol only): answers each prompt with the first answer whose
    marker is in the prompt's text, else ``default``; counts its calls."""

    def __init__(self, answers: dict[str, str], default: str = "none"):
        self.answers, self.default, self.calls = answers, default, 0

    def generate(self, prompts, *, max_tokens=64, temperature=0.0, n=1, stop=None, seed=None):
        self.calls += 1
        texts = [p if isinstance(p, str) else "\n".join(m["content"] for m in p) for p in prompts]
        return [[next((a for marker, a in self.answers.items() if marker in t), self.default)] for t in texts]


def episode(name: str, length: int, episode_id: int, end: bool = True, start: int = 0) -> TransitionBatch:
    """A hand-made stretch of an episode: state x = t (plus a step counter the key must ignore),
    action t % 2, captions that name the episode."""
    steps = range(start, start + length)
    states = [{"x": t, "steps": 100 * episode_id + t} for t in steps]
    return TransitionBatch([0] * length, [t % 2 for t in steps], [0] * length, [f"{name} step {t}" for t in steps],
                           states, [{"x": t + 1} for t in steps], np.zeros(length),
                           np.array([end and t == start + length - 1 for t in steps]), np.zeros(length, bool),
                           np.full(length, episode_id))


def key(t: int) -> tuple:
    return transition_key({"x": t}, t % 2)


@pytest.mark.parametrize("name, fields", [
    ("calm_subgoals", {"task": "Open the door."}),
    ("calm_annotate", {"task": "Open the door.", "subgoals": "1. pick up the key",
                       "lines": "0 | pickup | You pick up the key."}),
    ("calm_step", {"task": "Open the door.", "subgoals": "1. pick up the key", "caption": "You pick up the key."}),
])
def test_the_templates_load_and_render_every_field(name, fields):
    from align_gym.llm_rewards.prompts import PACKAGE_DIR, load_template

    template = load_template(name)
    assert template.path.parent == PACKAGE_DIR and template.key.startswith(f"{name}@v1+")
    assert set(template.fields) == set(fields) and template.answer_format
    text = template.render(**fields)
    assert "$" not in text and all(value in text for value in fields.values())


def test_the_key_is_the_state_before_the_step_without_its_counter_and_the_action():
    assert transition_key({"x": 1, "steps": 3}, np.int64(0)) == transition_key({"steps": 9, "x": 1}, 0)
    assert transition_key({"x": 1}, 0) != transition_key({"x": 1}, 1)


def test_min_max_normalisation():
    assert min_max_table({"a": 0, "b": 4, "c": 1}) == {"b": 1.0, "c": 0.25}
    assert min_max_table({"a": 2, "b": 2}) == {"a": 1.0, "b": 1.0} and min_max_table({"a": 0}) == {}


def test_a_correct_annotation_counts_exactly_its_keys_and_the_table_is_min_max_normalised():
    fake = FakeLLM({"alpha step 1": '{"1": 1, "2": 3}', "beta step 1": '{"pick up the key": 1}'})
    calm = CALMBonus("Open the door.", fake, chunk=4, subgoals=SUBGOALS)
    stats = calm.update(TransitionBatch.concatenate([episode("alpha", 4, 0), episode("beta", 4, 1)]))
    assert fake.calls == 1  # both chunks in one batched call
    assert calm.counts == {key(0): 0, key(1): 2, key(2): 0, key(3): 1}
    assert calm.table == {key(1): 1.0, key(3): 0.5}
    assert (stats["chunks"], stats["annotations"], stats["subgoals_found"], stats["unparsed"]) == (2, 2, 3, 0)
    rewards = calm.reward(episode("gamma", 4, 2))  # paid from the table, whatever the step counter says
    np.testing.assert_array_equal(rewards, [0.0, 1.0, 0.0, 0.5])
    again = CALMBonus("Open the door.", FakeLLM({}), subgoals=["other"])
    again.load_state_dict(calm.state_dict())
    assert again.table == calm.table and again.subgoals() == SUBGOALS


def test_malformed_answers_are_counted_not_raised_and_times_outside_the_chunk_dropped():
    fake = FakeLLM({"a step 0": "I think the key was picked up.", "b step 0": '{"1": 9, "2": 2}',
                    "c step 0": '{"7": 1}', "d step 0": '{"1": "two"}', "e step 0": "", "f step 0": "None."})
    calm = CALMBonus("Open the door.", fake, chunk=4, subgoals=SUBGOALS)
    batch = TransitionBatch.concatenate([episode(name, 3, i) for i, name in enumerate("abcdef")])
    stats = calm.update(batch)
    assert (stats["chunks"], stats["unparsed"], stats["annotations"]) == (6, 4, 2)
    assert (stats["out_of_range"], stats["subgoals_found"]) == (1, 1)  # 9 is outside the 3-step chunk
    assert calm.table == {key(2): 1.0}


def test_unfinished_episodes_wait_for_the_update_that_ends_them():
    fake = FakeLLM({"long step 0": '{"2": 5}', "long step 4": '{"1": 1}'})
    calm = CALMBonus("Open the door.", fake, chunk=4, subgoals=SUBGOALS)
    stats = calm.update(episode("long", 3, 7, end=False))
    assert (stats["chunks"], stats["episodes_pending"], fake.calls) == (0, 1, 0)
    stats = calm.update(episode("long", 4, 7, start=3))  # steps 3..6 end it: chunks 0-3 and 4-6
    assert (stats["chunks"], stats["episodes_pending"], fake.calls) == (2, 0, 1)
    assert calm.table == {key(5): 1.0}  # the first chunk's time 5 is out of range; the second's 1 is step 5
    assert calm.stats["out_of_range"] == 1


def test_an_unparsable_decomposition_falls_back_to_the_task():
    fake = FakeLLM({"Example task": "Sure! The subgoals are key and door."})
    calm = CALMBonus("Open the door.", fake)
    assert calm.subgoals() == ["Open the door."] and calm.stats["subgoals_unparsed"] == 1
    assert fake.calls == 3  # the question and two repairs
    assert CALMBonus("t", FakeLLM({"Example task": "- 1. pick up the key\n- 2) open the door"})).subgoals() == SUBGOALS


def test_online_pays_a_subgoal_once_per_episode_and_asks_once_per_caption():
    fake = FakeLLM({'"You pick up the key."': "Subgoal: 1", '"You move left."': "Subgoal: none",
                    '"Nothing."': "maybe"})
    calm = CALMBonus("Open the door.", fake, online=True, subgoals=SUBGOALS)
    captions = ["You move left.", "You pick up the key.", "Nothing.", "You pick up the key."]
    batch = TransitionBatch([0] * 4, [0] * 4, [0] * 4, captions, [{}] * 4, [{}] * 4, np.zeros(4),
                            np.zeros(4, bool), np.zeros(4, bool), np.zeros(4))
    np.testing.assert_array_equal(calm.reward(batch), [0.0, 1.0, 0.0, 0.0])
    assert fake.calls == 1 and calm.stats["unparsed"] == 1 and calm.stats["captions_judged"] == 3


def solve(state: dict) -> int:
    """A shortest path through KeyDoor: to the key, beside the door, through it, to the goal (the
    inner room is open but for the wall column)."""
    ax, ay = state["agent_x"], state["agent_y"]
    if not state["has_key"]:
        target, here = (state["key_x"], state["key_y"]), PICKUP
    elif not state["door_open"]:
        target, here = (state["door_x"] - 1, state["door_y"]), TOGGLE
    elif ax < state["door_x"]:
        target, here = (state["door_x"] - 1, state["door_y"]), RIGHT
    elif ax == state["door_x"]:
        return RIGHT
    else:
        target, here = (state["goal_x"], state["goal_y"]), None
    if (ax, ay) == target:
        return here
    if ax != target[0]:
        return RIGHT if target[0] > ax else LEFT
    return DOWN if target[1] > ay else UP


def play(env, seed: int, rng=None, epsilon: float = 0.0) -> tuple[list, list]:
    """One episode of the scripted solver (a random action with probability ``epsilon``): the terms
    and (state, action, caption) of each step."""
    _, info = env.reset(seed=seed)
    terms, steps = [], []
    while True:
        action = int(rng.integers(6)) if rng is not None and rng.random() < epsilon else solve(info["state"])
        state = info["state"]
        _, _, terminated, truncated, info = env.step(action)
        terms.append(info["reward_terms"]["calm"])
        steps.append((state, action, info["caption"]))
        if terminated or truncated:
            return terms, steps


def test_the_oracle_finds_the_key_door_and_goal_steps_of_a_solving_episode():
    env = gym.make("Align/KeyDoorSubgoals-Episodic-v0")
    term = make_calm(env, gamma=0.99, llm="oracle", chunk=8)
    env = ShapingWrapper(env, term)
    terms, steps = play(env, seed=3)
    assert steps[-1][2] == "You reach the goal." and sum(terms) == 0.0  # nothing annotated yet
    stats = env.driver.update()
    calm = term.bonus
    assert calm.subgoals() == ["door_open", "has_key", "terminated"]
    achieved = [i for i, (_, _, caption) in enumerate(steps)
                if caption in ("You pick up the key.", "You unlock the door with the key.", "You reach the goal.")]
    assert len(achieved) == 3 and stats["subgoals_found"] == 3 and stats["unparsed"] == 0
    assert set(calm.table) == {transition_key(steps[i][0], steps[i][1]) for i in achieved}
    assert set(calm.table.values()) == {1.0}
    replay, _ = play(env, seed=3)  # the same layout and path: paid beta exactly at the three steps
    assert [i for i, t in enumerate(replay) if t] == achieved and set(replay) == {0.0, 0.1}


def test_make_calm_refuses_an_env_without_a_task():
    with pytest.raises(ValueError, match="task in words"):
        make_calm(gym.make("CartPole-v1"), gamma=0.99)
    calm = make_calm(gym.make("Align/KeyDoor-5x5-v0"), gamma=0.99, llm="unused").bonus
    assert calm.action_names == ["up", "down", "left", "right", "pickup", "toggle"] and calm.invariant is False


def test_calm_end_to_end_with_the_embedded_model_and_its_replay(tmp_path, embedded):
    path = tmp_path / "calm.sqlite"

    def run(mode):
        cache = LLMCache(path, mode, run_id="calm-test")
        env = gym.make("Align/KeyDoorSubgoals-Episodic-v0")
        term = make_calm(env, gamma=0.99, llm=CachedClient(embedded, cache), max_tokens=24)
        env = ShapingWrapper(env, term)
        rng, terms, stats = np.random.default_rng(0), [], []
        for seed in range(3):
            terms += play(env, seed, rng, epsilon=0.2)[0]
            stats.append(env.driver.update())
        return terms, stats, term.bonus, cache

    calls = embedded.usage.calls
    recorded, stats, calm, cache = run("readwrite")
    assert embedded.usage.calls > calls and cache.misses > 0
    assert len(calm.subgoals()) >= 1 and stats[-1]["chunks"] >= 3
    assert stats[-1]["annotations"] + stats[-1]["unparsed"] == stats[-1]["chunks"]
    assert all(0.0 <= t <= 0.1 for t in recorded)
    calls = embedded.usage.calls
    replayed, replay_stats, replay_calm, replay_cache = run("replay")  # every answer from the file
    assert embedded.usage.calls == calls and replay_cache.misses == 0
    assert replay_cache.hits == cache.hits + cache.misses
    assert replayed == recorded and replay_calm.table == calm.table and replay_calm.counts == calm.counts
    assert [{k: v for k, v in s.items() if not k.startswith("llm_")} for s in replay_stats] == \
        [{k: v for k, v in s.items() if not k.startswith("llm_")} for s in stats]
