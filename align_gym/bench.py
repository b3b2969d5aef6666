"""``align-gym bench``: a grid of env x shaping x agent x seed, run in parallel, resumable.

Each cell trains with its shaping and is scored every ``eval_every`` steps on the unshaped task.
A cell's rows reach ``results.jsonl`` together, followed by a ``done`` marker, only when the cell
has finished: a killed run loses no finished cell, and a rerun skips finished cells and restarts
the others from scratch. Cells are keyed by everything that defines them (budget and settings
included), so changing the grid never reuses a stale cell.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import queue
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .cell import Cell, run_cell
from .hyperparams import hyperparams_for
from .wrappers.registry import get_entry, parse_spec, split_specs

RESULTS = "results.jsonl"


@dataclass
class Grid:
    """What a bench runs: every combination of ``envs``, ``shapings``, ``agents`` and ``seeds``."""

    envs: list[str]
    shapings: list[str]
    agents: list[str] = field(default_factory=lambda: ["ppo"])
    seeds: list[int] = field(default_factory=lambda: list(range(5)))
    steps: int = 100_000
    eval_every: int | None = None  # default: steps / 20
    eval_episodes: int = 10
    n_envs: int = 8
    success_threshold: float = 0.8
    hyperparams: dict[str, dict[str, Any]] = field(default_factory=dict)  # agent -> overrides

    def __post_init__(self) -> None:
        for spec in self.shapings:
            get_entry(parse_spec(spec).name)  # fail now, not in a worker, on an unknown shaping
        if self.steps <= 0 or not self.seeds:
            raise ValueError("a grid needs steps > 0 and at least one seed")

    def cells(self) -> list[Cell]:
        every = self.eval_every or max(self.steps // 20, 1)
        return [
            Cell(env_id, shaping, agent, seed, self.steps, every, self.eval_episodes, self.n_envs,
                 {**hyperparams_for(env_id, agent), **self.hyperparams.get(agent, {})})
            for env_id in self.envs for shaping in self.shapings for agent in self.agents for seed in self.seeds
        ]


def _listing(value: Any) -> list:
    if isinstance(value, str):
        return split_specs(value)
    return list(value)


def grid_from_dict(config: dict[str, Any]) -> Grid:
    """A grid from a config mapping (TOML or YAML); lists may be lists or comma-separated strings."""
    config = dict(config)
    unknown = set(config) - set(Grid.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown grid keys {sorted(unknown)}; known: {sorted(Grid.__dataclass_fields__)}")
    seeds = config.get("seeds", 5)
    config["seeds"] = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in _listing(seeds)]
    for key in ("envs", "shapings", "agents"):
        if key in config:
            config[key] = _listing(config[key])
    return Grid(**config)


def load_grid(path: str | Path) -> Grid:
    """Read a grid from a ``.toml`` or ``.yaml``/``.yml`` file."""
    path = Path(path)
    if path.suffix == ".toml":
        import tomllib

        return grid_from_dict(tomllib.loads(path.read_text()))
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as error:
            raise ImportError("YAML configs need PyYAML: pip install pyyaml (or write the grid as TOML)") from error
        return grid_from_dict(yaml.safe_load(path.read_text()))
    raise ValueError(f"config {path} must end in .toml, .yaml or .yml")


def cell_id(cell: Cell) -> str:
    return hashlib.sha1(json.dumps(cell.as_dict(), sort_keys=True).encode()).hexdigest()[:16]


def read_results(out_dir: str | Path) -> dict[str, list[dict[str, Any]]]:
    """The finished cells in ``out_dir``: cell id -> its eval rows. Rows of a cell without its
    ``done`` marker, and a line cut short by a crash, are ignored."""
    path = Path(out_dir) / RESULTS
    rows: dict[str, list[dict[str, Any]]] = {}
    finished: dict[str, list[dict[str, Any]]] = {}
    if not path.exists():
        return finished
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("done"):
            cell_rows = rows.pop(row["cell"], [])
            if len(cell_rows) == row["n_rows"]:
                finished[row["cell"]] = cell_rows
        else:
            rows.setdefault(row["cell"], []).append(row)
    return finished


def _rewrite(path: Path, finished: dict[str, list[dict[str, Any]]]) -> None:
    """Keep only finished cells (drops a torn last line), atomically."""
    temporary = path.with_suffix(".tmp")
    with temporary.open("w") as f:
        for cell, rows in finished.items():
            f.write(_cell_block(cell, rows))
        f.flush()
        os.fsync(f.fileno())
    temporary.replace(path)


def _cell_block(cell: str, rows: list[dict[str, Any]]) -> str:
    lines = [json.dumps(row) for row in rows] + [json.dumps({"cell": cell, "done": True, "n_rows": len(rows)})]
    return "\n".join(lines) + "\n"


def run_cell_timed(cell: Cell, report: Callable[[str, int], None] | None = None) -> list[dict[str, Any]]:
    """Run a cell and label its rows with the cell's id, its budget and the wall time so far."""
    start, key = time.perf_counter(), cell_id(cell)

    def label(row: dict[str, Any]) -> None:
        row.update(cell=key, budget=cell.steps, wall_time=round(time.perf_counter() - start, 3),
                   invariant=get_entry(parse_spec(cell.shaping).name).invariant)
        if report is not None:
            report(key, row["step"])

    return run_cell(cell, on_row=label)


