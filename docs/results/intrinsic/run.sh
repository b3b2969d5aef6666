#!/usr/bin/env bash
# Intrinsic rewards, and LLM feedback of known quality: PPO, paired cells (bench protocol 2), scored
# on the task reward.
# - Align/KeyDoor-16x16-v0: 10 seeds, 300k steps. Rows: none; placebo (the null row); the classic
#   bonuses at their papers' coefficients: count on the symbolic state (beta 0.05, Bellemare et al.
#   2016), RND (intrinsic weight 1 to extrinsic 2 over its own return normalisation, Burda et al.
#   2018), E3B (weight 1 over a running std, ridge 0.1: the E3B code's MiniHack setting); and ELLM,
#   ONI (classification) and Motif, each with an oracle LLM (the env's privileged state) wrong at
#   the rate p = 0, 0.1, 0.3, 0.5 (flip: a wrong answer) and p = 0.3 (positive: "yes, helpful"
#   whatever the truth).
# - Align/MiniHack-KeyRoom-S15-v0 (plain PPO reached no success in 200k steps on tuning seeds 0-1):
#   5 seeds, 200k steps. Rows: none, placebo, count, and the three LLM methods at p = 0 and 0.3.
# No embedded-model rows: their nulls are on record in git history (the table this one replaces).
# Stages run in order of what a verdict needs first (each task's baselines and p = 0, then p = 0.3,
# the classic bonuses, the rest of the sweep), each resumable: rerun to finish an interrupted run;
# finished cells are skipped. `align-gym report` writes the tables, the verdicts and the
# error-sweep figures (error_<env>.png).
set -euo pipefail
out=docs/results/intrinsic
classic="none,placebo,count(coef=0.05)"
llm() {  # the three LLM methods with the oracle $1
    echo "ellm(coef=0.1, llm='$1'),oni(variant=classification, llm='$1'),motif(llm='$1')"
}
keydoor() {
    align-gym bench --env Align/KeyDoor-16x16-v0 --shaping "$1" --agent ppo --seeds 10 \
        --steps 300000 --eval-every 30000 --eval-episodes 10 --out "$out" --quiet
}
minihack() {
    align-gym bench --env Align/MiniHack-KeyRoom-S15-v0 --shaping "$1" --agent ppo --seeds 5 \
        --steps 200000 --eval-every 20000 --eval-episodes 10 --out "$out" --quiet
}
keydoor "$classic,$(llm 'oracle(error=0)')"
minihack "$classic,$(llm 'oracle(error=0)')"
keydoor "$(llm 'oracle(error=0.3)')"
minihack "$(llm 'oracle(error=0.3)')"
keydoor "rnd(coef=0.5),e3b(coef=1.0, normalize=true)"
keydoor "$(llm 'oracle(error=0.1)'),$(llm 'oracle(error=0.5)'),$(llm 'oracle(error=0.3, mode=positive)')"
align-gym report "$out"
