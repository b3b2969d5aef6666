"""``align-gym demo``: PPO on KeyDoor-8x8 with no shaping vs the reference potential.

Three seeds per shaping make a demo, not a claim: published numbers use the bench with at least 5.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .cell import Cell, run_cell

DEMO_ENV = "Align/KeyDoor-8x8-v0"
DEMO_SHAPINGS = ("none", "pbrs(potential=reference)")
DEMO_STEPS = 150_000
DEMO_PPO = {"n_steps": 128, "batch_size": 256, "n_epochs": 10, "ent_coef": 0.003, "learning_rate": 7e-4, "gamma": 0.99}
SUCCESS_THRESHOLD = 0.8


def _run_reporting(cell: Cell, progress: Any) -> list[dict[str, Any]]:
    return run_cell(cell, on_row=lambda row: progress.put((cell.key, row["step"])))


def steps_to_threshold(rows: list[dict[str, Any]], threshold: float = SUCCESS_THRESHOLD) -> int | None:
    """First eval step whose success rate reaches ``threshold``; None if none does."""
    return next((row["step"] for row in rows if row["success_rate"] >= threshold), None)


def summarise(results: dict[str, list[list[dict[str, Any]]]], budget: int) -> str:
    """A Markdown table: final true return and success rate (mean ± std over seeds), steps to 80%."""
    lines = ["| shaping | true return | success rate | steps to 80% success |", "|---|---|---|---|"]
    for shaping, runs in results.items():
        returns = [run[-1]["return_mean"] for run in runs]
        successes = [run[-1]["success_rate"] for run in runs]
        reached = [steps_to_threshold(run) for run in runs]
        steps = [s if s is not None else budget for s in reached]  # never reached counts as the budget
        n_reached = sum(s is not None for s in reached)
        lines.append(f"| {shaping} | {np.mean(returns):.3f} ± {np.std(returns):.3f} | "
                     f"{np.mean(successes):.2f} ± {np.std(successes):.2f} | "
                     f"{np.mean(steps):,.0f} ({n_reached}/{len(runs)} reached) |")
    return "\n".join(lines)


def plot_curves(results: dict[str, list[list[dict[str, Any]]]], path: Path, title: str) -> None:
    """Mean success rate over seeds against env steps, with the min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for shaping, runs in results.items():
        steps = [row["step"] for row in runs[0]]
        length = min(len(run) for run in runs)
        curves = np.array([[row["success_rate"] for row in run[:length]] for run in runs])
        ax.plot(steps[:length], curves.mean(0), label=shaping)
        ax.fill_between(steps[:length], curves.min(0), curves.max(0), alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel("success rate (task reward, deterministic policy)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_demo(out_dir: str | Path = "align_gym_demo", steps: int | None = None, seeds: int = 3,
             jobs: int | None = None) -> dict[str, list[list[dict[str, Any]]]]:
    """Run the demo grid, print its table and write ``curves.png`` and ``summary.md`` to ``out_dir``."""
    steps = steps or DEMO_STEPS
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cells = [Cell(DEMO_ENV, shaping, "ppo", seed, steps, eval_every=max(steps // 12, 1), hyperparams=DEMO_PPO)
             for shaping in DEMO_SHAPINGS for seed in range(seeds)]
    jobs = jobs or min(os.cpu_count() or 1, len(cells), 6)
    print(f"align-gym demo: PPO on {DEMO_ENV}, {len(cells)} runs of {steps:,} steps, {jobs} at a time")
    context = mp.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(jobs, mp_context=context) as pool:
        progress = manager.Queue()
        futures = {cell.key: pool.submit(_run_reporting, cell, progress) for cell in cells}
        done_steps = {cell.key: 0 for cell in cells}
        with tqdm(total=steps * len(cells), unit="step", unit_scale=True, desc="training") as bar:
            while not all(f.done() for f in futures.values()):
                try:
                    key, step = progress.get(timeout=0.5)
                except queue.Empty:
                    continue
                bar.update(step - done_steps[key])
                done_steps[key] = step
            bar.update(bar.total - bar.n)
        rows = {key: future.result() for key, future in futures.items()}
    results = {shaping: [rows[c.key] for c in cells if c.shaping == shaping] for shaping in DEMO_SHAPINGS}
    table = summarise(results, steps)
    plot_curves(results, out / "curves.png", f"PPO on {DEMO_ENV} ({seeds} seeds)")
    (out / "summary.md").write_text(f"# align-gym demo\n\nPPO on {DEMO_ENV}, {steps:,} steps, {seeds} seeds "
                                    "(a demo, not a claim). Scores from the task reward.\n\n" + table + "\n")
    print(table)
    print(f"\nwrote {out / 'curves.png'} and {out / 'summary.md'}")
    return results
