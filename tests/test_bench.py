"""The bench end to end: real tiny grids, resume after a kill, config files, the Ray backend."""

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from align_gym.bench import Grid, cell_id, load_grid, read_results, run_grid
from align_gym.report import write_report

TINY = ["--steps", "2000", "--eval-every", "1000", "--eval-episodes", "3", "--n-envs", "4"]


def bench(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["align-gym", "bench", *args], capture_output=True, text=True, check=True, timeout=600, **kwargs)


def test_a_tiny_grid_writes_rows_summary_and_curves(tmp_path):
    out = tmp_path / "tiny"
    run = bench("--env", "Align/KeyDoor-5x5-v0,Align/MountainCarSparse-v0", "--shaping", "none,pbrs(potential=reference)",
                "--seeds", "2", *TINY, "--jobs", "2", "--out", str(out))
    # a log, not a terminal: whole lines (one per finished cell, then a summary), no redrawn bar
    log = run.stdout + run.stderr
    assert "\r" not in log and sum(line.startswith("done Align/") for line in log.splitlines()) == 8
    assert "bench: 16,000/16,000 step (100%)" in run.stderr
    finished = read_results(out)
    assert len(finished) == 2 * 2 * 2
    for rows in finished.values():
        assert [r["step"] for r in rows][0] == 0 and rows[-1]["step"] >= 2000
        assert {"return_mean", "return_std", "success_rate", "train_shaped_return", "wall_time", "status", "env_id",
                "shaping", "agent", "seed", "budget", "n_envs", "hp.learning_rate"} <= set(rows[-1])
        assert rows[-1]["status"] == "ok" and rows[-1]["seed"] >= 1000  # the bench's seeds, not the tuning ones
        assert all(not isinstance(v, (dict, list)) for v in rows[-1].values())  # flat rows
        if rows[-1]["shaping"] != "none":
            assert "train_term.pbrs" in rows[-1]
    summary = (out / "summary.md").read_text()
    assert "## Align/KeyDoor-5x5-v0" in summary and "## Align/MountainCarSparse-v0" in summary
    assert "## Verdicts" in summary and "paired interval of the IQM difference excludes 0" in summary
    # two seeds: every comparison is stated, and none gets a verdict
    verdicts = [line for line in (out / "verdicts.md").read_text().splitlines() if line.startswith("- ")]
    assert verdicts and all("too few seeds (2 common seeds; a verdict needs 3)." in line for line in verdicts)
    assert "## All envs (stratified)" in summary  # both shapings ran on both envs
    assert (out / "curves_Align_KeyDoor-5x5-v0.png").stat().st_size > 5000
    assert (out / "curves_Align_MountainCarSparse-v0.png").stat().st_size > 5000
    # `align-gym report` regenerates the same summary from the rows alone
    (out / "summary.md").unlink()
    subprocess.run(["align-gym", "report", str(out)], check=True, capture_output=True)
    assert (out / "summary.md").read_text() == summary


