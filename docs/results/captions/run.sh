#!/usr/bin/env bash
# Distinct captions a random policy meets in 20,000 steps, before and after the event rule.
set -euo pipefail
python docs/results/captions/count.py 20000 Align/MiniHack-Room-5x5-v0 Align/MiniHack-Room-15x15-v0 \
    Align/MiniHack-KeyRoom-S5-v0 Align/MiniHack-KeyRoom-S15-v0 Align/MiniHack-MazeWalk-9x9-v0 \
    Align/MiniHack-MazeWalk-15x15-v0 Align/MiniHack-River-v0 Align/TextQuest-easy-v0 Align/TextQuest-medium-v0 \
    Align/TextQuest-hard-v0 > docs/results/captions/counts.txt
