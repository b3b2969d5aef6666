"""Sandboxed potential calls/s: one call per state vs batches of states, against a direct call.

The same small potential (distance to a goal in a dict state) is evaluated on ``n`` states three
ways: called directly in this process (the peer: no sandbox at all), through the sandbox one
state per round trip (``f(state)``), and through the sandbox in batches (``f.batch(states)``,
256 states per round trip by default). Each rate is the best of ``repeats`` runs; the worker's
start-up time is reported separately and not counted in any rate.

    python benchmarks/sandbox_throughput.py [--n 20000] [--batch-size 256] [--repeats 3]

From another script: ``from sandbox_throughput import measure; measure(20_000)``.
"""

from __future__ import annotations

import argparse
import math
import random
import time

from align_gym.llm_rewards.sandbox import load_function

POTENTIAL = '''
import math

def potential(state):
    dx = state["goal_x"] - state["x"]
    dy = state["goal_y"] - state["y"]
    bonus = 0.5 if state["has_key"] else 0.0
    return bonus - math.sqrt(dx * dx + dy * dy)
'''


def make_states(n: int, seed: int = 0) -> list[dict[str, float | bool]]:
    rng = random.Random(seed)
    return [{"x": rng.uniform(0, 10), "y": rng.uniform(0, 10), "goal_x": 8.0, "goal_y": 3.0,
             "has_key": rng.random() < 0.5} for _ in range(n)]


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else math.inf


def measure(n: int, batch_size: int = 256, repeats: int = 3) -> dict[str, float]:
    """Evaluate the potential on ``n`` states each way; return rates in states per second.

    Keys: ``direct_per_s`` (unsandboxed peer), ``sandbox_single_per_s`` (one round trip per
    state), ``sandbox_batched_per_s`` (``batch_size`` states per round trip),
    ``batched_over_single`` and ``direct_over_batched`` (ratios), ``single_call_us`` (mean round
    trip of one call), ``startup_s`` (worker start-up, not in the rates) and ``batch_size``.
    """
    if n < 1 or batch_size < 1 or repeats < 1:
        raise ValueError("n, batch_size and repeats must be >= 1")
    states = make_states(n)
    namespace: dict[str, object] = {}
    exec(POTENTIAL, namespace)
    direct = namespace["potential"]

    def best(run) -> float:
        return min(run() for _ in range(repeats))

    def time_direct() -> float:
        start = time.perf_counter()
        for state in states:
            direct(state)
        return time.perf_counter() - start

    with load_function(POTENTIAL, "potential", returns="float") as f:
        start = time.perf_counter()
        f.start()
        startup = time.perf_counter() - start

        def time_single() -> float:
            start = time.perf_counter()
            for state in states:
                f(state)
            return time.perf_counter() - start

        def time_batched() -> float:
            start = time.perf_counter()
            for i in range(0, n, batch_size):
                f.batch(states[i:i + batch_size])
            return time.perf_counter() - start

        expected = [direct(s) for s in states[:batch_size]]
        assert f.batch(states[:batch_size]) == expected, "sandboxed and direct results differ"
        single, batched = best(time_single), best(time_batched)
    direct_s = best(time_direct)
    result = {
        "direct_per_s": _rate(n, direct_s),
        "sandbox_single_per_s": _rate(n, single),
        "sandbox_batched_per_s": _rate(n, batched),
        "single_call_us": single / n * 1e6,
        "startup_s": startup,
        "batch_size": float(batch_size),
    }
    result["batched_over_single"] = result["sandbox_batched_per_s"] / result["sandbox_single_per_s"]
    result["direct_over_batched"] = result["direct_per_s"] / result["sandbox_batched_per_s"]
    return result


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="states evaluated each way")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    r = measure(args.n, args.batch_size, args.repeats)
    print(f"states per way: {args.n}, best of {args.repeats}; worker start-up {r['startup_s']:.2f} s")
    print(f"  direct (unsandboxed)        {r['direct_per_s']:>12,.0f} calls/s")
    print(f"  sandbox, one per call       {r['sandbox_single_per_s']:>12,.0f} calls/s"
          f"   ({r['single_call_us']:.0f} us per round trip)")
    print(f"  sandbox, batches of {args.batch_size:<5}   {r['sandbox_batched_per_s']:>12,.0f} calls/s")
    print(f"  batched / one per call: {r['batched_over_single']:.1f}x; "
          f"direct / batched: {r['direct_over_batched']:.1f}x")
    return r


if __name__ == "__main__":
    main()