def test_resume_after_the_bench_is_killed(tmp_path):
    out = tmp_path / "killed"
    # cells long enough (a few seconds each) that the kill lands while some are still running
    args = ["align-gym", "bench", "--env", "Align/KeyDoor-5x5-v0", "--shaping", "none,pbrs(potential=distance)",
            "--seeds", "3", "--steps", "8000", "--eval-every", "4000", "--eval-episodes", "3", "--n-envs", "4",
            "--jobs", "1", "--out", str(out), "--quiet"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while len(read_results(out)) < 2 and time.time() < deadline:
        assert process.poll() is None, "the bench exited before it could be killed"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the bench and its workers, mid-run
    process.wait()
    before = read_results(out)
    assert 2 <= len(before) < 6
    with (out / "results.jsonl").open("a") as f:
        f.write('{"step": 0, "cell": "torn')  # a line cut short by the crash

    rerun = subprocess.run(args, capture_output=True, text=True, check=True, timeout=600)
    assert f"({len(before)} finished earlier, skipped)" in rerun.stdout
    after = read_results(out)
    assert len(after) == 6
    for key, rows in before.items():
        assert after[key] == rows  # finished cells were kept, not run again


def test_grid_from_toml_and_yaml(tmp_path):
    (tmp_path / "grid.toml").write_text(
        'envs = ["Align/KeyDoor-5x5-v0"]\nshapings = "none,pbrs(potential=reference, scale=2)"\n'
        'seeds = 3\nsteps = 5000\n[hyperparams.ppo]\nlearning_rate = 0.001\n')
    grid = load_grid(tmp_path / "grid.toml")
    assert grid.shapings == ["none", "pbrs(potential=reference, scale=2)"] and grid.seeds == [1000, 1001, 1002]
    cells = grid.cells()
    assert len(cells) == 6 and cells[0].hyperparams["learning_rate"] == 0.001 and cells[0].hyperparams["gamma"] == 0.99
    pytest.importorskip("yaml")
    (tmp_path / "grid.yaml").write_text("envs: [Align/KeyDoor-5x5-v0]\nshapings: [none]\nseeds: [4, 7]\n")
    assert load_grid(tmp_path / "grid.yaml").seeds == [4, 7]


def test_bad_grids_fail_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'pbrs'"):
        Grid(envs=["Align/KeyDoor-5x5-v0"], shapings=["pbsr"])
    with pytest.raises(ValueError, match="unknown env id 'Align/KeyDor-5x5-v0'"):
        Grid(envs=["Align/KeyDor-5x5-v0"], shapings=["none"])
    with pytest.raises(ValueError, match="unknown agent 'ppp'"):
        Grid(envs=["Align/KeyDoor-5x5-v0"], shapings=["none"], agents=["ppp"])
    with pytest.raises(ValueError, match="pass a callable"):  # a shaping that does not fit one of the envs
        Grid(envs=["Align/KeyDoor-5x5-v0", "CartPole-v1"], shapings=["pbrs(potential=reference)"])
    with pytest.raises(ValueError, match="action_ppo steps one env"):
        Grid(envs=["Align/TextQuest-easy-v0"], shapings=["none"], agents=["action_ppo"], n_envs=8)
    with pytest.raises(ValueError, match="unknown action_ppo hyperparams \\['learning_rate'\\]"):
        Grid(envs=["Align/TextQuest-easy-v0"], shapings=["none"], agents=["action_ppo"], n_envs=1,
             hyperparams={"action_ppo": {"learning_rate": 1e-3}})
    with pytest.raises(ValueError, match="action_ppo does not relabel its rollouts, which ircr needs"):
        Grid(envs=["Align/TextQuest-easy-v0"], shapings=["none", "ircr"], agents=["action_ppo"], n_envs=1)
    (tmp_path / "grid.toml").write_text('envs = ["Align/KeyDoor-5x5-v0"]\nshapings = ["none"]\nsteeps = 3\n')
    with pytest.raises(ValueError, match="unknown grid keys"):
        load_grid(tmp_path / "grid.toml")


def test_cells_are_keyed_by_their_whole_definition():
    a = Grid(envs=["Align/KeyDoor-5x5-v0"], shapings=["none"], seeds=[0], steps=1000).cells()[0]
    b = Grid(envs=["Align/KeyDoor-5x5-v0"], shapings=["none"], seeds=[0], steps=2000).cells()[0]
    assert cell_id(a) != cell_id(b)


def test_report_on_an_empty_folder_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="align-gym bench"):
        write_report(tmp_path)


def test_ray_backend_gives_the_same_rows_as_local(tmp_path):
    pytest.importorskip("ray")
    grid = Grid(envs=["Align/KeyDoor-5x5-v0"], shapings=["none", "pbrs(potential=reference)"], seeds=[0],
                steps=1024, eval_every=512, eval_episodes=3, n_envs=4)
    local = run_grid(grid, tmp_path / "local", jobs=2, progress=False)
    os.environ["RAY_AUTH_MODE"] = "disabled"
    remote = run_grid(grid, tmp_path / "ray", jobs=2, backend="ray", progress=False)

    def comparable(results):
        return {key: [{k: v for k, v in row.items() if k != "wall_time"} for row in rows] for key, rows in results.items()}

    assert comparable(local) == comparable(remote)
    assert json.loads((tmp_path / "ray" / "results.jsonl").read_text().splitlines()[-1])["done"]


def test_a_failing_cell_is_recorded_and_every_other_cell_is_saved(tmp_path, capsys):
    grid = Grid(envs=["Align/KeyDoor-5x5-v0", "broken_env:BrokenKeyDoor-v0"], shapings=["none", "pbrs(potential=reference)"],
                seeds=[1000], steps=1024, eval_every=256, eval_episodes=2, n_envs=2)
    results = run_grid(grid, tmp_path, jobs=2, progress=False)
    assert len(results) == 4
    failed = {key: rows for key, rows in results.items() if rows[0]["status"] == "failed"}
    assert {rows[0]["env_id"] for rows in failed.values()} == {"broken_env:BrokenKeyDoor-v0"} and len(failed) == 2
    for rows in failed.values():
        assert len(rows) == 1 and "RuntimeError: broken on purpose" in rows[0]["error"]
        assert rows[0]["step"] >= 256 and rows[0]["shaping"] and rows[0]["seed"] == 1000
    for key, rows in results.items():
        if key not in failed:
            assert rows[-1]["step"] >= 1024 and all(r["status"] == "ok" for r in rows)
    assert "2 of 4 cells failed" in capsys.readouterr().out
    summary = write_report(tmp_path)
    assert "## Failed cells" in summary and "broken on purpose" in summary
    assert "## Align/KeyDoor-5x5-v0" in summary and "## broken_env" not in summary
    # a rerun keeps the finished cells and tries the failed ones again
    again = run_grid(grid, tmp_path, jobs=2, progress=False)
    assert "2 cells to run (2 finished earlier, skipped)" in capsys.readouterr().out
    assert {k: v for k, v in again.items() if k not in failed} == {k: v for k, v in results.items() if k not in failed}


