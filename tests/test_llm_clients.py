"""The LLM clients with real parts: the embedded model, a real HTTP server on 127.0.0.1."""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
from servers import free_port, start_cli_server, stop

from align_gym.llm_rewards.cache import CacheMiss, LLMCache
from align_gym.llm_rewards.clients import get_client, parse_client_spec, total_logprob
from align_gym.llm_rewards.clients.cached import CachedClient
from align_gym.llm_rewards.clients.openai_backend import LLMServerError, OpenAIClient

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


def test_chat_templated_generation(embedded):
    [[answer]] = embedded.generate([FRANCE], max_tokens=16)
    assert "Paris" in answer


def test_batched_generation_with_stop_and_seeded_sampling(embedded):
    outputs = embedded.generate([FRANCE, "1, 2, 3, 4,"], max_tokens=12, stop=["8"])
    assert len(outputs) == 2 and "Paris" in outputs[0][0]
    assert "8" not in outputs[1][0] and outputs[1][0].strip().startswith("5")
    first = embedded.generate(["Once upon a time"], max_tokens=8, temperature=1.0, n=3, seed=7)
    again = embedded.generate(["Once upon a time"], max_tokens=8, temperature=1.0, n=3, seed=7)
    assert first == again and len(first[0]) == 3 and len(set(first[0])) > 1


def test_batched_scoring_in_one_pass_matches_one_by_one(embedded):
    prompts = ["The capital of France is", "The capital of France is", "Two plus two equals"]
    continuations = [" Paris", " a banana split", " four"]
    calls = embedded.usage.calls
    batched = embedded.score(prompts, continuations)
    assert embedded.usage.calls == calls + 1  # one forward pass for all rows
    single = [embedded.score([p], [c])[0] for p, c in zip(prompts, continuations)]
    for b, s, c in zip(batched, single, continuations):
        assert len(b) == len(embedded.tokenizer(c, add_special_tokens=False)["input_ids"])
        np.testing.assert_allclose(b, s, atol=0.15)  # bf16 and padding: close, not bitwise
    assert total_logprob(batched[0]) > total_logprob(batched[1]) + 5


def test_a_shared_prompt_prefix_is_run_once_and_changes_no_answer():
    """Rows of one few-shot template share most of their prompt: its prefix is run once, copied
    to every row, and the answers (greedy, float32) are those of each row decoded alone."""
    from align_gym.llm_rewards.clients.decoding import (
        MIN_SHARED_PREFIX,
        decode,
        sample_rows,
        shared_prefix,
    )
    from align_gym.llm_rewards.clients.transformers_backend import TransformersClient
    from align_gym.llm_rewards.prompts import load_template

    client = TransformersClient("default", dtype="float32")
    template = load_template("ellm_goals")
    situations = ["You see a key and a door.", "You are in the attic. You see an old map and an iron box.",
                  "You hold a key. You see a locked door."]
    prompts = [template.render_chat(verbs="pick up, open, go to", state=s) for s in situations]
    rows = [row for ids in client.encode(prompts) for row in sample_rows(ids, 1, 16, 0.0)]
    shared = shared_prefix(rows)
    assert MIN_SHARED_PREFIX <= shared < min(len(row.prompt_ids) for row in rows)
    assert shared_prefix(rows[:1]) == 0  # a row alone shares with nobody
    shapes = []
    hook = client.lm.register_forward_pre_hook(lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)),
                                               with_kwargs=True)
    try:
        together = decode(client.lm, client.tokenizer, rows)
    finally:
        hook.remove()
    assert shapes[0] == (1, shared) and shapes[1] == (len(rows), max(len(r.prompt_ids) for r in rows) - shared)
    unshared = decode(client.lm, client.tokenizer, rows, share_prefix=False)
    alone = [decode(client.lm, client.tokenizer, [row])[0] for row in rows]
    assert [r.text for r in together] == [r.text for r in unshared] == [r.text for r in alone]
    assert all(r.text.strip() for r in together)
    for a, b in zip(together, alone):
        np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-3)


