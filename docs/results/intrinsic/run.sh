#!/usr/bin/env bash
# Intrinsic rewards on Align/KeyDoor-16x16-v0 (300k steps) and Align/MiniHack-KeyRoom-S5-v0 (200k
# steps, where plain PPO reaches a success rate of 1 at about 150k): PPO, 5 seeds, scored on the
# task reward.
# Rows: no shaping; the classic bonuses (count on the symbolic state, RND, E3B); the LLM-feedback
# methods with the embedded SmolLM2-135M (ELLM; ONI retrieval and classification; Motif with
# preferences read from log-probabilities, 500 pairs over 5,000 random-policy steps); and ONI and
# Motif with the oracle annotator (the env's privileged state).
# Resumable: rerun to finish an interrupted run. Regenerate the table with `align-gym report`.
set -euo pipefail
out=docs/results/intrinsic
classic="none,count(coef=0.01),rnd(coef=0.01),e3b(coef=0.001, normalize=true)"
llm="ellm(coef=0.1),oni(variant=retrieval),oni(variant=classification),motif(preference=logprob)"
oracle="oni(llm=oracle),motif(llm=oracle)"
align-gym bench --env Align/KeyDoor-16x16-v0 --shaping "$classic,$oracle,$llm" --agent ppo --seeds 5 \
    --steps 300000 --eval-every 30000 --eval-episodes 10 --out "$out" --quiet
align-gym bench --env Align/MiniHack-KeyRoom-S5-v0 --shaping "$classic,$oracle,$llm" --agent ppo --seeds 5 \
    --steps 200000 --eval-every 20000 --eval-episodes 10 --out "$out" --quiet
align-gym report "$out"