def test_report_never_pools_two_grids_that_differ_in_more_than_the_seed(tmp_path):
    for steps in (1024, 1536):
        run_grid(Grid(envs=["Align/KeyDoor-5x5-v0"], shapings=["none", "pbrs(potential=reference)"], seeds=[1000, 1001],
                      steps=steps, eval_every=512, eval_episodes=2, n_envs=2), tmp_path, jobs=2, progress=False)
    summary = write_report(tmp_path)
    table = [line for line in summary.splitlines() if line.startswith("| none") or line.startswith("| pbrs")]
    assert len(table) == 4  # two budgets x two shapings, each of 2 seeds, never 4 seeds pooled
    assert sum("none [budget=1024]" in line for line in table) == 1 and sum("none [budget=1536]" in line for line in table) == 1
    assert all(line.split("|")[3].strip() == "2" for line in table)
    # the verdicts pair entries of the same budget only
    for budget in (1024, 1536):
        paired = [line for line in summary.splitlines() if f"ppo [budget={budget}]: `pbrs(potential=reference)` vs `none`" in line]
        assert paired and all("(2 common seeds;" in line for line in paired)


def test_shapings_of_a_seed_share_every_stream_and_seeds_share_none():
    from align_gym.agents import env_seeds

    grid = Grid(envs=["Align/KeyDoor-5x5-v0", "Align/PointMaze-v0"], shapings=["none", "pbrs(potential=reference)"],
                seeds=list(range(1000, 1005)), steps=1000, eval_episodes=20)
    seen: dict[int, tuple[str, int]] = {}
    for cell in grid.cells():
        seeds = cell.seeds()
        for seed in env_seeds(seeds.train, cell.n_envs) + env_seeds(seeds.evaluation, cell.eval_episodes):
            owner = (cell.env_id, cell.seed)
            assert seen.setdefault(seed, owner) == owner, f"{owner} shares env seed {seed} with {seen[seed]}"
    assert len(seen) == 2 * 5 * (8 + 20)  # one set per env and seed, whatever the shaping
    none, pbrs = grid.cells()[0], grid.cells()[5]
    assert (none.shaping, pbrs.shaping, none.seed) == ("none", "pbrs(potential=reference)", pbrs.seed)
    assert none.seeds().agent == pbrs.seeds().agent != grid.cells()[1].seeds().agent
    # and make_vec_env really seeds sub-env i with env_seeds(seed)[i]
    import gymnasium as gym

    from align_gym.agents import make_vec_env

    cell = grid.cells()[0]
    venv = make_vec_env(cell.env_id, n_envs=cell.n_envs, gamma=0.99, seed=cell.seeds().train)
    first = venv.reset()
    for i, seed in enumerate(env_seeds(cell.seeds().train, cell.n_envs)):
        env = gym.make(cell.env_id)
        env.reset(seed=seed)
        np.testing.assert_array_equal(env.reset()[0], first[i])


def test_an_llm_agent_runs_in_the_bench_with_the_same_rows(tmp_path):
    grid = Grid(envs=["Align/TextQuest-easy-v0"], shapings=["none", "pbrs(potential=reference)"], agents=["action_ppo"],
                seeds=[1000], steps=128, eval_every=64, eval_episodes=3, n_envs=1)
    results = run_grid(grid, tmp_path, jobs=2, progress=False)
    assert len(results) == 2
    for rows in results.values():
        assert [r["step"] for r in rows] == [0, 64, 128] and all(r["status"] == "ok" for r in rows)
        assert rows[0]["train_true_return"] is None and rows[-1]["train_true_return"] is not None
        assert rows[-1]["hp.model"] == "tiny" and 0.0 <= rows[-1]["success_rate"] <= 1.0
        if rows[-1]["shaping"] != "none":
            assert "train_term.pbrs" in rows[-1]
    assert "| action_ppo |" in write_report(tmp_path)
