#!/usr/bin/env bash
# Reward search on KeyDoor-8x8 and PointMaze. First the embedded SmolLM2-135M writes candidates
# (2 iterations x 4 samples, 1 repair each); it writes no valid code, and the run records why. Then
# the same search over five hand-written candidates per env (candidates/<env>/: a good potential,
# plausible but misleading ones, a constant, a broken one), as a person with code from a stronger
# model would run it: each trained on search seeds 0-1 (60k steps on KeyDoor-8x8 and 40k on
# PointMaze: at 20k no candidate earned any task return on either), the best by task return
# compared with none and the env's reference potential on fresh seeds 100-109 (150k steps, paired
# cells: bench protocol 2), all
# scored on the task reward. Resumable: rerun to finish (LLM calls come from the cache, finished
# cells are skipped).
set -euo pipefail
out=docs/results/reward_search
align-gym reward-search --env Align/KeyDoor-8x8-v0 --llm hf:default --iterations 2 --samples 4 --out "$out/KeyDoor-llm" \
    || echo "the embedded model's search found no valid candidate (see $out/KeyDoor-llm/summary.json)"
for env in KeyDoor PointMaze; do
    id=Align/$env-v0 steps=40000
    [ "$env" = KeyDoor ] && id=Align/KeyDoor-8x8-v0 steps=60000
    align-gym reward-search --env "$id" --candidates "$out/candidates/$env" --steps "$steps" --search-seeds 0,1 \
        --final-steps 150000 --fresh-seeds 100,101,102,103,104,105,106,107,108,109 --out "$out/$env"
done
