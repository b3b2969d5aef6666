"""``align-gym report DIR``: ``summary.md``, ``verdicts.md`` and ``curves_<env>.png`` from a bench's
``results.jsonl``.

An entry pools the cells whose definitions (env, shaping, agent, budget, evaluation, settings,
bench protocol: :meth:`~align_gym.cell.Cell.definition`) agree in everything but the seed; cells
of the same env, shaping and agent that differ in anything else (two grids run into one folder,
two protocol versions) are separate entries, labelled by what differs, and are never pooled.

The per-env tables describe each entry (IQM over seeds with a 95% stratified-bootstrap interval;
steps to a success threshold as a median over seeds with k/n reached). The claims are the
verdicts: each entry against its baseline of the same definition but the shaping (``none``, and
any others asked for), seed by seed. Under the paired protocol both cells of a seed share their
env streams, initial weights and evaluation episodes, so the per-seed difference cancels the
seed's luck; the verdict comes from one rule on the paired interval (:data:`RULE`), stated with
the smallest effect the comparison could have detected, and a ``placebo`` shaping (zero-mean
noise, the bench's null) measures how often the rule cries wolf. Every number comes from the
task reward.
"""

from __future__ import annotations

import json
import re
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import stats
from .bench import cell_failed, read_results
from .cell import definition_of

NON_INVARIANT = "‡"
NEVER_PAID = "∅"
PLACEBO = "placebo"
HALF_SPLITS = 200
SCORES = {"return": "final return", "auc": "AUC of return", "success": "final success"}
DIGITS = {"return": 3, "auc": 3, "success": 2}
MODES = {"deterministic": "", "sampled": "_sampled"}  # evaluation mode -> suffix of its row fields
RULE = ('**Rule: better (or worse) when the 95% paired interval of the IQM difference excludes 0 '
        '(lies wholly above, or wholly below, it); otherwise "no measured difference".** (Protocol 1 rows: '
        'the same rule on the unpaired interval of IQM minus IQM.)')


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

    def by_seed(self) -> dict[int, list[dict[str, Any]]]:
        return {rows[0]["seed"]: rows for rows in self.runs}


def protocol_1_fields(row: dict[str, Any]) -> dict[str, Any]:
    """A row in today's fields. Protocol-1 ``action_ppo`` rows scored the sampled policy only, under
    the deterministic names: move those to the ``_sampled`` names, so no table or verdict reads
    them as argmax scores."""
    if row.get("protocol", 1) >= 2 or row.get("agent") != "action_ppo" or "return_mean_sampled" in row:
        return row
    moved = {f"{name}_sampled": row[name] for name in ("return_mean", "return_std", "success_rate") if name in row}
    return {k: v for k, v in row.items() if k not in ("return_mean", "return_std", "success_rate")} | moved


def entry_definition(row: dict[str, Any]) -> dict[str, Any]:
    """A row's cell definition without the seed, with its protocol (1 where the row predates the
    field): rows of different protocol versions then never meet in one entry or one pair."""
    definition = {k: v for k, v in definition_of(row).items() if k != "seed"}
    definition.setdefault("protocol", row.get("protocol", 1))
    return definition


def entries_of(finished: dict[str, list[dict[str, Any]]]) -> list[Entry]:
    """Successful cells pooled by definition, each labelled by the keys in which it differs from
    the other entries of its env (beyond shaping and agent)."""
    pools: dict[str, Entry] = {}
    for rows in finished.values():
        if cell_failed(rows):
            continue
        definition = entry_definition(rows[0])
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


def run_score(rows: list[dict[str, Any]], score: str, mode: str) -> float | None:
    """One seed's score: the final return or success, or the AUC of the return curve over the
    budget, in evaluation ``mode``; None where the rows lack that mode's fields (older rows)."""
    field = ("success_rate" if score == "success" else "return_mean") + MODES[mode]
    if score == "auc":
        if any(r.get(field) is None for r in rows):
            return None
        return stats.area_under_curve([r["step"] for r in rows], [r[field] for r in rows], rows[0]["budget"])
    value = rows[-1].get(field)
    return None if value is None else float(value)


