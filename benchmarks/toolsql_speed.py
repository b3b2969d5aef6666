"""What do ToolSQL's query limits cost? Steps/s on the normal workload, against a peer in the same run.

The workload is text_speed.py's: a random policy over ``info["valid_actions"]``, resets included
(each writes the episode's database and runs its three menu queries). The peers:

- ``guarded``: ToolSQL as shipped: value and statement length capped, sorts and temporary tables in
  memory under the heap limit, and the watchdog thread that interrupts a query at its time limit;
- ``unguarded``: the same env with the connection opened and queries run as before issue 23 (no
  length caps, SQLite's default temporary storage, a progress handler that checks the deadline
  every 1,000 steps). The heap limit is process-wide, so once the guarded env has set it, the
  unguarded one runs under it too; it costs nothing until it is reached;
- ``--baseline FILE`` adds a third: another version of ``envs/tools/toolsql.py`` (e.g.
  ``git show <commit>:envs/tools/toolsql.py > /tmp/toolsql_before.py``), for a before/after figure
  that includes every other change to the module.

Rounds alternate between the peers, so a busy disk or CPU hits each alike; the ratio is the median
over rounds of the two peers' rates in that round (each peer's best round is printed too). Also
printed: the time of one query step on each peer (the guards' cost per query).

    python benchmarks/toolsql_speed.py [--seconds 1.5] [--rounds 6] [--baseline FILE]
"""

from __future__ import annotations

import argparse
import importlib.util
import sqlite3
import time

import numpy as np
from text_speed import random_play_rate  # benchmarks/ is the running script's folder

import align_gym  # noqa: F401
from align_gym.envs.tools import toolsql
from align_gym.envs.tools.calls import CallError, format_call


class UnguardedToolSQL(toolsql.ToolSQLEnv):
    """ToolSQL with the connection and the query runner it had before its limits (the peer)."""

    def _open_read_only(self) -> sqlite3.Connection:
        connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        connection.execute("PRAGMA query_only = ON")
        connection.set_authorizer(toolsql._authorise)
        return connection

    def _run(self, sql: str) -> tuple[list[str], list[tuple], bool]:
        deadline = time.monotonic() + toolsql.TIME_LIMIT
        self._connection.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
        try:
            cursor = self._connection.execute(sql)
            rows = cursor.fetchmany(toolsql.MAX_ROWS + 1)
        except sqlite3.DatabaseError as error:
            raise CallError(f"SQL error: {str(error).rstrip('.')}.") from None
        columns = [d[0] for d in cursor.description or []]
        return columns, rows[:toolsql.MAX_ROWS], len(rows) > toolsql.MAX_ROWS


def baseline_class(path: str) -> type:
    """The ToolSQL env class of another version of the module (loaded inside the package, so its
    relative imports resolve)."""
    spec = importlib.util.spec_from_file_location("align_gym.envs.tools.toolsql_baseline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ToolSQLEnv


def steps_per_second(env_class: type, seconds: float, seed: int = 0) -> float:
    return random_play_rate(env_class(), seconds, seed)  # text_speed.py's workload


def query_microseconds(peers: dict[str, type], batches: int = 30, batch: int = 100) -> dict[str, float]:
    """Each peer's median time of one step of the solving query (already run, so its result is
    known), over batches that alternate between the peers."""
    envs = {name: env_class() for name, env_class in peers.items()}
    times: dict[str, list[float]] = {name: [] for name in peers}
    for env in envs.values():
        env.reset(seed=0)
    for _ in range(batches):
        for name, env in envs.items():
            call = format_call("query", {"sql": env.solving_sql})
            start = time.perf_counter()
            for _ in range(batch):
                env.step(call)
                env._steps = 0  # stay in the episode: only the query is timed
            times[name].append((time.perf_counter() - start) / batch * 1e6)
    for env in envs.values():
        env.close()
    return {name: float(np.median(values)) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--baseline", help="another version of envs/tools/toolsql.py to compare with")
    args = parser.parse_args()
    peers = {"guarded": toolsql.ToolSQLEnv, "unguarded": UnguardedToolSQL}
    if args.baseline:
        peers["baseline"] = baseline_class(args.baseline)
    for env_class in peers.values():
        steps_per_second(env_class, 0.2)  # warm up
    rates: dict[str, list[float]] = {name: [] for name in peers}
    for round_ in range(args.rounds):
        for name, env_class in peers.items():
            rates[name].append(steps_per_second(env_class, args.seconds, seed=round_))
    query_us = query_microseconds(peers)
    for name in peers:
        print(f"{name:10s} {max(rates[name]):8,.0f} steps/s (best of {args.rounds})   "
              f"one query step {query_us[name]:6.0f} us (median)")

    def ratio(name: str) -> float:
        return float(np.median([g / other for g, other in zip(rates["guarded"], rates[name])]))

    print(f"\nguarded / unguarded: {ratio('unguarded'):.2f} (median over rounds; target: at least 0.90)")
    if args.baseline:
        print(f"guarded / baseline:  {ratio('baseline'):.2f}")


if __name__ == "__main__":
    main()
