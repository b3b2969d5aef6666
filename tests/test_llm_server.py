"""`align-gym serve-llm` answers as vLLM's server does: request checks with OpenAI's error body,
the context and batch limits, cancellation when a client leaves, shutdown on one SIGTERM, streamed
log-probabilities, and batch-invariant decoding. Real servers started as the CLI starts them, the
official `openai` client and httpx."""

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from servers import free_port, output, start_cli_server, stop

MODEL = "SmolLM2-135M-Instruct"
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
COUNTING = "1, 2, 3,"  # the model counts on and on: a long decode that no end-of-sequence cuts short


def start(*flags: str) -> tuple[str, object]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    return url, start_cli_server(["serve-llm", "--port", str(port), *flags], f"{url}/models")


@pytest.fixture(scope="module")
def server():
    """One `align-gym serve-llm --batch-invariant` for the module, as a user starts it (the model
    load is the cost); the checks other than batch invariance hold with or without the flag
    (tests/test_llm_clients.py serves without it)."""
    url, process = start("--batch-invariant")
    yield url
    stop(process)


def post(url: str, path: str, body: dict | str, timeout: float = 30) -> httpx.Response:
    if isinstance(body, str):  # raw JSON text, for what a dict cannot say (NaN, a bare list)
        return httpx.post(f"{url}{path}", content=body, headers={"content-type": "application/json"}, timeout=timeout)
    return httpx.post(f"{url}{path}", json=body, timeout=timeout)


def assert_bad_request(response: httpx.Response, *words: str) -> None:
    """A 400 with OpenAI's / vLLM's error body, whose message names what was wrong."""
    assert response.status_code == 400, (response.status_code, response.text)
    error = response.json()["error"]
    assert error["type"] == "BadRequestError" and error["code"] == 400
    assert "Traceback" not in error["message"]
    for word in words:
        assert word in error["message"], (word, error["message"])


def test_requests_beyond_the_context_or_a_batch_are_refused(server):
    # max_tokens=10**6 was accepted, and the server decoded on long after the client gave up
    too_long = post(server, "/completions", {"model": MODEL, "prompt": "Hi", "max_tokens": 10**6}, timeout=10)
    assert_bad_request(too_long, "context length", "8192", "1000000")
    client = openai.OpenAI(base_url=server, api_key="unused", max_retries=0, timeout=10)
    with pytest.raises(openai.BadRequestError, match="context length"):
        client.chat.completions.create(model=MODEL, messages=FRANCE, max_tokens=10_000)
    with pytest.raises(openai.BadRequestError, match="context length"):  # the prompt alone is too long
        client.completions.create(model=MODEL, prompt="hello " * 9000, max_tokens=0, echo=True, logprobs=1)
    # n=5000 held the shared batch for everyone; the limit is one batch (--max-batch, 32)
    assert_bad_request(post(server, "/completions", {"model": MODEL, "prompt": "Hi", "n": 5000, "max_tokens": 1}, 10),
                       "5000", "32", "--max-batch")
    assert_bad_request(post(server, "/completions", {"model": MODEL, "prompt": ["Hi"] * 17, "n": 2, "max_tokens": 1}, 10),
                       "34", "32")


MALFORMED = {
    "max_tokens-list": ("/completions", {"prompt": "Hi", "max_tokens": [1]}, ["max_tokens"]),
    "n-object": ("/completions", {"prompt": "Hi", "n": {}}, ["n"]),
    "seed-list": ("/completions", {"prompt": "Hi", "seed": [1]}, ["seed"]),
    "n-zero": ("/completions", {"prompt": "Hi", "n": 0}, ["n", "greater than or equal to 1"]),
    "temperature-negative": ("/completions", {"prompt": "Hi", "temperature": -1}, ["temperature"]),
    "logprobs-21": ("/completions", {"prompt": "Hi", "logprobs": 21}, ["logprobs", "20"]),
    "max_tokens-negative": ("/completions", {"prompt": "Hi", "max_tokens": -1}, ["max_tokens"]),
    "prompt-empty": ("/completions", {"prompt": ""}, ["prompt", "empty"]),
    "prompt-empty-list": ("/completions", {"prompt": []}, ["prompt"]),
    "max_tokens-zero-without-echo": ("/completions", {"prompt": "Hi", "max_tokens": 0}, ["max_tokens=0", "echo"]),
    "prompt-missing": ("/completions", {"max_tokens": 1}, ["prompt", "Field required"]),
    "temperature-nan": ("/completions", '{"prompt": "Hi", "temperature": NaN}', ["temperature", "finite"]),
    "body-not-an-object": ("/completions", '[1, 2]', ["dictionary"]),
    "body-not-json": ("/completions", '{"prompt": "Hi", ', ["JSON"]),
    "chat-content-number": ("/chat/completions", {"messages": [{"role": "user", "content": 5}]}, ["content", "text parts"]),
    "chat-role-missing": ("/chat/completions", {"messages": [{"content": "Hi"}]}, ["role", "Field required"]),
    "chat-no-messages": ("/chat/completions", {"messages": []}, ["messages"]),
    "chat-max_tokens-zero": ("/chat/completions", {"messages": FRANCE, "max_tokens": 0}, ["max_tokens", "greater than or equal to 1"]),
    "chat-n-zero": ("/chat/completions", {"messages": FRANCE, "n": 0}, ["n"]),
    "chat-top_logprobs-without-logprobs": ("/chat/completions", {"messages": FRANCE, "top_logprobs": 2}, ["top_logprobs", "logprobs"]),
    "prompt-token-ids": ("/completions", {"prompt": [1, 2]}, ["prompt", "list of strings"]),
}