def seed_scores(runs: list[list[dict[str, Any]]], score: str, mode: str) -> dict[int, float] | None:
    """Seed -> score of every run; None unless every run has it (a mode is all or nothing)."""
    scores: dict[int, float] = {}
    for rows in runs:
        value = run_score(rows, score, mode)
        if value is None:
            return None
        scores[rows[0]["seed"]] = value
    return scores


def reached_steps(runs: list[list[dict[str, Any]]], threshold: float, mode: str = "deterministic") -> list[int | None]:
    """Per seed, the first evaluation step within the budget whose success rate reaches
    ``threshold`` (None: never within the budget)."""
    field = "success_rate" + MODES[mode]
    return [stats.steps_to_threshold([r["step"] for r in rows], [r.get(field, 0.0) for r in rows], threshold,
                                     budget=rows[0]["budget"]) for rows in runs]


def never_paid(rows: list[dict[str, Any]]) -> bool | None:
    """Whether a shaped run's terms summed to 0 in every training episode (its final row's
    ``train_term_abs.*``, sums of each episode's |term|, all exactly 0): then it trained on the task
    reward alone (under paired cells, on `none`'s very streams). None (unknown) when the row
    carries no ``train_term_abs.*``; False for ``none``, which pays nothing by design."""
    if rows[0]["shaping"] == "none":
        return False
    totals = [v for k, v in rows[-1].items() if k.startswith("train_term_abs.")]
    if not totals:
        return None
    return all(v == 0 for v in totals)


def _seed(*parts: object) -> int:
    """A stable bootstrap seed per comparison: the report is reproducible, and comparisons do not
    all reuse one resampling."""
    return zlib.crc32("|".join(map(str, parts)).encode())


