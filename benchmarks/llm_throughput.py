"""LLM layer throughput, each figure against a peer measured in the same run.

1. Cache: hit lookups/s, batched (``get_many`` of 256 keys) vs one key at a time, and against
   the embedded model scoring the same captions (what a hit saves).
2. Embedded model (SmolLM2-135M-Instruct, CPU): scored captions/s, 32 per forward pass vs one
   per pass.
3. Sandbox: calls/s of an LLM-written potential, batched vs one per round trip vs a direct call
   (see ``benchmarks/sandbox_throughput.py``).

    python benchmarks/llm_throughput.py [--captions 256]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from align_gym.llm_rewards.cache import LLMCache, cache_key
from align_gym.llm_rewards.clients.transformers_backend import TransformersClient

sys.path.insert(0, str(Path(__file__).parent))
from sandbox_throughput import measure as measure_sandbox  # noqa: E402

PROMPT = "Task: pick up the key, open the door, reach the goal.\nEvent: {}\nDoes this event help? Answer:"
EVENTS = ["You pick up the key.", "You bump into the wall.", "You unlock the door with the key.", "You move left.",
          "The door is locked.", "You reach the goal.", "You step onto the key.", "There is nothing here to open."]


def captions(n: int) -> list[str]:
    return [f"{EVENTS[i % len(EVENTS)]} (step {i})" for i in range(n)]


def rate(count: int, seconds: float) -> float:
    return count / max(seconds, 1e-9)


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


if __name__ == "__main__":
    main()
