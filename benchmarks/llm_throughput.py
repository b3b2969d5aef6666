"""LLM layer throughput, each figure against a peer measured in the same run.

1. Cache: hit lookups/s, batched (``get_many`` of 256 keys) vs one key at a time, and against
   the embedded model scoring the same captions (what a hit saves).
2. Embedded model (SmolLM2-135M-Instruct, CPU): scored captions/s, 32 per forward pass vs one
   per pass.
3. Sandbox: calls/s of an LLM-written potential, batched vs one per round trip vs a direct call
   (see ``benchmarks/sandbox_throughput.py``).
4. ``serve-llm``: completion tokens/s for 8 clients at once vs the same requests one at a time
   (target: at least 3x, from batching concurrent requests into shared forward passes).
5. Sandbox worker start: seconds and resident memory of a worker started from this process,
   which has imported torch and SB3 as a training script has, as its own program
   (``load_function``) vs multiprocessing's spawn (the old way: it re-imports this script).
6. Embedded model, generation: answers/s for batches of 8 prompts of one few-shot template (ELLM's
   goal prompt), the shared prefix run once vs with every row (target: at least 1.3x; greedy, so
   both give the same answers in float32).

    python benchmarks/llm_throughput.py [--captions 256]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import stable_baselines3  # noqa: F401  (a training script's imports: what a spawned worker re-imports)
import torch  # noqa: F401

from align_gym.llm_rewards.cache import LLMCache, cache_key
from align_gym.llm_rewards.clients.transformers_backend import TransformersClient
from align_gym.llm_rewards.sandbox import load_function

sys.path.insert(0, str(Path(__file__).parent))
from sandbox_throughput import measure as measure_sandbox  # noqa: E402

PROMPT = "Task: pick up the key, open the door, reach the goal.\nEvent: {}\nDoes this event help? Answer:"
EVENTS = ["You pick up the key.", "You bump into the wall.", "You unlock the door with the key.", "You move left.",
          "The door is locked.", "You reach the goal.", "You step onto the key.", "There is nothing here to open."]


def captions(n: int) -> list[str]:
    return [f"{EVENTS[i % len(EVENTS)]} (step {i})" for i in range(n)]


def rate(count: int, seconds: float) -> float:
    return count / max(seconds, 1e-9)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def _old_style_worker(ready) -> None:
    """What a spawned sandbox worker did before it was a program: boot numpy and report."""
    import numpy as np

    np.linalg.norm(np.eye(3))
    ready.send(rss_mib(os.getpid()))
    ready.recv()  # wait to be released


def worker_start(repeats: int = 3) -> dict[str, tuple[float, float]]:
    """(seconds to a worker ready for calls, its resident MiB), best of ``repeats``, both ways."""
    own, spawned = [], []
    for i in range(repeats):
        start = time.perf_counter()
        f = load_function(f"def f(s):\n    return s + {i}\n", "f", memory_mb=256 + i).start()
        own.append((time.perf_counter() - start, rss_mib(f.pid)))
        f.close()
        context = mp.get_context("spawn")
        parent, child = context.Pipe()
        start = time.perf_counter()
        process = context.Process(target=_old_style_worker, args=(child,))
        process.start()
        memory = parent.recv()
        spawned.append((time.perf_counter() - start, memory))
        parent.send(None)
        process.join()
    return {"own program": min(own), "multiprocessing spawn": min(spawned)}


def served_throughput(requests: int = 16, clients: int = 8, max_tokens: int = 32) -> tuple[float, float, float]:
    """serve-llm's completion tokens/s: one request at a time, then ``clients`` at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "align_gym.cli", "serve-llm", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        while True:
            try:
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)

        def ask(i: int) -> int:
            body = {"model": "SmolLM2-135M-Instruct", "prompt": f"{PROMPT.format(EVENTS[i % len(EVENTS)])} ({i})",
                    "max_tokens": max_tokens, "temperature": 0, "stop": []}
            return httpx.post(f"{url}/completions", json=body, timeout=300).json()["usage"]["completion_tokens"]

        ask(0)  # warm-up
        start = time.perf_counter()
        alone = sum(ask(i) for i in range(requests))
        one_at_a_time = rate(alone, time.perf_counter() - start)
        def counters() -> list[float]:
            return [float(line.split()[1]) for line in httpx.get(f"http://127.0.0.1:{port}/metrics").text.splitlines()]

        before = counters()
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            together = sum(pool.map(ask, range(requests)))
        concurrent = rate(together, time.perf_counter() - start)
        batches, rows = (after - first for after, first in zip(counters(), before))
        print(f"serve-llm: {requests} concurrent requests ran in {batches:.0f} batches ({rows / batches:.1f} per batch)")
    finally:
        server.terminate()
        server.wait(10)
    return one_at_a_time, concurrent, concurrent / one_at_a_time


