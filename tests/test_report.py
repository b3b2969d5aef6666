"""``write_report`` on synthetic results files in the bench's format: paired verdicts, the noise
floor, budget honesty, the never-paid flag and both evaluation modes."""

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from align_gym.cli import main
from align_gym.report import write_report

ENV = "Align/KeyDoor-8x8-v0"
BUDGET = 1000
STEPS = [0, 250, 500, 750, 1000]
REPS = 300  # bootstrap replicates: enough for the verdicts below, fast enough for a unit test


def cell_rows(shaping: str, seed: int, final: float, *, sampled: float | None = None, success: list[float] | None = None,
              steps: list[int] | None = None, protocol: int | None = 2, terms_abs: dict[str, float] | None = None,
              invariant: bool = True, env_id: str = ENV) -> list[dict]:
    """One cell's rows as the bench writes them: the return climbs linearly to ``final``."""
    steps = steps or STEPS
    success = success or [0.0] * len(steps)
    definition = {"env_id": env_id, "shaping": shaping, "agent": "ppo", "seed": seed, "budget": BUDGET,
                  "eval_every": 250, "eval_episodes": 10, "n_envs": 8, "hp.gamma": 0.99}
    if protocol is not None:
        definition["protocol"] = protocol
    key = hashlib.sha1(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:16]
    rows = []
    for i, step in enumerate(steps):
        fraction = i / (len(steps) - 1)
        row = {"step": step, "return_mean": final * fraction, "return_std": 0.1, "success_rate": success[i],
               "train_true_return": 0.0, "train_shaped_return": 0.0, **definition, "status": "ok", "cell": key,
               "wall_time": 1.0, "invariant": invariant}
        if sampled is not None:
            row.update(return_mean_sampled=sampled * fraction, return_std_sampled=0.1, success_rate_sampled=success[i] / 2)
        if terms_abs is not None and shaping != "none":
            row.update({f"train_term_abs.{k}": v * fraction for k, v in terms_abs.items()})
        rows.append(row)
    return rows


def write_results(folder: Path, cells: list[list[dict]]) -> Path:
    """``results.jsonl`` as :func:`align_gym.bench.run_grid` writes it: a cell's rows, then its
    ``done`` marker."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "results.jsonl").open("w") as f:
        for rows in cells:
            for row in rows:
                f.write(json.dumps(row) + "\n")
            f.write(json.dumps({"cell": rows[0]["cell"], "done": True, "n_rows": len(rows)}) + "\n")
    return folder


def verdict_lines(text: str, shaping: str, baseline: str = "none") -> list[str]:
    return [line for line in text.splitlines() if f"`{shaping}` vs `{baseline}`" in line]


@pytest.fixture(scope="module")
def paired_grid(tmp_path_factory) -> tuple[Path, str]:
    """Ten seeds of none, a clear gain, a clear loss, a tiny gain under a large per-seed offset,
    and the placebo (no change but independent noise)."""
    rng = np.random.default_rng(0)
    seeds = list(range(1000, 1010))
    luck = dict(zip(seeds, rng.normal(scale=1.0, size=10)))  # what a seed's streams give every shaping
    cells = []
    for seed in seeds:
        base = 2.0 + luck[seed]
        cells.append(cell_rows("none", seed, base, sampled=base - 0.5))
        cells.append(cell_rows("count", seed, base + 1.0 + rng.normal(scale=0.1), sampled=base + 0.5,
                               terms_abs={"count": 12.0}))
        cells.append(cell_rows("penalty", seed, base - 1.0 + rng.normal(scale=0.1), sampled=base - 1.5,
                               terms_abs={"penalty": 3.0}))
        cells.append(cell_rows("tiny", seed, base + 0.05 + rng.normal(scale=0.005), sampled=base - 0.45 + rng.normal(scale=0.005),
                               terms_abs={"tiny": 1.0}))
        cells.append(cell_rows("placebo", seed, base + rng.normal(scale=0.3), sampled=base - 0.5 + rng.normal(scale=0.3),
                               terms_abs={"placebo": 5.0}))
    folder = write_results(tmp_path_factory.mktemp("paired"), cells)
    return folder, write_report(folder, reps=REPS)


def test_a_large_shift_is_better_and_a_negative_one_worse(paired_grid):
    folder, summary = paired_grid
    for mode in ("deterministic", "sampled"):
        line = next(v for v in verdict_lines(summary, "count") if f"final return ({mode})" in v)
        found = re.search(r": better by (\d\.\d+) \[(\d\.\d+), \d\.\d+\] \(IQM of 10 paired differences; P\(improvement\) 1\.00", line)
        assert found and float(found[1]) == pytest.approx(1.0, abs=0.1) and float(found[2]) > 0, line
        line = next(v for v in verdict_lines(summary, "penalty") if f"final return ({mode})" in v)
        found = re.search(r": worse by (\d\.\d+) \[(\d\.\d+), \d\.\d+\] \(IQM of 10 paired differences; P\(improvement\) 0\.00", line)
        assert found and float(found[1]) == pytest.approx(1.0, abs=0.1) and float(found[2]) > 0, line
    # one sentence per comparison, score and mode, in summary.md and in verdicts.md
    assert len(verdict_lines(summary, "count")) == 3 * 2
    verdicts = (folder / "verdicts.md").read_text()
    assert verdicts.startswith("# Verdicts") and set(verdict_lines(verdicts, "count")) == set(verdict_lines(summary, "count"))
    assert "## Verdicts" in summary and summary == (folder / "summary.md").read_text()


def test_the_rule_and_the_mde_are_stated(paired_grid):
    _, summary = paired_grid
    assert '**Rule: better (or worse) when the 95% paired interval of the IQM difference excludes 0' in summary
    assert "80% power at a two-sided 5%" in summary and "(t_0.975 + t_0.8, n - 1 degrees of freedom) * sd(paired differences) / sqrt(n)" in summary
    # the placebo exists for this env: every return comparison's MDE comes from its spread; success
    # is 0 on every seed of every row, so the placebo never moved there and each keeps its own
    lines = verdict_lines(summary, "count")
    assert all("placebo's spread" in v for v in lines if "success" not in v)
    assert all("own spread" in v for v in lines if "success" in v)


def test_a_placebo_that_never_moved_leaves_each_comparison_its_own_spread(tmp_path):
    """On a task no seed solves, none and placebo score 0 everywhere: their spread is 0 and would
    make every MDE 0; the comparison's own spread stands in, and says so."""
    cells = []
    for i, seed in enumerate(range(1000, 1006)):
        cells += [cell_rows("none", seed, 0.0), cell_rows("placebo", seed, 0.0),
                  cell_rows("count(coef=0.01)", seed, 0.1 * (i % 3))]
    summary = write_report(write_results(tmp_path, cells), reps=REPS)
    lines = verdict_lines(summary, "count(coef=0.01)")
    assert lines and all("own spread" in line and "MDE 0.000" not in line for line in lines if "return" in line)