def test_bad_inputs_are_refused(embedded):
    with pytest.raises(ValueError, match="continuations"):
        embedded.score(["a"], ["b", "c"])
    with pytest.raises(ValueError, match="temperature > 0"):
        embedded.generate(["a"], n=2)


@pytest.mark.parametrize("spec", ["gpt", "openai:model", "openai:m@ftp://x", "hf:", "claude:x"])
def test_bad_specs_say_what_a_spec_looks_like(spec):
    with pytest.raises(ValueError, match=r"bad LLM spec .*(hf:default|MODEL@BASE_URL)"):
        parse_client_spec(spec)


def test_missing_model_folder_is_named():
    with pytest.raises(FileNotFoundError, match="no model at"):
        get_client("hf:/nonexistent/model", cache=None)


def test_cached_client_calls_the_backend_once_and_replays(embedded, tmp_path):
    cache = LLMCache(tmp_path / "cache.sqlite")
    client = CachedClient(embedded, cache)
    first = client.generate([FRANCE, "1, 2, 3,"], max_tokens=6, template="test@v1")
    calls = embedded.usage.calls
    assert client.generate([FRANCE, "1, 2, 3,"], max_tokens=6, template="test@v1") == first
    assert embedded.usage.calls == calls and client.usage.cache_hits >= 2
    client.generate([FRANCE], max_tokens=6, template="test@v2")  # a new template version misses
    assert embedded.usage.calls == calls + 1
    replay = CachedClient(embedded, LLMCache(tmp_path / "cache.sqlite", mode="replay"))
    assert replay.generate([FRANCE, "1, 2, 3,"], max_tokens=6, template="test@v1") == first
    with pytest.raises(CacheMiss):
        replay.generate(["a prompt never seen"], max_tokens=6, template="test@v1")


