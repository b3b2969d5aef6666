"""``align-gym report DIR``: ``summary.md`` and ``curves_<env>.png`` from a bench's ``results.jsonl``.

An entry pools the cells whose definitions (env, shaping, agent, budget, evaluation, settings:
:meth:`~align_gym.cell.Cell.definition`) agree in everything but the seed; cells of the same env,
shaping and agent that differ in anything else (two grids run into one folder) are separate
entries, labelled by what differs. Per entry and across seeds: the final true return and success
rate, the area under the return curve (its mean over the entry's own budget) and the steps to a
success threshold, each as an interquartile mean with a 95% stratified-bootstrap interval; the
probability of improving on ``none`` of the same definition. An entry is marked best only where
its interval clears every other's. Shapings that can change the optimal policy carry a mark;
failed cells are listed. Every number comes from the task reward.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import stats
from .bench import cell_failed, read_results
from .cell import definition_of

NON_INVARIANT = "‡"
MIN_SEEDS_FOR_BEST = 3


@dataclass
class Entry:
    """The runs (one per seed, each its rows by step) of one definition but the seed."""

    definition: dict[str, Any]
    runs: list[list[dict[str, Any]]]
    label: str = ""  # what tells it apart from the env's other entries of the same shaping and agent

    @property
    def env_id(self) -> str:
        return self.definition["env_id"]

    @property
    def shaping(self) -> str:
        return self.definition["shaping"]

    @property
    def agent(self) -> str:
        return self.definition["agent"]

    @property
    def name(self) -> str:
        return self.shaping + (f" [{self.label}]" if self.label else "")


def entries_of(finished: dict[str, list[dict[str, Any]]]) -> list[Entry]:
    """Successful cells pooled by definition, each labelled by the keys in which it differs from
    the other entries of its env (beyond shaping and agent)."""
    pools: dict[str, Entry] = {}
    for rows in finished.values():
        if cell_failed(rows):
            continue
        definition = {k: v for k, v in definition_of(rows[0]).items() if k != "seed"}
        key = json.dumps(definition, sort_keys=True)
        pools.setdefault(key, Entry(definition, [])).runs.append(sorted(rows, key=lambda r: r["step"]))
    entries = sorted(pools.values(), key=lambda e: json.dumps(e.definition, sort_keys=True))
    for entry in entries:
        entry.runs.sort(key=lambda rows: rows[0]["seed"])
    for env_id in {e.env_id for e in entries}:
        mine = [e for e in entries if e.env_id == env_id]
        keys = sorted({k for e in mine for k in e.definition} - {"env_id", "shaping", "agent"})
        differing = [k for k in keys if len({json.dumps(e.definition.get(k)) for e in mine}) > 1]
        for entry in mine:
            entry.label = ", ".join(f"{k}={entry.definition.get(k)}" for k in differing)
    return entries


def seed_scores(runs: list[list[dict[str, Any]]], threshold: float) -> dict[str, np.ndarray]:
    """Per-seed scores of one entry: final return and success, AUC, steps to threshold."""
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


def _baseline(entry: Entry, entries: list[Entry]) -> Entry | None:
    """The ``none`` entry with the same definition as ``entry`` but the shaping."""
    wanted = {**entry.definition, "shaping": "none"}
    return next((e for e in entries if e.definition == wanted), None)


def env_table(env_id: str, entries: list[Entry], threshold: float, reps: int) -> list[str]:
    mine = [e for e in entries if e.env_id == env_id]
    scores = {id(e): seed_scores(e.runs, threshold) for e in mine}
    columns = {"return": ("final return", 3), "success": ("final success", 2), "auc": ("AUC (return)", 3)}
    intervals = {col: {id(e): stats.iqm_interval({env_id: scores[id(e)][col]}, reps=reps) for e in mine} for col in columns}
    # With fewer than 3 seeds a bootstrap interval says nothing: mark no entry best.
    enough = min(len(e.runs) for e in mine) >= MIN_SEEDS_FOR_BEST
    best = {col: stats.clear_best(ivs) if enough else None for col, ivs in intervals.items()}
    header = ["shaping", "agent", "seeds"] + [name for name, _ in columns.values()] + [f"steps to {threshold:.0%} success", "P(better than none)"]
    lines = [f"## {env_id}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for entry in mine:
        own = scores[id(entry)]
        mark = "" if entry.runs[0][0]["invariant"] else " " + NON_INVARIANT
        cells = [entry.name + mark, entry.agent, str(len(entry.runs))]
        cells += [_cell_text(intervals[col][id(entry)], best[col] == id(entry), digits) for col, (_, digits) in columns.items()]
        steps = stats.iqm_interval({env_id: own["steps"]}, reps=reps)
        cells.append(f"{steps.estimate:,.0f} [{steps.low:,.0f}, {steps.high:,.0f}] ({int(own['reached'].sum())}/{len(own['reached'])} reached)")
        baseline = _baseline(entry, entries)
        if baseline is None or baseline is entry:
            cells.append("—")
        else:
            base = scores[id(baseline)]["return"]
            cells.append(stats.probability_of_improvement_interval({env_id: own["return"]}, {env_id: base}, reps=reps).format(2))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def aggregate_table(entries: list[Entry], envs: list[str], threshold: float, reps: int) -> list[str]:
    """IQM of the final return across every env, seeds resampled within each env."""
    by_method: dict[tuple[str, str], dict[str, np.ndarray]] = defaultdict(dict)
    for entry in entries:
        by_method[(entry.name, entry.agent)][entry.env_id] = seed_scores(entry.runs, threshold)["return"]
    complete = {k: v for k, v in by_method.items() if set(v) == set(envs)}
    if not complete:  # no (shaping, agent) ran on every env: nothing to pool
        return []
    intervals = {k: stats.iqm_interval(v, reps=reps) for k, v in complete.items()}
    enough = min(len(v) for scores in complete.values() for v in scores.values()) >= MIN_SEEDS_FOR_BEST
    best = stats.clear_best(intervals) if enough else None
    lines = ["## All envs (stratified)", "", "| shaping | agent | final return, IQM over envs and seeds |", "|---|---|---|"]
    for key, interval in intervals.items():
        lines.append(f"| {key[0]} | {key[1]} | {_cell_text(interval, best == key, 3)} |")
    return lines


def failed_table(finished: dict[str, list[dict[str, Any]]]) -> list[str]:
    """One line per failed cell: what it was, how far it got, the error's last line."""
    failed = sorted((rows[0] for rows in finished.values() if cell_failed(rows)),
                    key=lambda r: (r["env_id"], r["shaping"], r["agent"], r["seed"]))
    if not failed:
        return []
    lines = ["## Failed cells", "", f"{len(failed)} cell{'s' if len(failed) != 1 else ''} failed and "
             "count in no table above; `results.jsonl` holds each one's traceback, and a rerun of its "
             "grid tries it again.", "", "| env | shaping | agent | seed | step | error |", "|---|---|---|---|---|---|"]
    for row in failed:
        error = row["error"].strip().splitlines()[-1].replace("|", "\\|")
        lines.append(f"| {row['env_id']} | {row['shaping']} | {row['agent']} | {row['seed']} | {row['step']:,} | {error} |")
    return lines


