#!/usr/bin/env bash
# Credit assignment on episodic tasks, 5 seeds each, scored on the task reward (the episode's sum):
# - episodic KeyDoorSubgoals with PPO, 300k steps: none, ircr (over the rollout's whole episodes, a
#   stated adaptation), rrd and rrd(unbiased) (64 episodes a model step), lare with hand-written
#   factors; and the dense KeyDoorSubgoals (the ceiling);
# - episodic Pendulum with SAC, 50k steps: none, ircr (over the replay buffer), rrd, rrd(unbiased)
#   (32 episodes a model step), lare with hand-written factors; and the dense Pendulum (the ceiling).
# First the embedded model's LaRe synthesis on both tasks (lare_embedded.py: its answers replay from
# lare_embedded/cache.sqlite). Resumable: rerun to finish an interrupted run (finished cells are
# skipped). Regenerate the tables with `align-gym report docs/results/credit`.
set -euo pipefail
out=docs/results/credit
jobs=${JOBS:-2}
python "$out/lare_embedded.py"
for grid in keydoor keydoor_dense pendulum pendulum_dense; do
    align-gym bench --config "$out/$grid.toml" --jobs "$jobs" --out "$out" --quiet
done
align-gym report "$out"