@pytest.fixture(scope="module")
def served_model(embedded):
    """`align-gym serve-llm` as a user starts it, on a free port of 127.0.0.1."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    process = start_cli_server(["serve-llm", "--port", str(port)], f"{url}/models")
    yield url
    stop(process)


def test_official_openai_client_works_against_serve_llm(served_model):
    import openai

    client = openai.OpenAI(base_url=served_model, api_key="unused")
    [model] = client.models.list().data
    chat = client.chat.completions.create(model=model.id, messages=FRANCE, max_tokens=16, temperature=0)
    assert "Paris" in chat.choices[0].message.content and chat.usage.completion_tokens > 0
    text = client.completions.create(model=model.id, prompt="1, 2, 3,", max_tokens=6, temperature=0)
    assert text.choices[0].text.strip().startswith("4")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=FRANCE, max_tokens=4)


def test_official_client_gets_vllm_style_logprobs_streams_n_and_finish_reasons(served_model, embedded):
    import math

    import openai

    client = openai.OpenAI(base_url=served_model, api_key="unused")
    model = client.models.list().data[0].id
    # completions with logprobs=2: log-probabilities of the generated tokens, two alternatives each
    text = client.completions.create(model=model, prompt="1, 2, 3,", max_tokens=5, temperature=0, logprobs=2)
    choice = text.choices[0]
    assert choice.finish_reason == "length"  # cut by max_tokens
    assert len(choice.logprobs.tokens) == len(choice.logprobs.token_logprobs) == 5
    assert all(v <= 0 for v in choice.logprobs.token_logprobs)
    assert all(len(top) == 2 and all(v <= 0 for v in top.values()) for top in choice.logprobs.top_logprobs)
    # greedy: the chosen token is the likeliest, and its logprob is the top one
    assert all(math.isclose(max(top.values()), v, abs_tol=1e-4)
               for top, v in zip(choice.logprobs.top_logprobs, choice.logprobs.token_logprobs))
    assert choice.logprobs.text_offset == sorted(choice.logprobs.text_offset)
    # echoed prompt tokens come first, with their log-probabilities
    echoed = client.completions.create(model=model, prompt="1, 2, 3,", max_tokens=2, temperature=0, logprobs=1, echo=True)
    assert echoed.choices[0].text.startswith("1, 2, 3,") and echoed.choices[0].logprobs.token_logprobs[0] is None
    # chat with logprobs and top_logprobs
    chat = client.chat.completions.create(model=model, messages=FRANCE, max_tokens=12, temperature=0,
                                          logprobs=True, top_logprobs=2)
    content = chat.choices[0].logprobs.content
    assert "".join(t.token for t in content).strip() and all(len(t.top_logprobs) == 2 for t in content)
    assert chat.choices[0].finish_reason in ("stop", "length")
    short = client.chat.completions.create(model=model, messages=FRANCE, max_tokens=2, temperature=0)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 2
    # n=2 seeded samples, reproducible
    two = client.chat.completions.create(model=model, messages=FRANCE, max_tokens=8, temperature=1.0, n=2, seed=7)
    again = client.chat.completions.create(model=model, messages=FRANCE, max_tokens=8, temperature=1.0, n=2, seed=7)
    assert len(two.choices) == 2 and [c.message.content for c in two.choices] == [c.message.content for c in again.choices]
    # streaming chat: the deltas add up to the whole answer
    pieces, reasons = [], []
    for chunk in client.chat.completions.create(model=model, messages=FRANCE, max_tokens=12, temperature=0, stream=True):
        for c in chunk.choices:
            pieces.append(c.delta.content or "")
            reasons.append(c.finish_reason)
    whole = client.chat.completions.create(model=model, messages=FRANCE, max_tokens=12, temperature=0)
    assert "".join(pieces) == whole.choices[0].message.content and reasons[-1] == whole.choices[0].finish_reason
    # stop strings end a text with finish_reason "stop"
    stopped = client.completions.create(model=model, prompt="1, 2, 3,", max_tokens=12, temperature=0, stop=[","])
    assert "," not in stopped.choices[0].text and stopped.choices[0].finish_reason == "stop"


def test_concurrent_requests_share_forward_passes(served_model):
    """Requests that arrive together are decoded in shared batches. (Their greedy answers are then
    not guaranteed bit for bit those they get alone: `--batch-invariant`, tests/test_llm_server.py.)"""
    from concurrent.futures import ThreadPoolExecutor

    def counters() -> list[float]:
        text = httpx.get(f"{served_model.removesuffix('/v1')}/metrics").text
        return [float(line.split()[1]) for line in text.splitlines()]

    def ask(i):
        body = {"model": "SmolLM2-135M-Instruct", "prompt": f"Count: {i},", "max_tokens": 4, "temperature": 0}
        return httpx.post(f"{served_model}/completions", json=body, timeout=60).json()["usage"]["completion_tokens"]

    before = counters()
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(ask, range(8))) == [4] * 8
    batches, rows = (after - first for after, first in zip(counters(), before))
    assert rows == 8 and batches < 8


def test_openai_backend_generates_and_scores_like_the_local_model(served_model, embedded):
    client = get_client(f"openai:SmolLM2-135M-Instruct@{served_model}", cache=None)
    [[answer]] = client.generate([FRANCE], max_tokens=16)
    assert "Paris" in answer
    remote = client.score(["The capital of France is"] * 2, [" Paris", " a banana split"])
    local = embedded.score(["The capital of France is"] * 2, [" Paris", " a banana split"])
    for r, loc in zip(remote, local):
        assert len(r) == len(loc)
        np.testing.assert_allclose(r, loc, atol=0.15)


class FlakyServer:
    """A fake OpenAI-compatible server for error paths only: it fails ``failures`` times with
    ``status`` (or stalls ``stall`` seconds), then answers a fixed completion."""

    def __init__(self, failures: int, status: int = 500, stall: float = 0.0):
        self.failures, self.status, self.stall, self.requests = failures, status, stall, 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests += 1
                if outer.requests <= outer.failures:
                    if outer.stall:
                        time.sleep(outer.stall)
                    self.send_response(outer.status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                    return
                body = json.dumps({"choices": [{"index": 0, "text": "fake answer"}], "usage": {}}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def test_retries_with_backoff_on_500_then_succeeds():
    server = FlakyServer(failures=3, status=500)
    client = OpenAIClient("fake", server.url, backoff=0.01, max_retries=5)
    assert client.generate(["hi"], max_tokens=4) == [["fake answer"]]
    assert server.requests == 4 and client.usage.retries == 3
    server.close()


def test_gives_up_after_max_retries_and_does_not_retry_a_400():
    server = FlakyServer(failures=100, status=503)
    client = OpenAIClient("fake", server.url, backoff=0.01, max_retries=2)
    with pytest.raises(LLMServerError, match="503"):
        client.generate(["hi"])
    assert server.requests == 3
    bad = FlakyServer(failures=100, status=400)
    with pytest.raises(LLMServerError, match="400"):
        OpenAIClient("fake", bad.url, backoff=0.01).generate(["hi"])
    assert bad.requests == 1
    server.close()
    bad.close()


def test_a_stalled_request_times_out_and_is_retried():
    server = FlakyServer(failures=1, stall=2.0)
    client = OpenAIClient("fake", server.url, timeout=0.5, backoff=0.01, max_retries=3)
    assert client.generate(["hi"]) == [["fake answer"]]
    assert client.usage.retries >= 1
    server.close()


def test_api_key_comes_from_the_environment_and_is_sent(monkeypatch):
    seen = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            seen["auth"] = self.headers.get("Authorization")
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = json.dumps({"choices": [{"index": 0, "text": "ok"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("MY_KEY", "secret-123")
    client = OpenAIClient("fake", f"http://127.0.0.1:{server.server_address[1]}/v1", api_key_env="MY_KEY")
    client.generate(["hi"])
    assert seen["auth"] == "Bearer secret-123"
    assert "secret-123" not in repr(client.describe())
    server.shutdown()


def test_vllm_backend_says_how_to_get_it():
    if os.environ.get("ALIGN_GYM_HAS_VLLM"):
        pytest.skip("vLLM is installed here")
    with pytest.raises(ImportError, match="openai:MODEL@URL"):
        get_client("vllm:some/model", cache=None)


def test_llm_calls_leave_an_sb3_agents_random_stream_alone(embedded):
    """Seeded and unseeded sampling, in this thread and in an annotator thread beside the agent,
    change no global RNG: the agent's stochastic actions come out the same."""
    import random

    import torch
    from stable_baselines3 import PPO

    from align_gym.agents import make_vec_env
    from align_gym.llm_rewards.annotator import Annotator

    model = PPO("MlpPolicy", make_vec_env("Align/KeyDoor-5x5-v0", n_envs=2, gamma=0.99), seed=0, device="cpu")
    obs = model.get_env().reset()

    def actions(with_llm: bool) -> list[int]:
        torch.manual_seed(123)
        random.seed(5)
        np.random.seed(5)
        annotator = Annotator(lambda prompts: [embedded.generate([p], max_tokens=4, temperature=1.0)[0][0]
                                               for p in prompts], batch_size=1) if with_llm else None
        out = []
        for step in range(12):
            if with_llm:
                annotator.submit([f"caption {step}"])
                embedded.generate(["Say a number."], max_tokens=3, temperature=1.0, seed=step)
                embedded.generate(["Say a word."], max_tokens=3, temperature=0.8)
            out.extend(model.predict(obs, deterministic=False)[0].tolist())
        if annotator is not None:
            assert annotator.wait_idle(60) and annotator.stats.labelled == 12
            annotator.close()
        out.append(random.random())
        out.append(float(np.random.random()))
        return out

    assert actions(with_llm=False) == actions(with_llm=True)


def test_openai_backend_returns_the_servers_token_logprobs(served_model, embedded):
    remote = get_client(f"openai:SmolLM2-135M-Instruct@{served_model}", cache=None)
    for prompt in ("1, 2, 3,", FRANCE):
        [[theirs]] = remote.completions([prompt], max_tokens=6, top_logprobs=2)
        [[ours]] = embedded.completions([prompt], max_tokens=6, top_logprobs=2)
        assert theirs.text == ours.text and theirs.finish_reason == ours.finish_reason
        np.testing.assert_allclose(theirs.logprobs, ours.logprobs, atol=1e-3)
        assert all(len(alternatives) == 2 for alternatives in theirs.top_logprobs)