def plot_env(env_id: str, entries: list[Entry], path: Path, reps: int) -> None:
    """IQM of the true return and of the success rate over seeds, with 95% bootstrap bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    mine = [e for e in entries if e.env_id == env_id]
    n_seeds = min(len(e.runs) for e in mine)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for entry in mine:
        length = min(len(r) for r in entry.runs)
        steps = [row["step"] for row in entry.runs[0][:length]]
        name = f"{entry.name} ({entry.agent})" + ("" if entry.runs[0][0]["invariant"] else f" {NON_INVARIANT}")
        for ax, key in zip(axes, ("return_mean", "success_rate")):
            values = np.array([[row[key] for row in r[:length]] for r in entry.runs])
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
    entries = entries_of(finished)
    if not entries:
        text = "\n".join(["# Benchmark summary", "", "No cell finished.", ""] + failed_table(finished))
        (out / "summary.md").write_text(text)
        return text
    envs = sorted({e.env_id for e in entries})
    n_seeds = min(len(e.runs) for e in entries)
    episodes = " or ".join(str(n) for n in sorted({e.definition["eval_episodes"] for e in entries}))
    lines = [
        "# Benchmark summary", "",
        f"Scores from the task reward only (`info[\"env_reward\"]`), deterministic policy, "
        f"{episodes} evaluation episodes per point. Each number is the interquartile "
        f"mean over seeds with its 95% stratified-bootstrap interval. "
        f"{NON_INVARIANT} marks a shaping that can change the optimal policy.",
        "",
        f"With {n_seeds} seed{'s' if n_seeds != 1 else ''} per entry the intervals are wide: read overlapping intervals as no "
        f"measured difference. An entry is in **bold** only where its interval clears every other's.",
        "",
    ]
    for env_id in envs:
        lines += env_table(env_id, entries, threshold, reps) + [""]
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", env_id)
        plot_env(env_id, entries, out / f"curves_{safe}.png", reps=max(reps // 4, 200))
        lines += [f"![{env_id}](curves_{safe}.png)", ""]
    aggregate = aggregate_table(entries, envs, threshold, reps) if len(envs) > 1 else []
    if aggregate:
        lines += aggregate + [""]
    failed = failed_table(finished)
    if failed:
        lines += failed + [""]
    text = "\n".join(lines)
    (out / "summary.md").write_text(text)
    return text
