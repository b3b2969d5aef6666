#!/usr/bin/env bash
# Token-level LLM agents on the easiest TextQuest, scored on the task reward (info["env_reward"]):
# 1. textquest.toml: action-PPO with the tiny model, 5 seeds, 6,144 env steps a cell, none vs
#    pbrs(potential=reference) vs count(scope=episode) at two weights: 20 cells, two at a time.
# 2. embedded.toml: the embedded SmolLM2-135M-Instruct fully fine-tuned by action-PPO, one seed,
#    2,048 env steps, on one core.
# README.md states the time each took.
# Resumable: rerun to finish an interrupted run (finished cells are skipped). Regenerate the tables
# with `align-gym report docs/results/token_agents` (and `.../embedded`).
set -euo pipefail
out=docs/results/token_agents
align-gym bench --config "$out/textquest.toml" --jobs "${JOBS:-2}" --out "$out" --quiet
align-gym report "$out"
align-gym bench --config "$out/embedded.toml" --jobs 1 --out "$out/embedded" --quiet
align-gym report "$out/embedded"
