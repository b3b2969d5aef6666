"""How fast are the web envs? In one run:

- steps/s of a random admissible-action policy on WebShop, WebForm and, as the baseline, TextQuest-
  medium (resets included);
- WebShop's reset time (drawing an instruction includes the search that checks it is solvable);
- the catalogue's build time (products and BM25 index) and search latency at 1,000 and 10,000
  products, against a plain scan that scores every product by the query words it holds.

    python benchmarks/web_speed.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import re
import time

import gymnasium as gym
import numpy as np

import align_gym  # noqa: F401
from align_gym.envs.web.catalogue import Catalogue


def steps_per_second(env_id: str, seconds: float) -> float:
    env = gym.make(env_id).unwrapped
    rng = np.random.default_rng(0)
    _, info = env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, info = env.step(info["valid_actions"][int(rng.integers(len(info["valid_actions"])))])
        steps += 1
        if terminated or truncated:
            _, info = env.reset()
    return steps / (time.perf_counter() - start)


def reset_ms(resets: int = 300) -> float:
    env = gym.make("Align/WebShop-v0").unwrapped
    start = time.perf_counter()
    for seed in range(resets):
        env.reset(seed=seed)
    return (time.perf_counter() - start) / resets * 1000


def scan(catalogue: Catalogue, query: str, limit: int = 50) -> list:
    """The baseline: every product scored by how many query words its text holds."""
    words = set(re.findall(r"\w+", query.lower()))
    scored = [(sum(w in words for w in re.findall(r"\w+", f"{p.title} {p.type} {' '.join(p.attributes)}".lower())), i)
              for i, p in enumerate(catalogue.products)]
    return [catalogue.products[i] for s, i in sorted(scored, reverse=True)[:limit] if s > 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    rates = {env_id: steps_per_second(env_id, args.seconds)
             for env_id in ("Align/WebShop-v0", "Align/WebForm-v0", "Align/TextQuest-medium-v0")}
    for env_id, rate in rates.items():
        print(f"{env_id:28s} {rate:10,.0f} steps/s ({rate / rates['Align/TextQuest-medium-v0']:.2f}x TextQuest-medium)")
    print(f"WebShop reset: {reset_ms():.2f} ms")
    rng = np.random.default_rng(0)
    for size in (1000, 10_000):
        start = time.perf_counter()
        catalogue = Catalogue(0, size)
        built = time.perf_counter() - start
        queries = [catalogue.instruction(rng).query for _ in range(50)]
        timings = {}
        for name, search in (("bm25", catalogue.search), ("scan", lambda q, c=catalogue: scan(c, q))):
            start = time.perf_counter()
            for query in queries:
                search(query)
            timings[name] = (time.perf_counter() - start) / len(queries) * 1000
        print(f"{size:6d} products: built in {built:.2f} s; search {timings['bm25']:.2f} ms (BM25) vs "
              f"{timings['scan']:.2f} ms (scan): {timings['scan'] / timings['bm25']:.1f}x")


if __name__ == "__main__":
    main()
