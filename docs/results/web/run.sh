#!/usr/bin/env bash
# Shaping on WebShop's SB3 view: MaskablePPO, 10 seeds, 100k steps, scored on the task reward
# (WebShop's score on buying). Env: WebShop-Choice (1,000 generated products, BM25 search, 24 action
# slots over the page's clicks and a fixed set of searches: the instruction's phrase and one per
# product type). Rows: no shaping; placebo (tiny zero-mean noise: the null row); count on the symbolic state (the content of info["state_hash"]).
# Reference rows (the scripted shopper; a random masked policy) come from reference.py.
# Cells are paired (bench protocol 2): every shaping of a seed meets the same streams.
# Resumable: rerun to finish an interrupted run. Regenerate the table with `align-gym report`.
set -euo pipefail
out=docs/results/web
align-gym bench --env Align/WebShop-Choice-v0 --shaping "none,placebo,count(coef=0.01)" \
    --agent maskable_ppo --seeds 10 --steps 100000 --eval-every 10000 --eval-episodes 20 --out "$out" --quiet
align-gym report "$out"
python "$out/reference.py" > "$out/reference.md"