def shared_prefix_generation(client: TransformersClient, batches: int = 4, size: int = 8) -> tuple[float, float]:
    """Answers/s of ELLM's goal prompt under ``batches * size`` situations, decoded in batches of
    ``size``: the prompt prefix the batch shares run once, and run with every row."""
    from align_gym.llm_rewards.clients.decoding import decode, sample_rows
    from align_gym.llm_rewards.prompts import load_template

    template = load_template("ellm_goals")
    prompts = [template.render_chat(verbs="pick up, open, go to",
                                    state=f"You are in room {i}. You see a key, a door and {i % 5 + 1} boxes.")
               for i in range(batches * size)]
    rows = [row for ids in client.encode(prompts) for row in sample_rows(ids, 1, 48, 0.0)]
    rates = []
    for share in (True, False):
        decode(client.lm, client.tokenizer, rows[:size], share_prefix=share)  # warm-up
        start = time.perf_counter()
        for i in range(0, len(rows), size):
            decode(client.lm, client.tokenizer, rows[i:i + size], share_prefix=share)
        rates.append(rate(len(rows), time.perf_counter() - start))
    return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captions", type=int, default=256)
    args = parser.parse_args()
    texts = captions(args.captions)
    prompts = [PROMPT.format(t) for t in texts]

    client = TransformersClient("default")
    client.score(prompts[:4], [" yes"] * 4)  # warm-up
    start = time.perf_counter()
    for i in range(0, len(prompts), 32):
        client.score(prompts[i:i + 32], [" yes"] * len(prompts[i:i + 32]))
    batched = rate(len(prompts), time.perf_counter() - start)
    one = prompts[:64]
    start = time.perf_counter()
    for p in one:
        client.score([p], [" yes"])
    single = rate(len(one), time.perf_counter() - start)
    print(f"embedded model, scored captions/s: batched (32) {batched:8.1f}   one by one {single:8.1f}   "
          f"ratio {batched / single:5.1f}x")

    shared, unshared = shared_prefix_generation(client)
    print(f"embedded model, ELLM goal answers/s in batches of 8: shared prefix run once {shared:6.2f}   "
          f"with every row {unshared:6.2f}   ratio {shared / unshared:4.1f}x (target >= 1.3x)")

    with tempfile.TemporaryDirectory() as folder:
        cache = LLMCache(Path(folder) / "cache.sqlite")
        keys = [cache_key(backend="hf", model="m", template="bench", template_version=1, prompt=p,
                          params={"continuation": " yes"}) for p in prompts]
        for key, p in zip(keys, prompts):
            cache.put(key, [[-0.5]], backend="hf", model="m", template="bench", template_version=1, prompt=p,
                      params={"continuation": " yes"})
        rounds = max(1, 20_000 // len(keys))
        start = time.perf_counter()
        for _ in range(rounds):
            for i in range(0, len(keys), 256):
                cache.get_many(keys[i:i + 256])
        many = rate(rounds * len(keys), time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(max(1, rounds // 4)):
            for key in keys:
                cache.get(key)
        each = rate(max(1, rounds // 4) * len(keys), time.perf_counter() - start)
    print(f"cache hits/s: get_many (256) {many:10,.0f}   one at a time {each:10,.0f}   "
          f"ratio {many / each:5.1f}x   vs the model scoring them: {many / batched:,.0f}x faster")

    sandbox = measure_sandbox(20_000)
    print("sandbox calls/s: " + "   ".join(f"{k} {v:,.0f}" for k, v in sandbox.items()))

    alone, together, ratio = served_throughput()
    print(f"serve-llm completion tokens/s: 8 clients at once {together:7.1f}   one at a time {alone:7.1f}   "
          f"ratio {ratio:4.1f}x (target >= 3x)")

    for way, (seconds, memory) in worker_start().items():
        print(f"sandbox worker start from a process with torch and SB3 loaded, {way:<22} {seconds:5.2f} s  {memory:6.0f} MiB")


if __name__ == "__main__":
    main()
