#!/usr/bin/env bash
# Shaping on the text tasks' SB3 views: MaskablePPO, 10 seeds, 150k steps, scored on the task reward.
# Envs: TextQuest-medium-Choice (5 rooms, a locked door whose key is in a container; a random masked
# policy succeeds in 16% of episodes) and ToolCalc-Choice (3-step word problems, 16 menu slots;
# random masked: 2.5%). Rows: no shaping; placebo (tiny zero-mean noise: the null row); count on
# the symbolic state (the content of info["state_hash"]); potential-based shaping with each task's
# reference potential; RND on the hashed observation; ELLM with goals from the embedded
# SmolLM2-135M, asked under each episode's own quest about what the agent sees (info["task"] and
# info["surroundings"]) and matched against event captions (a second run into the same folder:
# its cells cost several times the others').
# Cells are paired (bench protocol 2): every shaping of a seed meets the same streams.
# Resumable: rerun to finish an interrupted run. Regenerate the table with `align-gym report`.
set -euo pipefail
out=docs/results/text
for shapings in "none,placebo,count(coef=0.01),pbrs(potential=reference),rnd(coef=0.01)" "ellm(coef=0.1)"; do
    align-gym bench --env Align/TextQuest-medium-Choice-v0,Align/ToolCalc-Choice-v0 --shaping "$shapings" \
        --agent maskable_ppo --seeds 10 --steps 150000 --eval-every 15000 --eval-episodes 20 --out "$out" --quiet
done
align-gym report "$out"