def _num(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    return text[1:] if re.fullmatch(r"-0\.0*", text) else text  # no "-0.00"


def format_interval(interval: stats.Interval, digits: int) -> str:
    """"0.005 [0.001, 0.027]": an estimate and its interval at `digits` decimals."""
    return f"{_num(interval.estimate, digits)} [{_num(interval.low, digits)}, {_num(interval.high, digits)}]"


@dataclass
class Comparison:
    """An entry against its baseline on one score in one evaluation mode, over the seeds both have."""

    entry: Entry
    baseline: Entry
    score: str
    mode: str
    seeds: list[int]
    differences: np.ndarray  # entry minus baseline, per common seed
    interval: stats.Interval | None  # IQM of the differences; None with too few seeds
    improvement: stats.Interval | None  # paired P(entry > baseline)
    never_paid: int  # common seeds whose entry run never paid
    paired: bool = True  # False for protocol-1 cells: IQM minus IQM, seeds resampled independently
    mde: float = float("nan")
    mde_source: str = "own spread"

    @property
    def verdict(self) -> str:
        return stats.verdict(self.interval, len(self.seeds))

    @property
    def is_placebo_check(self) -> bool:
        return is_placebo(self.entry.shaping) and self.baseline.shaping == "none"

    def sentence(self) -> str:
        """The verdict as one stable sentence, for READMEs to quote and tests to grep."""
        entry = self.entry
        label = f" [{entry.label}]" if entry.label else ""
        head = (f"{entry.env_id}, {entry.agent}{label}: `{entry.shaping}` vs `{self.baseline.shaping}`, "
                f"{SCORES[self.score]} ({self.mode}): ")
        n, digits = len(self.seeds), DIGITS[self.score]
        if self.interval is None or self.improvement is None:
            return head + f"too few seeds ({n} common seed{'s' if n != 1 else ''}; a verdict needs {stats.MIN_PAIRED_SEEDS})."
        mde = "n/a" if np.isnan(self.mde) else _num(self.mde, digits)
        what = f"IQM of {n} paired differences" if self.paired else f"IQM minus IQM over {n} unpaired seeds (protocol 1)"
        details = f"{what}; P(improvement) {format_interval(self.improvement, 2)}; MDE {mde}, {self.mde_source}"
        if self.never_paid:
            details += f"; {self.never_paid}/{n} seeds never paid"
        iv = self.interval
        if self.verdict == stats.BETTER:
            return head + f"better by {format_interval(iv, digits)} ({details})."
        if self.verdict == stats.WORSE:
            drop = stats.Interval(-iv.estimate, -iv.high, -iv.low)
            return head + f"worse by {format_interval(drop, digits)} ({details})."
        return head + f"no measured difference ({format_interval(iv, digits)}; {details})."


def is_placebo(shaping: str) -> bool:
    return shaping.split("(")[0].strip() == PLACEBO


def compare(entry: Entry, baseline: Entry, score: str, mode: str, reps: int) -> Comparison | None:
    """``entry`` against ``baseline`` on the seeds both ran; None where either lacks the mode."""
    x, y = seed_scores(entry.runs, score, mode), seed_scores(baseline.runs, score, mode)
    if x is None or y is None:
        return None
    seeds = sorted(set(x) & set(y))
    differences = np.array([x[s] - y[s] for s in seeds], dtype=np.float64)
    runs = entry.by_seed()
    unpaid = sum(bool(never_paid(runs[s])) for s in seeds)
    if len(seeds) < stats.MIN_PAIRED_SEEDS:
        return Comparison(entry, baseline, score, mode, seeds, differences, None, None, unpaid)
    key = _seed(entry.env_id, entry.agent, entry.name, baseline.shaping, score, mode)
    xs, ys = {entry.env_id: np.array([x[s] for s in seeds])}, {entry.env_id: np.array([y[s] for s in seeds])}
    if not is_paired(entry):  # protocol 1: the two cells of a seed share no stream, so compare the samples
        interval = stats.unpaired_difference(xs, ys, reps=reps, seed=key)
        improvement = stats.probability_of_improvement_interval(xs, ys, reps=reps, seed=key)
        return Comparison(entry, baseline, score, mode, seeds, differences, interval, improvement, unpaid, paired=False)
    interval = stats.paired_difference(xs, ys, reps=reps, seed=key)
    improvement = stats.paired_probability_of_improvement_interval(xs, ys, reps=reps, seed=key)
    return Comparison(entry, baseline, score, mode, seeds, differences, interval, improvement, unpaid)


def is_paired(entry: Entry) -> bool:
    """Whether the entry's cells are paired with their baselines' (bench protocol 2 and later)."""
    return entry.definition.get("protocol", 1) >= 2


def _same_but_shaping(entry: Entry, shaping: str, entries: list[Entry]) -> Entry | None:
    wanted = {**entry.definition, "shaping": shaping}
    return next((e for e in entries if e.definition == wanted), None)


def comparisons_of(entries: list[Entry], baselines: Sequence[str], reps: int) -> list[Comparison]:
    """Every entry against each baseline of the same definition but the shaping, on every score
    and mode; a baseline is not compared again with one listed before it (no mirrored pairs).
    Each comparison's MDE uses the spread of ``placebo`` vs ``none`` of its env, agent,
    definition, score and mode where the grid has one, else its own."""
    out: list[Comparison] = []
    for i, shaping in enumerate(baselines):
        for entry in entries:
            if entry.shaping == shaping or entry.shaping in baselines[:i]:
                continue
            baseline = _same_but_shaping(entry, shaping, entries)
            if baseline is None:
                continue
            for score in SCORES:
                for mode in MODES:
                    comparison = compare(entry, baseline, score, mode, reps)
                    if comparison is not None:
                        out.append(comparison)
    nulls = [c for c in out if c.is_placebo_check]
    for c in out:
        null = next((p for p in nulls if p.score == c.score and p.mode == c.mode and p.baseline.definition
                     == {**c.entry.definition, "shaping": "none"}), None)
        # a placebo that never moved off none (a task no seed solves) estimates no spread: its MDE
        # would be 0 whatever the noise, so the comparison's own spread stands in
        if null is not None and len(null.differences) >= 2 and np.ptp(null.differences) > 0:
            c.mde, c.mde_source = stats.minimum_detectable_effect(null.differences, n=len(c.seeds)), "placebo's spread"
        elif len(c.differences) >= 2:
            c.mde, c.mde_source = stats.minimum_detectable_effect(c.differences), "own spread"
    return out


def _share(k: int, n: int) -> str:
    return f"{k} of {n} ({k / n:.0%})" if n else "0 of 0"


def noise_floor(comparisons: list[Comparison], reps: int) -> list[str]:
    """The rule's measured false-positive rate: the share of ``placebo``-vs-``none`` verdicts that
    are not "no measured difference", at all the common seeds and over random half-splits."""
    nulls = [c for c in comparisons if c.is_placebo_check]
    if not nulls:
        return [f"Noise floor: not measured here (no `{PLACEBO}` cells beside `none` cells of the same "
                f"definition); add the `{PLACEBO}` shaping to the grid to measure the rule's false-positive rate."]
    # A score on which every pair ties (sampled success of 1 everywhere) can give no false positive:
    # counting it would pad the rate.
    judged = [c for c in nulls if c.verdict != stats.TOO_FEW and np.any(c.differences != 0)]
    tied = sum(c.verdict != stats.TOO_FEW and not np.any(c.differences != 0) for c in nulls)
    groups = len({(c.entry.env_id, c.entry.agent, c.entry.label) for c in nulls})
    modes = len({c.mode for c in nulls})
    where = (f"{groups} env/agent group{'s' if groups != 1 else ''} x {len(SCORES)} scores x "
             f"{modes} evaluation mode{'s' if modes != 1 else ''}")
    false = sum(c.verdict != stats.NO_DIFFERENCE for c in judged)
    lines = [f"Noise floor: `{PLACEBO}` vs `none` (zero-mean noise against nothing: every verdict other than "
             f"\"no measured difference\" is a false positive): {_share(false, len(judged))} verdicts are not "
             f"\"no measured difference\", over {where}" + (f", leaving out {tied} whose pairs all tie" if tied else "")
             + (f" ({len(nulls) - len(judged) - tied} with too few seeds)" if len(nulls) - len(judged) - tied else "")
             + ". The verdicts of one grid are correlated (scores and modes of the same runs): read the rate as "
             "an estimate from few independent comparisons."]
    splittable = [c for c in judged if len(c.seeds) >= 2 * stats.MIN_PAIRED_SEEDS]
    if not splittable:
        lines.append(f"Half-split rate: not measured (it needs at least {2 * stats.MIN_PAIRED_SEEDS} common seeds).")
        return lines
    verdicts = [v for c in splittable for v in stats.half_split_verdicts(
        c.differences, splits=HALF_SPLITS, reps=reps, seed=_seed("half", c.entry.env_id, c.entry.agent, c.score, c.mode))]
    halves = sorted({f"{len(c.seeds) // 2} of {len(c.seeds)}" for c in splittable})
    lines.append(f"Half-split rate: over {HALF_SPLITS} random half-splits of the seeds ({', '.join(halves)} seeds) of "
                 f"each of {len(splittable)} `{PLACEBO}` comparisons, {_share(sum(v != stats.NO_DIFFERENCE for v in verdicts), len(verdicts))} "
                 "verdicts are not \"no measured difference\" (resamplings of one grid: the rule's stability at half "
                 "the seeds as much as its false-positive rate).")
    return lines


def rule_lines(baselines: Sequence[str]) -> list[str]:
    """How to read a verdict: the rule, what is paired, what the MDE says."""
    others = "".join(f", `{b}`" for b in baselines if b != "none")
    return [
        RULE, "",
        f"Each entry is compared with its baseline (`none`{others}) of the same definition but the shaping "
        "(same env, agent, budget, settings and bench protocol), seed by seed over the seeds both have: the "
        "difference is entry minus baseline for each seed, the interval a 95% bootstrap one resampling those "
        "pairs (seeds within each env). Under the paired protocol (2) the two cells of a seed share env streams, "
        "initial weights and evaluation episodes. P(improvement) is the share of seeds where the entry beats its "
        "baseline (ties half), with its interval. Fewer than "
        f"{stats.MIN_PAIRED_SEEDS} common seeds: no verdict (\"too few seeds\"). \"worse by\" gives the drop "
        "(baseline minus entry) and its interval.",
        "",
        "MDE: the minimum detectable effect, the smallest true difference a paired t-test would find with 80% "
        "power at a two-sided 5%, at the comparison's number of seeds n: (t_0.975 + t_0.8, n - 1 degrees of "
        f"freedom) * sd(paired differences) / sqrt(n): the scale of effect the grid resolves. The sd is that of `{PLACEBO}` vs `none` of the same env, agent, score and mode where the grid "
        "has it and its differences vary (\"placebo's spread\"), else the comparison's own (\"own spread\": also where "
        "the placebo never moved off `none`, as on a task no seed solves). An effect smaller than the MDE "
        "can hide in a \"no measured difference\". With few seeds the bootstrap interval is narrower than its "
        "nominal 95%: the noise floor below is the rule's measured false-positive rate.",
    ]


def verdict_block(comparisons: list[Comparison], entries: list[Entry], baselines: Sequence[str], reps: int) -> list[str]:
    """The rule, the noise floor and one sentence per comparison, score and mode."""
    lines = rule_lines(baselines) + [""] + noise_floor(comparisons, reps) + [""]
    lines += [f"- {c.sentence()}" for c in comparisons]
    shapings = {e.shaping for e in entries}
    for i, shaping in enumerate(baselines):
        if shaping not in shapings:
            lines.append(f"- baseline `{shaping}`: no entry has this shaping, so nothing is compared with it.")
            continue
        for entry in entries:
            if entry.shaping == shaping or entry.shaping in baselines[:i]:
                continue
            others = [e for e in entries if e.shaping == shaping and e.env_id == entry.env_id and e.agent == entry.agent]
            if others and _same_but_shaping(entry, shaping, entries) is None:
                lines.append(f"- {entry.env_id}, {entry.agent}: `{entry.name}` has no `{shaping}` of the same "
                             "definition (all but the shaping): not compared.")
    if not comparisons:
        lines.append("- No comparison: no entry has a baseline of the same definition.")
    return lines


def _never_paid_cell(entry: Entry) -> str:
    if entry.shaping == "none":
        return "—"
    flags = [never_paid(rows) for rows in entry.runs]
    if all(f is None for f in flags):
        return "?"
    count = sum(bool(f) for f in flags)
    return f"{count}/{len(flags)}" + (f" {NEVER_PAID}" if count else "")


def _steps_cell(entry: Entry, threshold: float) -> str:
    if any("success_rate" not in row for rows in entry.runs for row in rows):
        return "—"  # no deterministic evaluation (protocol-1 action_ppo rows)
    reached = reached_steps(entry.runs, threshold)
    median = stats.median_steps(reached)
    k = sum(s is not None for s in reached)
    return f"{'not reached' if median is None else f'{median:,.0f}'} ({k}/{len(reached)} reached)"


def env_table(env_id: str, entries: list[Entry], threshold: float, reps: int) -> list[str]:
    """One row per entry of ``env_id``: what each entry scored, every statistic named in its header."""
    mine = [e for e in entries if e.env_id == env_id]
    header = ["shaping", "agent", "seeds", "final return, det. (IQM [95% CI])", "final return, sampled (IQM [95% CI])",
              "final success, det. / sampled (IQM [95% CI])", "AUC of return, det. (IQM [95% CI])",
              f"steps to {threshold:.0%} success, det. (median over seeds; k/n reached)", f"never paid {NEVER_PAID} (seeds)"]
    lines = [f"## {env_id}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def described(entry: Entry, score: str, mode: str) -> str:
        scores = seed_scores(entry.runs, score, mode)
        if scores is None:
            return "—"
        interval = stats.iqm_interval({env_id: np.array(list(scores.values()))}, reps=reps,
                                      seed=_seed(env_id, entry.agent, entry.name, score, mode))
        return format_interval(interval, DIGITS[score])

    for entry in mine:
        mark = "" if entry.runs[0][0]["invariant"] else " " + NON_INVARIANT
        lines.append("| " + " | ".join([
            entry.name + mark, entry.agent, str(len(entry.runs)),
            described(entry, "return", "deterministic"), described(entry, "return", "sampled"),
            f"{described(entry, 'success', 'deterministic')} / {described(entry, 'success', 'sampled')}",
            described(entry, "auc", "deterministic"), _steps_cell(entry, threshold), _never_paid_cell(entry),
        ]) + " |")
    return lines


def aggregate_table(entries: list[Entry], envs: list[str], reps: int) -> list[str]:
    """IQM of the final deterministic return across every env, seeds resampled within each env;
    entries of different protocol versions are never pooled."""
    by_method: dict[tuple[str, str, int], dict[str, np.ndarray]] = defaultdict(dict)
    for entry in entries:
        scores = seed_scores(entry.runs, "return", "deterministic")
        if scores is not None:
            by_method[(entry.name, entry.agent, entry.definition["protocol"])][entry.env_id] = np.array(list(scores.values()))
    complete = {k: v for k, v in by_method.items() if set(v) == set(envs)}
    if not complete:  # no (shaping, agent) ran on every env: nothing to pool
        return []
    lines = ["## All envs (stratified)", "", "| shaping | agent | protocol | final return, det. (IQM over envs and seeds [95% CI]) |",
             "|---|---|---|---|"]
    for (name, agent, protocol), scores in complete.items():
        lines.append(f"| {name} | {agent} | {protocol} | {format_interval(stats.iqm_interval(scores, reps=reps), 3)} |")
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
    """IQM of the true return and of the success rate over seeds, with 95% bootstrap bands;
    the sampled evaluation, where the rows have it, as a dashed line of the same colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    mine = [e for e in entries if e.env_id == env_id]
    n_seeds = min(len(e.runs) for e in mine)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    dashed = False
    for entry in mine:
        length = min(len(r) for r in entry.runs)
        steps = [row["step"] for row in entry.runs[0][:length]]
        name = f"{entry.name} ({entry.agent})" + ("" if entry.runs[0][0]["invariant"] else f" {NON_INVARIANT}")
        for ax, key in zip(axes, ("return_mean", "success_rate")):
            if any(key not in row for r in entry.runs for row in r[:length]):  # sampled only (old action_ppo rows)
                key, name = key + MODES["sampled"], name + " (sampled)"
            values = np.array([[row[key] for row in r[:length]] for r in entry.runs])
            bands = [stats.iqm_interval({env_id: values[:, t]}, reps=reps) for t in range(length)]
            (line,) = ax.plot(steps, [b.estimate for b in bands], label=name)
            ax.fill_between(steps, [b.low for b in bands], [b.high for b in bands], alpha=0.2, color=line.get_color())
            sampled = key + MODES["sampled"]
            if all(row.get(sampled) is not None for r in entry.runs for row in r[:length]):
                values = np.array([[row[sampled] for row in r[:length]] for r in entry.runs])
                ax.plot(steps, [stats.iqm(values[:, t]) for t in range(length)], linestyle="--", color=line.get_color())
                dashed = True
    for ax, title in zip(axes, ("true return (task reward)", "success rate")):
        ax.set_xlabel("env steps")
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.set_title(f"{title}: IQM, 95% CI" + (" (dashed: sampled, IQM)" if dashed else ""))
    axes[1].set_ylim(-0.02, 1.02)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{env_id} ({n_seeds} seed{'s' if n_seeds != 1 else ''})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def intro(entries: list[Entry], baselines: Sequence[str]) -> list[str]:
    """What the numbers are, the marks, the protocols, and the verdict rule."""
    episodes = " or ".join(str(n) for n in sorted({e.definition["eval_episodes"] for e in entries}))
    protocols = sorted({e.definition["protocol"] for e in entries})
    lines = [
        "# Benchmark summary", "",
        f"Scores from the task reward only (`info[\"env_reward\"]`), {episodes} evaluation episodes per point, "
        "in two evaluation modes: deterministic (det., the policy's most likely action) and sampled (actions "
        "drawn from the policy with a seeded generator; \"—\" where the rows predate it). Table cells are the "
        "interquartile mean (IQM) over seeds with its 95% stratified-bootstrap interval, except the steps to a "
        "success threshold: their median over seeds, where a seed that never reached the threshold within its "
        "budget counts as never (not as the budget), so the median is \"not reached\" once half the seeds or "
        "more never reach it; k/n counts the seeds that did.", "",
        f"{NON_INVARIANT} marks a shaping that can change the optimal policy. {NEVER_PAID} never paid: in those "
        "seeds the shaping's terms summed to 0 in every training episode, so the run trained on the task reward "
        "alone (under paired cells, `none`'s own run), not the method (\"?\": the rows do not record it).", "",
    ]
    if protocols != [2]:
        lines += [f"Bench protocols here: {', '.join(map(str, protocols))}. Protocol 1 cells share no stream "
                  "with their baseline's, so their verdicts compare IQM minus IQM with each side's seeds "
                  "resampled independently (the same rule on that interval); protocol 2 cells are paired "
                  "(common random numbers). Entries of different protocols are never pooled or compared. "
                  "Protocol 1 `action_ppo` rows scored the sampled policy only: they are shown as sampled.", ""]
    return lines + [RULE, "", "The tables describe; the claims are the paired verdicts under **Verdicts** below.", ""]


def write_report(out_dir: str | Path, threshold: float | None = None, reps: int = 2000,
                 baselines: Sequence[str] | None = None) -> str:
    """Write ``summary.md``, ``verdicts.md`` and one ``curves_<env>.png`` per env; return the
    summary's text. Every entry is compared with ``none`` and with each of ``baselines``."""
    out = Path(out_dir)
    finished = {cell: [protocol_1_fields(row) for row in rows] for cell, rows in read_results(out).items()}
    if not finished:
        raise FileNotFoundError(f"no finished cells in {out / 'results.jsonl'}: run `align-gym bench --out {out}` first")
    grid_file = out / "grid.json"
    grid = json.loads(grid_file.read_text()) if grid_file.exists() else {}
    threshold = threshold if threshold is not None else grid.get("success_threshold", 0.8)
    bases = list(dict.fromkeys(["none", *(baselines or [])]))
    entries = entries_of(finished)
    if not entries:
        text = "\n".join(["# Benchmark summary", "", "No cell finished.", ""] + failed_table(finished))
        (out / "summary.md").write_text(text)
        (out / "verdicts.md").write_text("# Verdicts\n\nNo cell finished.\n")
        return text
    envs = sorted({e.env_id for e in entries})
    lines = intro(entries, bases)
    for env_id in envs:
        lines += env_table(env_id, entries, threshold, reps) + [""]
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", env_id)
        plot_env(env_id, entries, out / f"curves_{safe}.png", reps=max(reps // 4, 200))
        lines += [f"![{env_id}](curves_{safe}.png)", ""]
    from .error_sweep import plot_error_sweep, sweep_table, sweeps

    for env_id in envs:  # full reps: the sweep's markers and table show the verdicts below
        name = "error_" + re.sub(r"[^A-Za-z0-9._-]+", "_", env_id)
        panels = sweeps(env_id, entries, reps=reps)
        if plot_error_sweep(env_id, entries, panels, out / f"{name}.png"):
            lines += [f"![{name}]({name}.png)", ""] + sweep_table(panels)
    block = verdict_block(comparisons_of(entries, bases, reps), entries, bases, reps)
    lines += ["## Verdicts", ""] + block + [""]
    (out / "verdicts.md").write_text("\n".join(["# Verdicts", ""] + block + [""]))
    aggregate = aggregate_table(entries, envs, reps) if len(envs) > 1 else []
    if aggregate:
        lines += aggregate + [""]
    failed = failed_table(finished)
    if failed:
        lines += failed + [""]
    text = "\n".join(lines)
    (out / "summary.md").write_text(text)
    return text
