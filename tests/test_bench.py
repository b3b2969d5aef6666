"""The bench end to end: real tiny grids, resume after a kill, config files, the Ray backend."""

import json
import os
import signal
import subprocess
import time

import pytest

from align_gym.bench import Grid, cell_id, load_grid, read_results, run_grid
from align_gym.report import write_report

TINY = ["--steps", "2000", "--eval-every", "1000", "--eval-episodes", "3", "--n-envs", "4"]


def bench(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["align-gym", "bench", *args], capture_output=True, text=True, check=True, timeout=600, **kwargs)


def test_a_tiny_grid_writes_rows_summary_and_curves(tmp_path):
    out = tmp_path / "tiny"
    bench("--env", "Align/KeyDoor-5x5-v0,Align/MountainCarSparse-v0", "--shaping", "none,pbrs(potential=reference)",
          "--seeds", "2", *TINY, "--jobs", "2", "--out", str(out))
    finished = read_results(out)
    assert len(finished) == 2 * 2 * 2
    for rows in finished.values():
        assert [r["step"] for r in rows][0] == 0 and rows[-1]["step"] >= 2000
        assert {"return_mean", "return_std", "success_rate", "train_shaped_return", "train_terms", "wall_time"} <= set(rows[-1])
    summary = (out / "summary.md").read_text()
    assert "## Align/KeyDoor-5x5-v0" in summary and "## Align/MountainCarSparse-v0" in summary
    assert "P(better than none)" in summary and "intervals are wide" in summary
    assert (out / "curves_Align_KeyDoor-5x5-v0.png").stat().st_size > 5000
    assert (out / "curves_Align_MountainCarSparse-v0.png").stat().st_size > 5000
    # `align-gym report` regenerates the same summary from the rows alone
    (out / "summary.md").unlink()
    subprocess.run(["align-gym", "report", str(out)], check=True, capture_output=True)
    assert (out / "summary.md").read_text() == summary


def test_resume_after_the_bench_is_killed(tmp_path):
    out = tmp_path / "killed"
    args = ["align-gym", "bench", "--env", "Align/KeyDoor-5x5-v0", "--shaping", "none,pbrs(potential=distance)",
            "--seeds", "3", *TINY, "--jobs", "1", "--out", str(out), "--quiet"]
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
    assert grid.shapings == ["none", "pbrs(potential=reference, scale=2)"] and grid.seeds == [0, 1, 2]
    cells = grid.cells()
    assert len(cells) == 6 and cells[0].hyperparams["learning_rate"] == 0.001 and cells[0].hyperparams["gamma"] == 0.99
    pytest.importorskip("yaml")
    (tmp_path / "grid.yaml").write_text("envs: [Align/KeyDoor-5x5-v0]\nshapings: [none]\nseeds: [4, 7]\n")
    assert load_grid(tmp_path / "grid.yaml").seeds == [4, 7]


def test_bad_grids_fail_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="did you mean 'pbrs'"):
        Grid(envs=["Align/KeyDoor-5x5-v0"], shapings=["pbsr"])
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
