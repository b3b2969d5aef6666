#!/usr/bin/env bash
# The headline result: PPO with no shaping, the reference potential and the distance potential on
# KeyDoor-8x8 and PointMaze, 5 seeds, budgets chosen so that `none` does not saturate.
# Resumable: rerun to finish an interrupted run. Regenerate the table with `align-gym report`.
set -euo pipefail
out=docs/results/headline
shapings="none,pbrs(potential=reference),pbrs(potential=distance)"
align-gym bench --env Align/KeyDoor-8x8-v0 --shaping "$shapings" --agent ppo --seeds 5 \
    --steps 150000 --eval-episodes 20 --out "$out" --quiet
align-gym bench --env Align/PointMaze-v0 --shaping "$shapings" --agent ppo --seeds 5 \
    --steps 60000 --eval-episodes 20 --out "$out" --quiet
align-gym report "$out"