def test_pairing_finds_a_shift_that_the_seeds_own_noise_would_hide(paired_grid):
    _, summary = paired_grid
    line = next(v for v in verdict_lines(summary, "tiny") if "final return (deterministic)" in v)
    assert ": better by 0.05" in line
    row = next(v for v in summary.splitlines() if v.startswith("| tiny |"))
    none = next(v for v in summary.splitlines() if v.startswith("| none |"))
    # unpaired, its interval and none's overlap widely
    low, high = map(float, re.search(r"\[(-?[\d.]+), (-?[\d.]+)\]", row.split("|")[4]).groups())
    base_low, base_high = map(float, re.search(r"\[(-?[\d.]+), (-?[\d.]+)\]", none.split("|")[4]).groups())
    assert low < base_high and base_low < high


def test_the_placebo_measures_the_rules_false_positive_rate(paired_grid):
    _, summary = paired_grid
    floor = next(line for line in summary.splitlines() if line.startswith("Noise floor:"))
    # the grid's success scores all tie (0 on every seed): those comparisons cannot give a false positive
    assert re.search(r": \d+ of 4 \(\d+%\) verdicts are not \"no measured difference\", over 1 env/agent group x 3 scores x 2 evaluation modes, leaving out 2 whose pairs all tie", floor), floor
    split = next(line for line in summary.splitlines() if line.startswith("Half-split rate:"))
    assert re.search(r"over 200 random half-splits of the seeds \(5 of 10 seeds\) of each of 4 `placebo` comparisons, \d+ of 800 \(\d+%\)", split), split


def test_both_evaluation_modes_are_in_the_table(paired_grid):
    _, summary = paired_grid
    header = next(line for line in summary.splitlines() if line.startswith("| shaping |"))
    assert "final return, det. (IQM [95% CI])" in header and "final return, sampled (IQM [95% CI])" in header
    assert "final success, det. / sampled (IQM [95% CI])" in header and "(median over seeds; k/n reached)" in header
    assert "P(better than none)" not in summary and "**" not in header
    count = next(line for line in summary.splitlines() if line.startswith("| count |"))
    assert count.split("|")[5].strip() != "—"  # the sampled return is shown


