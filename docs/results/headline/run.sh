#!/usr/bin/env bash
# The headline result: PPO with no shaping, the reference potential and the distance potential on
# KeyDoor-8x8 and PointMaze, 10 seeds, budgets chosen so that `none` does not saturate. `placebo`
# (tiny zero-mean noise, no information) is the null row: it measures the verdict rule's false
# positives. Cells are paired (bench protocol 2): every shaping of a seed meets the same streams.
# Resumable: rerun to finish an interrupted run. Regenerate the table with `align-gym report`.
set -euo pipefail
out=docs/results/headline
shapings="none,placebo,pbrs(potential=reference),pbrs(potential=distance)"
align-gym bench --env Align/KeyDoor-8x8-v0 --shaping "$shapings" --agent ppo --seeds 10 \
    --steps 150000 --eval-episodes 20 --out "$out" --quiet
align-gym bench --env Align/PointMaze-v0 --shaping "$shapings" --agent ppo --seeds 10 \
    --steps 60000 --eval-episodes 20 --out "$out" --quiet
align-gym report "$out"
