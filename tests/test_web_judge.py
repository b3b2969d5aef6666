"""The web judge with the real embedded model through a real cache file, and its error paths."""

import gymnasium as gym
import pytest

import align_gym  # noqa: F401
from align_gym.envs.web.webshop import scripted_shopper
from align_gym.llm_rewards.cache import LLMCache
from align_gym.llm_rewards.clients.cached import CachedClient
from align_gym.llm_rewards.judge_check import JUDGES, judge
from align_gym.llm_rewards.web_judge import WebJudge
from align_gym.wrappers import ShapingWrapper, is_invariant, shape_env


def test_the_embedded_judge_rates_pages_once_each_and_replays_from_its_cache(tmp_path, embedded):
    path = tmp_path / "judge.sqlite"
    judge_module = WebJudge("Buy what the instruction asks for.", CachedClient(embedded, LLMCache(path, "readwrite")),
                            coef=0.5)
    env = gym.make("Align/WebShop-v0")
    env.reset(seed=0)
    plan = scripted_shopper(env.unwrapped.__deepcopy__({}))
    shaped = ShapingWrapper(gym.make("Align/WebShop-v0"), judge_module)
    shaped.reset(seed=0)
    terms, pages = [], []
    for action in [*plan[:2], "click[< Prev]", plan[1]]:  # results, product, results again, product again
        page, _, _, _, info = shaped.step(action)
        terms.append(info["reward_terms"]["web_judge"])
        pages.append(page)
    assert all(0.0 <= t <= 0.5 for t in terms)
    assert terms[:2] == terms[2:] and len(judge_module.ratings) == 2  # a page seen again: judged once
    for page, term in zip(pages, terms):
        rating = judge_module.ratings[page]
        assert term == pytest.approx(0.5 * (rating or 0.0) / 10)
    stats = judge_module.update(None)
    assert stats["pages_judged"] == 2 and stats["llm_calls"] >= 1
    replay = WebJudge("Buy what the instruction asks for.", CachedClient(embedded, LLMCache(path, "replay")), coef=0.5)
    assert replay.judge(pages) == [judge_module.ratings[p] for p in pages]  # every answer from the file


class FakeJudgeClient:
    """A fake LLM for the parsing and error paths only: it answers from a fixed list."""

    def __init__(self, answers):
        self.answers, self.prompts = list(answers), []

    def generate(self, prompts, **_):
        self.prompts += prompts
        return [[self.answers.pop(0)] for _ in prompts]


def test_unparsed_answers_pay_nothing_and_are_counted():
    module = WebJudge("Buy it.", FakeJudgeClient(["Rating: 8", "I cannot tell.", "Rating: 11"]), coef=1.0)
    assert module.judge(["page a", "page b", "page c"]) == [8.0, None, None]
    assert module.update(None)["unparsed"] == 2.0


def test_the_judge_reads_pages_not_vectors_and_is_marked_non_invariant():
    assert not is_invariant("web_judge")
    with pytest.raises(ValueError, match="-Choice view"):
        shape_env(gym.make("Align/WebShop-Choice-v0"), "web_judge", gamma=0.99)
    env = shape_env(gym.make("Align/WebForm-v0"), "web_judge(llm='hf:default', coef=0.2)", gamma=0.99)
    module = env.module
    assert module.coef == 0.2 and module.task == type(env.unwrapped).task and module._client is None  # lazy


def test_judge_check_puts_master_keys_in_place_of_the_page():
    from align_gym.llm_rewards.prompts import load_template

    client = FakeJudgeClient(["Rating: 9", "Rating: 1"])
    verdicts = judge(client, load_template("web_progress"), "Buy it.", [":", "Thought process:"])
    assert verdicts == [True, False] and JUDGES["web_progress"][2] == "page"
    assert '":"' in client.prompts[0][-1]["content"].replace('"""\n:\n"""', '":"')