def test_rows_without_the_sampled_fields_show_a_dash_and_give_deterministic_verdicts_only(tmp_path):
    cells = [cell_rows(shaping, seed, 1.0 + (shaping == "count") + seed / 1000, protocol=None)
             for shaping in ("none", "count") for seed in range(3)]
    summary = write_report(write_results(tmp_path, cells), reps=REPS)
    row = next(line for line in summary.splitlines() if line.startswith("| count |"))
    assert row.split("|")[5].strip() == "—"
    assert [v for v in verdict_lines(summary, "count") if "(sampled)" in v] == []
    assert len(verdict_lines(summary, "count")) == 3
    assert "Noise floor: not measured here" in summary and "Half-split rate" not in summary


def test_rows_of_different_protocols_are_never_paired(tmp_path):
    cells = [cell_rows("none", seed, 1.0, protocol=None) for seed in range(5)]  # protocol 1: rows without the field
    cells += [cell_rows("count", seed, 3.0, protocol=2) for seed in range(5)]
    cells += [cell_rows("count", seed, 3.0, protocol=1) for seed in range(5, 10)]
    summary = write_report(write_results(tmp_path, cells), reps=REPS)
    lines = verdict_lines(summary, "count")
    assert lines and all("[protocol=1]" in line for line in lines)  # only the protocol-1 count meets protocol-1 none
    assert all("too few seeds (0 common seeds" in line for line in lines)  # and it has no seed in common
    assert "`count [protocol=2]` has no `none` of the same definition (all but the shaping): not compared." in summary
    assert "Entries of different protocols are never pooled or compared." in summary


def test_protocol_1_cells_are_compared_unpaired(tmp_path):
    """Cells that share no stream are compared as two samples (IQM minus IQM), never as pairs."""
    cells = [cell_rows("none", seed, float(seed), protocol=None) for seed in range(6)]
    cells += [cell_rows("count", seed, float(seed) + 0.5, protocol=None) for seed in range(6)]
    line = verdict_lines(write_report(write_results(tmp_path, cells), reps=REPS), "count")[0]
    # paired, a constant +0.5 on every seed is "better"; as two samples of spread 0-5 it is not
    assert "no measured difference" in line and "IQM minus IQM over 6 unpaired seeds (protocol 1)" in line


def test_too_few_common_seeds_give_no_verdict(tmp_path):
    cells = [cell_rows(shaping, seed, 1.0 + 5 * (shaping == "count")) for shaping in ("none", "count") for seed in range(2)]
    summary = write_report(write_results(tmp_path, cells), reps=REPS)
    line = verdict_lines(summary, "count")[0]
    assert line.endswith("final return (deterministic): too few seeds (2 common seeds; a verdict needs 3).")


def test_a_threshold_crossed_only_past_the_budget_is_not_reached(tmp_path):
    late = [0, 250, 500, 750, BUDGET + 80]  # the last evaluation lands a rollout past the budget
    cells = [cell_rows("none", 0, 1.0, steps=late, success=[0, 0, 0, 0, 1.0])]
    cells += [cell_rows("none", 1, 1.0, success=[0, 0, 1.0, 1.0, 1.0])]
    cells += [cell_rows("none", 2, 1.0, steps=late, success=[0, 0, 0, 0.9, 1.0])]
    summary = write_report(write_results(tmp_path, cells), threshold=0.8, reps=REPS)
    row = next(line for line in summary.splitlines() if line.startswith("| none |"))
    assert "750 (2/3 reached)" in row  # the median of 500, 750 and never
    assert "steps to 80% success, det. (median over seeds; k/n reached)" in summary
    cells[1] = cell_rows("none", 1, 1.0, steps=late, success=[0, 0, 0, 0, 1.0])
    summary = write_report(write_results(tmp_path, cells), threshold=0.8, reps=REPS)
    row = next(line for line in summary.splitlines() if line.startswith("| none |"))
    assert "not reached (1/3 reached)" in row and "1,080" not in row and "1,000" not in row