def _run_with_queue(cell: Cell, progress: Any) -> list[dict[str, Any]]:
    return run_cell_timed(cell, lambda key, step: progress.put((key, step)))


class _Progress:
    """One bar for the whole grid (env steps, ETA) whose postfix shows cells done and how far each
    running cell is; a line for each finished cell."""

    def __init__(self, cells: list[Cell], enabled: bool):
        self.budget = {cell_id(c): c.steps for c in cells}
        self.names = {cell_id(c): f"{c.shaping}/s{c.seed}" for c in cells}
        self.done_steps = dict.fromkeys(self.budget, 0)
        self.finished: set[str] = set()
        self.bar = tqdm(total=sum(self.budget.values()), unit="step", unit_scale=True, disable=not enabled,
                        desc="bench", smoothing=0.05)

    def step(self, key: str, step: int) -> None:
        step = min(step, self.budget[key])
        self.bar.update(step - self.done_steps[key])
        self.done_steps[key] = step
        running = [f"{self.names[k]} {self.done_steps[k] / self.budget[k]:.0%}"
                   for k in self.budget if k not in self.finished and self.done_steps[k] > 0]
        self.bar.set_postfix_str(f"cells {len(self.finished)}/{len(self.budget)} | " + ", ".join(running[:4]))

    def finish(self, cell: Cell, rows: list[dict[str, Any]]) -> None:
        key = cell_id(cell)
        self.finished.add(key)
        self.step(key, self.budget[key])
        last = rows[-1]
        self.bar.write(f"done {cell.env_id} | {cell.shaping} | {cell.agent} | seed {cell.seed}: "
                       f"return {last['return_mean']:.3f}, success {last['success_rate']:.2f} "
                       f"in {last['wall_time']:.0f} s")

    def close(self) -> None:
        self.bar.close()


def _local_backend(cells: list[Cell], jobs: int, progress: _Progress) -> Iterable[tuple[Cell, list[dict]]]:
    context = mp.get_context("spawn")  # torch and fork do not mix
    with context.Manager() as manager, ProcessPoolExecutor(jobs, mp_context=context) as pool:
        updates = manager.Queue()
        futures = {pool.submit(_run_with_queue, cell, updates): cell for cell in cells}
        pending = set(futures)
        while pending:
            try:
                while True:
                    progress.step(*updates.get(timeout=0.2))
            except queue.Empty:
                pass
            for future in [f for f in pending if f.done()]:
                pending.discard(future)
                yield futures[future], future.result()


def _ray_backend(cells: list[Cell], jobs: int, progress: _Progress, address: str | None) -> Iterable[tuple[Cell, list[dict]]]:
    try:
        import ray
    except ImportError as error:
        raise ImportError("--backend ray needs Ray: pip install 'align-gym[ray]'") from error
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=1)(run_cell_timed)
        refs = {remote.remote(cell): cell for cell in cells}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
            for ref in ready:
                yield refs[ref], ray.get(ref)
    finally:
        if started_here:
            ray.shutdown()


def run_grid(grid: Grid, out_dir: str | Path, jobs: int | None = None, backend: str = "local",
             address: str | None = None, progress: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Run every unfinished cell of ``grid`` and append its rows to ``out_dir/results.jsonl``.

    Returns every finished cell of ``out_dir`` (cell id -> rows), those of earlier runs included.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULTS
    finished = read_results(out)
    if path.exists():
        _rewrite(path, finished)
    cells = [c for c in grid.cells() if cell_id(c) not in finished]
    skipped = len(grid.cells()) - len(cells)
    (out / "grid.json").write_text(json.dumps(grid.__dict__, indent=2) + "\n")
    if not cells:
        print(f"all {skipped} cells of this grid are already finished in {out}")
        return finished
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(cells)))
    print(f"bench: {len(cells)} cells to run" + (f" ({skipped} finished earlier, skipped)" if skipped else "")
          + f", {jobs} at a time, backend {backend}")
    bar = _Progress(cells, progress)
    if backend == "local":
        results = _local_backend(cells, jobs, bar)
    elif backend == "ray":
        results = _ray_backend(cells, jobs, bar, address)
    else:
        raise ValueError(f"unknown backend {backend!r}: use 'local' or 'ray'")
    try:
        with path.open("a") as f:
            for cell, rows in results:
                f.write(_cell_block(cell_id(cell), rows))  # one write per cell, then to disk
                f.flush()
                os.fsync(f.fileno())
                finished[cell_id(cell)] = rows
                bar.finish(cell, rows)
    finally:
        bar.close()
    return finished
