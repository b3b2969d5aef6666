"""What does redistribution cost the agent? Training steps/s of SB3 agents with each credit method
installed (``install_credit``), as a ratio against the same agent on the episodic reward alone
(``none``), in the same run, interleaved so that machine load hits every row alike:

- PPO on 8 episodic KeyDoorSubgoals envs (``n_steps`` 128): the rollout is relabelled and its
  advantages recomputed at each rollout's end, after the method's ``fit_rounds`` model steps;
- SAC on one episodic Pendulum env: each minibatch is relabelled after one model step.

The settings are the bench's (``docs/results/credit/*.toml``): RRD and LaRe with 64 episodes a model
step on KeyDoor and 32 on Pendulum, LaRe with the hand-written factors (one sandbox round trip per
vector step).

    python benchmarks/credit_overhead.py [--ppo-steps 20480] [--sac-steps 3000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import align_gym  # noqa: F401
from align_gym.agents import install_credit, make_vec_env
from align_gym.hyperparams import hyperparams_for

KEYDOOR, PENDULUM = "Align/KeyDoorSubgoals-Episodic-v0", "Align/Pendulum-Episodic-v0"
PPO_ROWS = ["none", "ircr", "rrd(episodes=64)", "lare(code='docs/results/credit/latent/keydoor.py', episodes=64)",
            "calm(llm=oracle)"]
SAC_ROWS = ["none", "ircr", "rrd(episodes=32)", "lare(code='docs/results/credit/latent/pendulum.py', episodes=32)"]


def steps_per_second(env_id: str, agent: str, shaping: str, steps: int, n_envs: int, **overrides) -> float:
    from stable_baselines3 import PPO, SAC

    settings = {**hyperparams_for(env_id, agent), **overrides}
    venv = make_vec_env(env_id, n_envs=n_envs, shaping=shaping, gamma=settings["gamma"], seed=0)
    model = {"ppo": PPO, "sac": SAC}[agent]("MlpPolicy", venv, seed=0, device="cpu", **settings)
    callbacks = install_credit(model)
    start = time.perf_counter()
    model.learn(steps, callback=callbacks)
    elapsed = time.perf_counter() - start
    venv.close()
    return steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ppo-steps", type=int, default=20480)
    parser.add_argument("--sac-steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = [("ppo", KEYDOOR, row, args.ppo_steps, 8, {}) for row in PPO_ROWS]
    cases += [("sac", PENDULUM, row, args.sac_steps, 1,
               {"learning_rate": 1e-3, "policy_kwargs": {"net_arch": [64, 64]}}) for row in SAC_ROWS]
    speeds: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for agent, env_id, row, steps, n_envs, overrides in cases:
            speeds.setdefault((agent, row), []).append(steps_per_second(env_id, agent, row, steps, n_envs, **overrides))
    print("| agent | shaping | steps/s | ratio to none |\n|---|---|---|---|")
    for (agent, row), values in speeds.items():
        base = np.median(speeds[(agent, "none")])
        print(f"| {agent} | {row} | {np.median(values):,.0f} | {np.median(values) / base:.2f} |")


if __name__ == "__main__":
    main()