def test_a_shaping_that_never_paid_is_flagged(tmp_path):
    cells = [cell_rows("none", seed, 1.0, terms_abs={}) for seed in range(3)]
    cells += [cell_rows("lazy", seed, 1.0 + seed / 10, terms_abs={"lazy": 0.0, "other": 0.0}) for seed in range(3)]
    cells += [cell_rows("silent", seed, 1.0) for seed in range(3)]  # records no train_term_abs: unknown
    cells += [cell_rows("paid", seed, 1.0, terms_abs={"paid": 0.0, "other": 0.5}) for seed in range(3)]
    summary = write_report(write_results(tmp_path, cells), reps=REPS)
    table = {line.split("|")[1].strip(): line.split("|")[-2].strip() for line in summary.splitlines() if line.startswith("| ")}
    assert table["lazy"] == "3/3 ∅" and table["silent"] == "?" and table["paid"] == "0/3" and table["none"] == "—"
    assert "∅ never paid: in those seeds the shaping's terms summed to 0 in every training episode" in summary
    assert all("; 3/3 seeds never paid)." in line for line in verdict_lines(summary, "lazy"))
    assert not any("never paid)" in line for line in verdict_lines(summary, "paid") + verdict_lines(summary, "silent"))


def test_extra_baselines_from_the_command_line(tmp_path, capsys):
    rng = np.random.default_rng(4)
    cells = [cell_rows(shaping, seed, shift + seed / 100 + rng.normal(scale=0.01)) for seed in range(4)
             for shaping, shift in (("none", 1.0), ("pbrs", 2.0), ("count", 3.0))]
    write_results(tmp_path, cells)
    assert main(["report", str(tmp_path), "--baseline", "pbrs", "--baseline", "missing"]) == 0
    verdicts = (tmp_path / "verdicts.md").read_text()
    assert len(verdict_lines(verdicts, "count", "pbrs")) == 3 and verdict_lines(verdicts, "pbrs", "count") == []
    assert verdict_lines(verdicts, "none", "pbrs") == []  # no mirrored pair of two baselines
    found = re.search(r"final return \(deterministic\): better by (\d\.\d+) ", verdict_lines(verdicts, "count", "pbrs")[0])
    assert found and float(found[1]) == pytest.approx(1.0, abs=0.05)
    assert "baseline `missing`: no entry has this shaping" in verdicts
    assert "## Verdicts" in capsys.readouterr().out


def test_protocol_1_action_ppo_rows_are_read_as_the_sampled_scores_they_were(tmp_path):
    cells = [cell_rows(shaping, seed, 1.0, protocol=None) for shaping in ("none", "count") for seed in range(3)]
    for rows in cells:
        for row in rows:
            row["agent"] = "action_ppo"  # it scored its sampled policy under the deterministic names
    summary = write_report(write_results(tmp_path, cells), reps=REPS)
    lines = verdict_lines(summary, "count")
    assert lines and all("(sampled)" in line for line in lines)
    assert "Protocol 1 `action_ppo` rows scored the sampled policy only" in summary


def test_an_oracle_error_sweep_is_drawn_against_the_baselines(tmp_path):
    """Rows whose llm is an oracle at several error rates get a figure of final return and AUC
    against p, with none, placebo and count as lines; the sweep's points are the rows' IQMs, each
    with its paired verdict against none."""
    from align_gym.error_sweep import sweep, sweep_table, sweeps
    from align_gym.report import entries_of, read_results

    cells = []
    for seed in range(1000, 1006):
        cells.append(cell_rows("none", seed, 0.2, sampled=0.2 + 0.01 * (seed % 3)))
        cells.append(cell_rows("placebo", seed, 0.2, sampled=0.21))
        cells.append(cell_rows("count(coef=0.01)", seed, 0.3, sampled=0.3))
        for p in (0.0, 0.3):
            shaping = f"oni(llm='oracle(error={p}, mode=flip)')"
            cells.append(cell_rows(shaping, seed, 0.8 - p, sampled=0.8 - p))
    folder = write_results(tmp_path / "sweep", cells)
    text = write_report(folder, reps=REPS)
    assert (folder / "error_Align_KeyDoor-8x8-v0.png").exists() and "error_Align_KeyDoor-8x8-v0.png" in text
    points, lines, mde = sweep(ENV, entries_of(read_results(folder)), reps=REPS)
    assert [(p.method, p.mode, p.error, round(p.score.estimate, 3), p.verdict) for p in points] == [
        ("oni", "flip", 0.0, 0.8, "better"), ("oni", "flip", 0.3, 0.5, "better")]
    assert set(lines) == {"none", "placebo", "count(coef=0.01)"} and mde > 0
    auc_points, _, _ = sweep(ENV, entries_of(read_results(folder)), reps=REPS, score="auc")
    assert [p.error for p in auc_points] == [0.0, 0.3] and all(p.score.estimate > 0 for p in auc_points)
    table = "\n".join(sweep_table(sweeps(ENV, entries_of(read_results(folder)), reps=REPS)))
    assert "| oni | flip | 0.590 [" in table and "| p = 0 | p = 0.3 |" in table and table.count(" better |") == 4
    assert "paired difference to `none` by oracle error rate p" in text
