"""What a shaping paid, for what, and when: reruns one finished bench cell with a recorder of every
training step's caption and reward terms, checks that the rerun's rows are the bench's (paired
cells rerun bit for bit, except where a module's answers arrive asynchronously), and prints the
shaping's term summed by caption and by stretch of training. Run from the repository root:

    python docs/results/intrinsic/paid.py --env Align/KeyDoor-16x16-v0 --seed 1000 \\
        --shaping "ellm(coef=0.1, llm='oracle(error=0)')" [--out paid.json]

The cell must be in ``docs/results/intrinsic/results.jsonl`` (``--results`` for another folder): its
definition (budget, evaluations, the agent's settings) is read from there.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback

from align_gym.bench import read_results
from align_gym.cell import Cell, run_cell


class PaidFor(BaseCallback):
    """Sums each reward term, the task reward and the step count by caption and by stretch of
    ``stretch`` training steps. Reads the infos only: it draws no random numbers."""

    def __init__(self, stretch: int):
        super().__init__()
        self.stretch = stretch
        self.by_caption: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.by_stretch: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))

    def _on_step(self) -> bool:
        start = (self.num_timesteps - 1) // self.stretch * self.stretch
        for info in self.locals["infos"]:
            for table in (self.by_caption[info.get("caption", "")], self.by_stretch[start]):
                table["steps"] += 1
                table["env_reward"] += float(info.get("env_reward", 0.0))
                for name, value in info.get("reward_terms", {}).items():
                    table[name] += float(value)
        return True


def find_cell(results: Path, env_id: str, shaping: str, seed: int) -> tuple[Cell, list[dict[str, Any]]]:
    for rows in read_results(results).values():
        first = rows[0]
        if (first["env_id"], first["shaping"], first["seed"]) == (env_id, shaping, seed) and first["status"] == "ok":
            hyper = {key[3:]: value for key, value in first.items() if key.startswith("hp.")}
            return Cell(env_id, shaping, first["agent"], seed, first["budget"], first["eval_every"],
                        first["eval_episodes"], first["n_envs"], hyper), rows
    raise SystemExit(f"no finished cell {env_id} / {shaping} / seed {seed} in {results}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", required=True)
    parser.add_argument("--shaping", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--results", type=Path, default=Path("docs/results/intrinsic"))
    parser.add_argument("--top", type=int, default=12, help="captions to print, by what they were paid")
    parser.add_argument("--out", type=Path, help="write the sums as JSON here")
    args = parser.parse_args()

    cell, bench_rows = find_cell(args.results, args.env, args.shaping, args.seed)
    recorder = PaidFor(cell.eval_every)
    rows = run_cell(cell, callbacks=[recorder])
    # Every field the rerun's rows hold but the wall time: the evaluations and the training statistics.
    same = len(rows) == len(bench_rows) and all(
        all(value == b.get(key) for key, value in a.items() if key != "wall_time") for a, b in zip(rows, bench_rows))
    print(f"{cell.env_id}, {cell.shaping}, seed {cell.seed}: the rerun's rows "
          f"{'equal the bench' if same else 'DIFFER from the bench'}'s (evaluations and training statistics)")

    terms = sorted({name for table in recorder.by_stretch.values() for name in table} - {"steps", "env_reward"})
    total = {name: sum(t[name] for t in recorder.by_caption.values()) for name in terms}
    for name in terms:
        print(f"\nterm {name}: {total[name]:.4g} paid over {cell.steps:,} steps; by caption "
              f"(the {args.top} paid most, absolute):")
        print("| caption | steps | paid | share of paid | per step | task reward |")
        print("|---|---|---|---|---|---|")
        ranked = sorted(recorder.by_caption.items(), key=lambda item: -abs(item[1][name]))
        for caption, table in ranked[:args.top]:
            share = table[name] / total[name] if total[name] else 0.0
            print(f"| {caption or '(empty)'} | {table['steps']:,.0f} | {table[name]:.4g} | {share:.2f} | "
                  f"{table[name] / table['steps']:.3g} | {table['env_reward']:.1f} |")
        print(f"\nterm {name} by stretch of training:")
        print("| steps | paid | per step | task reward |")
        print("|---|---|---|---|")
        for start, table in sorted(recorder.by_stretch.items()):
            print(f"| {start:,}-{start + cell.eval_every:,} | {table[name]:.4g} | {table[name] / table['steps']:.3g} | "
                  f"{table['env_reward']:.1f} |")
    if args.out:
        args.out.write_text(json.dumps({"cell": cell.definition(), "matches_bench": same,
                                        "by_caption": recorder.by_caption, "by_stretch": recorder.by_stretch},
                                       indent=1) + "\n")


if __name__ == "__main__":
    main()
