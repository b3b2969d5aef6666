"""``align-gym report DIR``: ``summary.md`` and ``curves_<env>.png`` from a bench's ``results.jsonl``.

Per (env, shaping, agent) and across seeds: the final true return and success rate, the area
under the return curve (its mean over training) and the steps to a success threshold, each as an
interquartile mean with a 95% stratified-bootstrap interval; the probability of improving on
``none``. An entry is marked best only where its interval clears every other's. Shapings that can
change the optimal policy carry a mark. Every number comes from the task reward.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from . import stats
from .bench import read_results

NON_INVARIANT = "‡"
MIN_SEEDS_FOR_BEST = 3


def _groups(finished: dict[str, list[dict[str, Any]]]) -> dict[tuple[str, str, str], list[list[dict[str, Any]]]]:
    groups: dict[tuple[str, str, str], list[list[dict[str, Any]]]] = defaultdict(list)
    for rows in finished.values():
        rows = sorted(rows, key=lambda r: r["step"])
        groups[(rows[0]["env_id"], rows[0]["shaping"], rows[0]["agent"])].append(rows)
    for runs in groups.values():
        runs.sort(key=lambda rows: rows[0]["seed"])
    return dict(groups)


def seed_scores(runs: list[list[dict[str, Any]]], threshold: float) -> dict[str, np.ndarray]:
    """Per-seed scores of one (env, shaping, agent): final return and success, AUC, steps to threshold."""
    budget = runs[0][0]["budget"]
    final_return = [r[-1]["return_mean"] for r in runs]
    final_success = [r[-1]["success_rate"] for r in runs]
    auc = [stats.area_under_curve([x["step"] for x in r], [x["return_mean"] for x in r], budget) for r in runs]
    reached = [stats.steps_to_threshold([x["step"] for x in r], [x["success_rate"] for x in r], threshold) for r in runs]
    return {
        "return": np.array(final_return), "success": np.array(final_success), "auc": np.array(auc),
        # never reached counts as the budget; the last eval may land a rollout past it
        "steps": np.array([budget if s is None else min(s, budget) for s in reached], dtype=float),
        "reached": np.array([s is not None for s in reached]),
    }


def _cell_text(interval: stats.Interval, best: bool, digits: int = 2) -> str:
    text = interval.format(digits)
    return f"**{text}**" if best else text


def env_table(env_id: str, groups: dict, threshold: float, reps: int) -> list[str]:
    entries = {(s, a): seed_scores(runs, threshold) for (e, s, a), runs in groups.items() if e == env_id}
    label = {key: f"{key[0]}{'' if groups[(env_id, *key)][0][0]['invariant'] else ' ' + NON_INVARIANT}" for key in entries}
    columns = {"return": ("final return", 3), "success": ("final success", 2), "auc": ("AUC (return)", 3)}
    intervals = {col: {k: stats.iqm_interval({env_id: v[col]}, reps=reps) for k, v in entries.items()} for col in columns}
    # With fewer than 3 seeds a bootstrap interval says nothing: mark no entry best.
    enough = min(len(v["return"]) for v in entries.values()) >= MIN_SEEDS_FOR_BEST
    best = {col: stats.clear_best(ivs) if enough else None for col, ivs in intervals.items()}
    header = ["shaping", "agent", "seeds"] + [name for name, _ in columns.values()] + [f"steps to {threshold:.0%} success", "P(better than none)"]
    lines = [f"## {env_id}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, scores in entries.items():
        cells = [label[key], key[1], str(len(scores["return"]))]
        cells += [_cell_text(intervals[col][key], best[col] == key, digits) for col, (_, digits) in columns.items()]
        steps = stats.iqm_interval({env_id: scores["steps"]}, reps=reps)
        cells.append(f"{steps.estimate:,.0f} [{steps.low:,.0f}, {steps.high:,.0f}] ({int(scores['reached'].sum())}/{len(scores['reached'])} reached)")
        baseline = entries.get(("none", key[1]))
        if baseline is None or key[0] == "none":
            cells.append("—")
        else:
            cells.append(stats.probability_of_improvement_interval({env_id: scores["return"]}, {env_id: baseline["return"]}, reps=reps).format(2))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def aggregate_table(groups: dict, envs: list[str], threshold: float, reps: int) -> list[str]:
    """IQM of the final return across every env, seeds resampled within each env."""
    by_method: dict[tuple[str, str], dict[str, np.ndarray]] = defaultdict(dict)
    for (env_id, shaping, agent), runs in groups.items():
        by_method[(shaping, agent)][env_id] = seed_scores(runs, threshold)["return"]
    complete = {k: v for k, v in by_method.items() if set(v) == set(envs)}
    intervals = {k: stats.iqm_interval(v, reps=reps) for k, v in complete.items()}
    enough = min(len(v) for scores in complete.values() for v in scores.values()) >= MIN_SEEDS_FOR_BEST if complete else False
    best = stats.clear_best(intervals) if enough else None
    lines = ["## All envs (stratified)", "", "| shaping | agent | final return, IQM over envs and seeds |", "|---|---|---|"]
    for key, interval in intervals.items():
        lines.append(f"| {key[0]} | {key[1]} | {_cell_text(interval, best == key, 3)} |")
    return lines


def plot_env(env_id: str, groups: dict, path: Path, reps: int) -> None:
    """IQM of the true return and of the success rate over seeds, with 95% bootstrap bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    n_seeds = min(len(runs) for (e, _, _), runs in groups.items() if e == env_id)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for (e, shaping, agent), runs in sorted(groups.items()):
        if e != env_id:
            continue
        length = min(len(r) for r in runs)
        steps = [row["step"] for row in runs[0][:length]]
        name = f"{shaping} ({agent})" + ("" if runs[0][0]["invariant"] else f" {NON_INVARIANT}")
        for ax, key in zip(axes, ("return_mean", "success_rate")):
            values = np.array([[row[key] for row in r[:length]] for r in runs])
            bands = [stats.iqm_interval({env_id: values[:, t]}, reps=reps) for t in range(length)]
            ax.plot(steps, [b.estimate for b in bands], label=name)
            ax.fill_between(steps, [b.low for b in bands], [b.high for b in bands], alpha=0.2)
    for ax, title in zip(axes, ("true return (task reward)", "success rate")):
        ax.set_xlabel("env steps")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.set_title(f"{title}: IQM, 95% CI")
    axes[1].set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{env_id} ({n_seeds} seed{'s' if n_seeds != 1 else ''})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out_dir: str | Path, threshold: float | None = None, reps: int = 2000) -> str:
    """Write ``summary.md`` and one ``curves_<env>.png`` per env; return the summary's text."""
    out = Path(out_dir)
    finished = read_results(out)
    if not finished:
        raise FileNotFoundError(f"no finished cells in {out / 'results.jsonl'}: run `align-gym bench --out {out}` first")
    grid_file = out / "grid.json"
    grid = json.loads(grid_file.read_text()) if grid_file.exists() else {}
    threshold = threshold if threshold is not None else grid.get("success_threshold", 0.8)
    groups = _groups(finished)
    envs = sorted({key[0] for key in groups})
    n_seeds = min(len(runs) for runs in groups.values())
    lines = [
        "# Benchmark summary", "",
        f"Scores from the task reward only (`info[\"env_reward\"]`), deterministic policy, "
        f"{grid.get('eval_episodes', '?')} evaluation episodes per point. Each number is the interquartile "
        f"mean over seeds with its 95% stratified-bootstrap interval. "
        f"{NON_INVARIANT} marks a shaping that can change the optimal policy.",
        "",
        f"With {n_seeds} seed{'s' if n_seeds != 1 else ''} per entry the intervals are wide: read overlapping intervals as no "
        f"measured difference. An entry is in **bold** only where its interval clears every other's.",
        "",
    ]
    for env_id in envs:
        lines += env_table(env_id, groups, threshold, reps) + [""]
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", env_id)
        plot_env(env_id, groups, out / f"curves_{safe}.png", reps=max(reps // 4, 200))
        lines += [f"![{env_id}](curves_{safe}.png)", ""]
    if len(envs) > 1:
        lines += aggregate_table(groups, envs, threshold, reps) + [""]
    text = "\n".join(lines)
    (out / "summary.md").write_text(text)
    return text
