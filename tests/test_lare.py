"""LaRe: synthesis, pre-verification with repairs and fallbacks, the decoder, and replay."""

import gymnasium as gym
import numpy as np
import pytest

import align_gym  # noqa: F401
from align_gym.llm_rewards.cache import LLMCache
from align_gym.llm_rewards.clients.cached import CachedClient
from align_gym.llm_rewards.lare import (
    LatentRejected,
    make_lare,
    synthesize_latent,
    transition_inputs,
)
from align_gym.wrappers.core import ShapingWrapper

ENV = "Align/KeyDoorSubgoals-Episodic-v0"


def block(body):
    return f"Analysis: the key matters.\n```python\ndef latent_factors(state, next_state):\n{body}\n```"


VALID = block("    return [float(next_state['has_key']) - float(state['has_key']), float(next_state['door_open'])]")
CANDIDATES = {
    "crash": block("    return [state['has_key'] / 0]"),
    "sandbox": "```python\nimport os\ndef latent_factors(state, next_state):\n    return [0.0]\n```",
    "nan": block("    return [float('nan')]"),
    "shape": block("    return [1.0] * (1 + int(next_state['agent_x']) % 2)"),
    "valid": VALID,
}


class FakeLatentWriter:
    """A FAKE LLM for the verification paths only: five scripted candidates, then ``merged`` for
    the merge prompt and every repair of it."""

    def __init__(self, merged, candidates=CANDIDATES):
        self.merged, self.candidates, self.calls = merged, candidates, []

    def generate(self, prompts, **params):
        self.calls.append(prompts)
        text = prompts[0][-1]["content"]
        if "candidate functions" in text or "could not be" in text or "problem" in text.lower():
            return [[self.merged] for _ in prompts]
        return [[answer] for answer in self.candidates.values()][: len(prompts)]


@pytest.fixture(scope="module")
def inputs():
    return transition_inputs(ENV, 64)


def test_bad_functions_are_refused_with_their_reasons_and_the_valid_one_is_kept(inputs):
    writer = FakeLatentWriter(merged=CANDIDATES["crash"])
    synthesis = synthesize_latent(writer, gym.make(ENV), inputs, samples=5, repairs=2)
    assert synthesis.origin == "candidate_5" and synthesis.dimension == 2
    reasons = {r["label"]: r["reason"] for r in synthesis.record}
    assert "ZeroDivisionError" in reasons["merged"] and len(synthesis.record[0]["answers"]) == 3  # 2 repairs
    assert "ZeroDivisionError" in reasons["candidate_1"]
    assert "not allowed" in reasons["candidate_2"]
    assert "not finite" in reasons["candidate_3"]
    assert "length changed" in reasons["candidate_4"]
    merge_prompt = writer.calls[1][0][-1]["content"]
    assert all(f"Candidate {i}:" in merge_prompt for i in range(1, 6))  # every candidate is shown to the merge
    all_bad = {**CANDIDATES, "valid": CANDIDATES["nan"]}
    with pytest.raises(LatentRejected, match="candidate_3: .*not finite"):
        synthesize_latent(FakeLatentWriter(CANDIDATES["crash"], all_bad), gym.make(ENV), inputs, repairs=0)


def test_a_merged_function_that_passes_is_used_and_saved(inputs, tmp_path):
    merged = block("    return [float(next_state['has_key']), float(next_state['door_open']), 1.0]")
    synthesis = synthesize_latent(FakeLatentWriter(merged), gym.make(ENV), inputs)
    assert synthesis.origin == "merged" and synthesis.dimension == 3
    path = synthesis.save(tmp_path)
    module = make_lare(gym.make(ENV), gamma=0.99, code=str(path), states=32)
    assert module.method.feature_size == 3
    module.close()
    bad = tmp_path / "bad.py"
    bad.write_text("def latent_factors(state, next_state):\n    return [float('nan')]\n")
    with pytest.raises(ValueError, match="not finite"):
        make_lare(gym.make(ENV), gamma=0.99, code=str(bad), states=32)


def test_the_decoder_learns_the_subgoal_rewards_from_episodic_returns(tmp_path):
    """Online LaRe on the episodic KeyDoorSubgoals with factors that mark each subgoal: the decoder,
    trained on returns alone, pays the key pickup far more than a plain step."""
    code = tmp_path / "latent.py"
    code.write_text("def latent_factors(state, next_state):\n"
                    "    return [float(next_state['has_key']) - float(state['has_key']),\n"
                    "            float(next_state['door_open']) - float(state['door_open'])]\n")
    env = gym.make(ENV, size=5, max_steps=30)
    module = make_lare(env, gamma=0.99, code=str(code), online=True, episodes=32, k=16, lr=1e-3, update_every=300,
                       fit_rounds=60, states=32)
    env = ShapingWrapper(env, module)
    env.action_space.seed(0)
    env.reset(seed=0)
    for _ in range(3000):
        *_, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    r = module.method.rewards(np.array([[0.0, 0.0], [1.0, 0.0]], np.float32), None, None)
    assert len(module.store) > 100 and r[1] - r[0] > 0.15  # the key is worth 0.25 in the dense task
    module.close()


def test_the_embedded_models_synthesis_replays_from_the_cache(tmp_path, embedded):
    path, inputs = tmp_path / "lare.sqlite", transition_inputs(ENV, 16)

    def synthesize(mode):
        client = CachedClient(embedded, LLMCache(path, mode, run_id="lare-test"))
        try:
            result = synthesize_latent(client, gym.make(ENV), inputs, samples=2, repairs=1, max_tokens=160)
            return [result.origin, result.source, result.record], client
        except LatentRejected as error:  # the 135M model rarely writes usable code: its reasons are kept
            assert error.record and all(r["reason"] for r in error.record)
            return [None, None, error.record], client

    recorded, _ = synthesize("readwrite")
    calls = embedded.usage.calls
    assert calls >= 1
    replayed, _ = synthesize("replay")
    assert replayed == recorded and embedded.usage.calls == calls  # every answer came from the file


def test_a_full_memo_still_returns_every_factor_of_the_batch(tmp_path):
    """The memo of seen transitions overflows inside one batch: nothing asked for may be lost."""
    from align_gym.llm_rewards.lare import LatentFunction

    latent = LatentFunction("def latent_factors(state, next_state):\n    return [float(next_state['x'])]\n", 1,
                            cache_size=2)
    pairs = [[{"x": 0}, {"x": x}] for x in (1, 2, 3, 1, 4)]
    assert latent(pairs).ravel().tolist() == [1.0, 2.0, 3.0, 1.0, 4.0]
    assert latent(pairs[:2]).ravel().tolist() == [1.0, 2.0]
    latent.close()
