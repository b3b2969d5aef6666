#!/usr/bin/env bash
# Credit assignment on episodic tasks, 5 seeds each, scored on the task reward (the episode's sum):
# - episodic KeyDoorSubgoals with PPO, 300k steps: none, ircr (over the rollout's whole episodes, a
#   stated adaptation), rrd and rrd(unbiased) (64 episodes a model step), lare with hand-written
#   factors, calm with the oracle annotator (the embedded model's annotations never parse: see
#   README.md); and the dense KeyDoorSubgoals (the ceiling);
# - episodic Pendulum with SAC, 50k steps: none, ircr (over the replay buffer), rrd, rrd(unbiased)
#   (32 episodes a model step), lare with hand-written factors; and the dense Pendulum (the ceiling).
# First the embedded model's LaRe synthesis on both tasks (lare_embedded.py: its answers replay from
# lare_embedded/cache.sqlite), and the judge check of CALM's step question with the embedded model.
# Resumable: rerun to finish an interrupted run (finished cells are skipped). Regenerate the tables
# with `align-gym report docs/results/credit`.
set -euo pipefail
out=docs/results/credit
jobs=${JOBS:-2}
python "$out/lare_embedded.py"
align-gym llm judge-check --llm hf:default --template calm_step --env Align/KeyDoorSubgoals-v0 --per-class 50 \
    --json "$out/judge_check_calm.json"
for grid in keydoor keydoor_dense pendulum pendulum_dense; do
    align-gym bench --config "$out/$grid.toml" --jobs "$jobs" --out "$out" --quiet
done
align-gym report "$out"
