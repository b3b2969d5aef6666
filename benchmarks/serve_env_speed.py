"""What does the OpenEnv door cost? Steps/s of a random admissible-action policy, in one run:

- in-process: the env under the same shaping, through :class:`~align_gym.agents.session.EnvSession`
  (what the TRL door runs);
- through ``align-gym serve-env`` (a separate process on 127.0.0.1) with OpenEnv's own
  ``GenericEnvClient``, 1 session and then 8 sessions at once (total steps/s over all sessions).

Each loop resets at episode ends, so resets count. On a 2-core machine the client and the server
share the cores; the server steps each session in its own thread, so 8 sessions gain from
overlapping network waits, not from more cores.

    python benchmarks/serve_env_speed.py [--env Align/TextQuest-medium-v0] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
from openenv.core import GenericEnvClient

from align_gym.agents.session import EnvSession

SHAPING = "pbrs(potential=reference)"


def in_process(env_id: str, seconds: float) -> float:
    session = EnvSession(env_id, SHAPING, seed=0)
    rng = np.random.default_rng(0)
    turn = session.reset()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        turn = session.step(turn.valid_actions[int(rng.integers(len(turn.valid_actions)))])
        steps += 1
        if turn.done:
            turn = session.reset()
    session.close()
    return steps / (time.perf_counter() - start)


async def one_client(url: str, seed: int, deadline: float) -> int:
    rng = np.random.default_rng(seed)
    async with GenericEnvClient(base_url=url) as client:
        result = await client.reset(seed=seed)
        steps = 0
        while time.perf_counter() < deadline:
            valid = result.observation["valid_actions"]
            result = await client.step({"action": valid[int(rng.integers(len(valid)))]})
            steps += 1
            if result.done:
                result = await client.reset()
        return steps


async def through_server(url: str, sessions: int, seconds: float) -> float:
    start = time.perf_counter()
    steps = await asyncio.gather(*(one_client(url, seed, start + seconds) for seed in range(sessions)))
    return sum(steps) / (time.perf_counter() - start)


def start_server(env_id: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "align_gym.cli", "serve-env", "--env", env_id, "--shaping", SHAPING,
                                "--max-concurrent", "8", "--port", str(port)], stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", action="append", help="env ids (default: TextQuest-medium and ToolCalc)")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    for env_id in args.env or ["Align/TextQuest-medium-v0", "Align/ToolCalc-v0"]:
        local = in_process(env_id, args.seconds)
        process, url = start_server(env_id)
        try:
            asyncio.run(through_server(url, 1, 0.5))  # warm up
            one = asyncio.run(through_server(url, 1, args.seconds))
            eight = asyncio.run(through_server(url, 8, args.seconds))
        finally:
            process.terminate()
            process.wait(10)
        print(f"{env_id} (shaping {SHAPING})")
        print(f"  in-process             {local:10,.0f} steps/s")
        print(f"  server, 1 session      {one:10,.0f} steps/s  ({local / one:.0f}x slower than in-process)")
        print(f"  server, 8 sessions     {eight:10,.0f} steps/s  ({eight / one:.1f}x one session)", flush=True)


if __name__ == "__main__":
    main()