@pytest.mark.parametrize("path, body, words", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_fields_get_400_with_the_reason(server, path, body, words):
    if isinstance(body, dict):
        body = {"model": MODEL, **body}
    assert_bad_request(post(server, path, body, timeout=20), *words)


def test_valid_values_take_openais_meaning(server):
    client = openai.OpenAI(base_url=server, api_key="unused", max_retries=0, timeout=30)
    # temperature null is the default, 1.0: the same seeded sample
    body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 6, "seed": 3}
    default = post(server, "/completions", {**body, "temperature": None}).json()["choices"][0]["text"]
    assert default == post(server, "/completions", {**body, "temperature": 1.0}).json()["choices"][0]["text"]
    assert default != post(server, "/completions", {**body, "temperature": 0}).json()["choices"][0]["text"]
    # chat content may be text parts; n=2 gives two answers
    parts = [{"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}]
    chat = client.chat.completions.create(model=MODEL, messages=parts, temperature=0)  # no max_tokens: up to the context
    assert "Paris" in chat.choices[0].message.content and chat.choices[0].finish_reason == "stop"
    two = client.completions.create(model=MODEL, prompt="Hi", max_tokens=2, n=2, temperature=1.0, seed=1)
    assert [c.index for c in two.choices] == [0, 1]
    # an unknown model is a 404 with the same body shape
    missing = post(server, "/completions", {"model": "no-such-model", "prompt": "Hi"})
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "NotFoundError"


def test_a_client_that_leaves_cancels_its_decoding(server):
    small = {"model": MODEL, "prompt": "Two plus two is", "max_tokens": 4, "temperature": 0}
    post(server, "/completions", small)  # warm
    # a long decode (within the context) whose client gives up after 1.5 s...
    with pytest.raises(httpx.ReadTimeout):
        post(server, "/completions", {"model": MODEL, "prompt": COUNTING, "max_tokens": 4000, "temperature": 0}, 1.5)
    start = time.monotonic()
    assert post(server, "/completions", small, timeout=60).status_code == 200
    assert time.monotonic() - start < 15  # ...no longer holds the next request (4000 tokens: minutes)
    # a stream closed after its first chunks
    with httpx.stream("POST", f"{server}/completions", timeout=30,
                      json={**small, "prompt": COUNTING, "max_tokens": 4000, "stream": True}) as response:
        lines = response.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))
    start = time.monotonic()
    assert post(server, "/completions", small, timeout=60).status_code == 200
    assert time.monotonic() - start < 15


def test_streamed_chunks_carry_their_own_logprobs(server):
    client = openai.OpenAI(base_url=server, api_key="unused", max_retries=0, timeout=30)
    whole = client.completions.create(model=MODEL, prompt=COUNTING, max_tokens=5, temperature=0, logprobs=2)
    chunks = list(client.completions.create(model=MODEL, prompt=COUNTING, max_tokens=5, temperature=0, logprobs=2,
                                            stream=True))
    texts = [c for c in chunks if c.choices[0].text]
    assert texts and all(c.choices[0].logprobs is not None for c in texts)
    streamed = [c.choices[0].logprobs for c in chunks if c.choices[0].logprobs is not None]
    expected = whole.choices[0].logprobs
    assert [t for p in streamed for t in p.tokens] == expected.tokens
    assert [v for p in streamed for v in p.token_logprobs] == pytest.approx(expected.token_logprobs, abs=1e-6)
    assert [o for p in streamed for o in p.text_offset] == expected.text_offset
    assert all(len(top) == 2 for p in streamed for top in p.top_logprobs)
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    # chat: each delta with its tokens, not all of them in the last chunk
    answer = client.chat.completions.create(model=MODEL, messages=FRANCE, max_tokens=6, temperature=0, logprobs=True,
                                            top_logprobs=2)
    chunks = list(client.chat.completions.create(model=MODEL, messages=FRANCE, max_tokens=6, temperature=0,
                                                 logprobs=True, top_logprobs=2, stream=True))
    carrying = [c for c in chunks if c.choices and c.choices[0].logprobs and c.choices[0].logprobs.content]
    assert len(carrying) == 6
    assert [t.token for c in carrying for t in c.choices[0].logprobs.content] == \
        [t.token for t in answer.choices[0].logprobs.content]
    assert all(c.choices[0].delta.content is not None for c in carrying)


def test_one_sigterm_stops_the_server_with_a_request_in_flight():
    url, process = start()
    try:
        def ask() -> None:
            try:
                post(url, "/completions", {"model": MODEL, "prompt": COUNTING, "max_tokens": 4000, "temperature": 0}, 120)
            except httpx.HTTPError:
                pass

        threading.Thread(target=ask, daemon=True).start()
        time.sleep(1.5)  # decoding
        process.send_signal(signal.SIGTERM)
        start_time = time.monotonic()
        process.wait(timeout=10)  # it waited for the request to finish (4000 tokens: minutes)
        assert time.monotonic() - start_time < 10
    except Exception:
        print(output(process))
        raise
    finally:
        stop(process)


def test_batch_invariant_greedy_answers_do_not_depend_on_their_batch(server):
    # Decoded in one left-padded bf16 batch, as they are without --batch-invariant, these two
    # change a greedy answer ("Hello, my name is": " Alex, and I'm a professional coach" alone,
    # "... a brilliant engineer" beside the other, on the embedded model).
    prompts = ["Q: What is 2+2?\nA:", "Hello, my name is"]

    def ask(prompt: str) -> str:
        body = {"model": MODEL, "prompt": prompt, "max_tokens": 8, "temperature": 0}
        return post(server, "/completions", body, timeout=120).json()["choices"][0]["text"]

    alone = [ask(p) for p in prompts]
    with ThreadPoolExecutor(len(prompts)) as pool:
        together = list(pool.map(ask, prompts))
    assert together == alone
