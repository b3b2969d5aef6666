#!/usr/bin/env bash
# Intrinsic rewards on Align/KeyDoor-16x16-v0: PPO with no shaping and the classic bonuses (count on
# the symbolic state, RND, E3B), 5 seeds, 300k steps. The LLM-feedback rows (ellm, motif, oni and
# their oracle versions) and the MiniHack task join this folder as they are built.
# Resumable: rerun to finish an interrupted run. Regenerate the table with `align-gym report`.
set -euo pipefail
out=docs/results/intrinsic
shapings="none,count(coef=0.01),rnd(coef=0.01),e3b(coef=0.001, normalize=true)"
align-gym bench --env Align/KeyDoor-16x16-v0 --shaping "$shapings" --agent ppo --seeds 5 \
    --steps 300000 --eval-every 30000 --eval-episodes 10 --out "$out" --quiet
align-gym report "$out"
