"""``align-gym bench``: a grid of env x shaping x agent x seed, run in parallel, resumable.

Each cell trains with its shaping and is scored every ``eval_every`` steps on the unshaped task.
A cell's rows reach ``results.jsonl`` together, followed by a ``done`` marker, only when the cell
has finished: a killed run loses no finished cell, and a rerun skips finished cells and restarts
the others from scratch. A cell that raises is recorded as failed (one row with
``"status": "failed"`` and the error's last lines) while every other cell runs on and is saved; a
rerun tries failed cells again. Everything is validated (env ids, shapings on each env, agents)
before any cell starts. Rows are flat JSON objects carrying the whole cell definition
(:meth:`~align_gym.cell.Cell.definition`), and cells are keyed by it, so changing the grid never
reuses a stale cell and the report never pools cells that differ in more than the seed.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import multiprocessing as mp
import os
import queue
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .cell import LLM_AGENTS, Cell, algorithm_module, missing_agent, run_cell
from .hyperparams import BENCH_FIRST_SEED, hyperparams_for
from .progress import progress_bar
from .wrappers.registry import check_spec, is_invariant, split_specs

RESULTS = "results.jsonl"
ERROR_LINES = 15  # of a failed cell's traceback, kept in its row


def default_seeds(n: int) -> list[int]:
    """The bench's ``n`` seeds: from ``BENCH_FIRST_SEED`` on, disjoint from the tuning seeds."""
    return list(range(BENCH_FIRST_SEED, BENCH_FIRST_SEED + n))


@dataclass
class Grid:
    """What a bench runs: every combination of ``envs``, ``shapings``, ``agents`` and ``seeds``."""

    envs: list[str]
    shapings: list[str]
    agents: list[str] = field(default_factory=lambda: ["ppo"])
    seeds: list[int] = field(default_factory=lambda: default_seeds(5))
    steps: int = 100_000
    eval_every: int | None = None  # default: steps / 20
    eval_episodes: int = 10
    n_envs: int = 8
    success_threshold: float = 0.8
    hyperparams: dict[str, dict[str, Any]] = field(default_factory=dict)  # agent -> overrides

    def __post_init__(self) -> None:
        validate_grid(self)  # fail now, not in a worker an hour in

    def cells(self) -> list[Cell]:
        every = self.eval_every or max(self.steps // 20, 1)
        return [
            Cell(env_id, shaping, agent, seed, self.steps, every, self.eval_episodes, self.n_envs,
                 {**hyperparams_for(env_id, agent), **self.hyperparams.get(agent, {})})
            for env_id in self.envs for shaping in self.shapings for agent in self.agents for seed in self.seeds
        ]


def check_env_id(env_id: str) -> None:
    """ValueError unless ``env_id`` is registered (``module:Id`` imports ``module`` first)."""
    import gymnasium as gym

    import align_gym  # noqa: F401  (registers the Align/ ids)

    module, _, name = env_id.rpartition(":")
    try:
        if module:
            importlib.import_module(module)
        gym.spec(name)
    except (gym.error.Error, ImportError) as error:
        raise ValueError(f"unknown env id {env_id!r}: {error}") from error


def check_agent(agent: str) -> None:
    """ValueError for an unknown agent, ImportError naming the extra for a missing library."""
    module, _ = algorithm_module(agent)
    if importlib.util.find_spec(module) is None:
        raise missing_agent(agent, module)


def check_llm_agent(grid: Grid, agent: str) -> None:
    """An LLM agent steps one env, and its hyperparams are its config's fields."""
    from dataclasses import fields

    from .agents.llm_policy import ActionPPOConfig

    if grid.n_envs != 1:
        raise ValueError(f"{agent} steps one env: set n_envs = 1 (got {grid.n_envs})")
    known = {f.name for f in fields(ActionPPOConfig)} - {"env_id", "shaping", "steps", "seed", "device", "out", "resume"}
    unknown = set(grid.hyperparams.get(agent, {})) - known
    if unknown:
        raise ValueError(f"unknown {agent} hyperparams {sorted(unknown)}; known: {sorted(known)}")


def validate_grid(grid: Grid) -> None:
    """Check every env id, agent and shaping (built on each env) before anything runs."""
    import gymnasium as gym

    from .agents.llm_policy import refuse_redistribution

    if grid.steps <= 0 or not grid.seeds:
        raise ValueError("a grid needs steps > 0 and at least one seed")
    if len(set(grid.seeds)) != len(grid.seeds):
        raise ValueError(f"seeds repeat in {grid.seeds}")
    for env_id in grid.envs:
        check_env_id(env_id)
    for agent in grid.agents:
        check_agent(agent)
        if agent in LLM_AGENTS:
            check_llm_agent(grid, agent)
    for env_id in grid.envs:
        env = gym.make(env_id)
        try:
            for agent in grid.agents:
                gamma = {**hyperparams_for(env_id, agent), **grid.hyperparams.get(agent, {})}["gamma"]
                for spec in grid.shapings:
                    modules = check_spec(spec, env, gamma=gamma)
                    if agent in LLM_AGENTS:  # they relabel no rollouts
                        refuse_redistribution(modules, agent)
        finally:
            env.close()


def _listing(value: Any) -> list:
    if isinstance(value, str):
        return split_specs(value)
    return list(value)


def grid_from_dict(config: dict[str, Any]) -> Grid:
    """A grid from a config mapping (TOML or YAML); lists may be lists or comma-separated strings,
    and ``seeds = N`` means the bench's default ``N`` seeds (:func:`default_seeds`)."""
    config = dict(config)
    unknown = set(config) - set(Grid.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown grid keys {sorted(unknown)}; known: {sorted(Grid.__dataclass_fields__)}")
    seeds = config.get("seeds", 5)
    config["seeds"] = default_seeds(seeds) if isinstance(seeds, int) else [int(s) for s in _listing(seeds)]
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
    return hashlib.sha1(json.dumps(cell.definition(), sort_keys=True).encode()).hexdigest()[:16]


def cell_failed(rows: list[dict[str, Any]]) -> bool:
    return rows[0].get("status") == "failed"


def read_results(out_dir: str | Path) -> dict[str, list[dict[str, Any]]]:
    """The cells recorded in ``out_dir``: cell id -> its rows (eval rows, or the one row of a
    failed cell). Rows of a cell without its ``done`` marker, and a line cut short by a crash,
    are ignored; a cell recorded twice keeps its latest record."""
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
            if cell_rows and len(cell_rows) == row["n_rows"]:
                finished[row["cell"]] = cell_rows
        else:
            rows.setdefault(row["cell"], []).append(row)
    return finished


def _rewrite(path: Path, finished: dict[str, list[dict[str, Any]]]) -> None:
    """Keep only ``finished`` cells (drops a torn last line), atomically."""
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


def failure_row(cell: Cell, error: str, step: int, wall_time: float) -> dict[str, Any]:
    """The one row a failed cell leaves: its definition, the last step it reached, the error's tail."""
    tail = "\n".join(error.rstrip().splitlines()[-ERROR_LINES:])
    return {**cell.definition(), "cell": cell_id(cell), "status": "failed", "step": step, "error": tail,
            "wall_time": round(wall_time, 3), "invariant": is_invariant(cell.shaping)}


def run_cell_timed(cell: Cell, report: Callable[[str, int], None] | None = None) -> list[dict[str, Any]]:
    """Run a cell and label its rows with the cell's id and the wall time so far. An exception
    in the cell becomes its failure row (:func:`failure_row`): it never reaches the caller."""
    start, key, reached = time.perf_counter(), cell_id(cell), [0]
    invariant = is_invariant(cell.shaping)

    def label(row: dict[str, Any]) -> None:
        row.update(cell=key, wall_time=round(time.perf_counter() - start, 3), invariant=invariant)
        reached[0] = row["step"]
        if report is not None:
            report(key, row["step"])

    try:
        return run_cell(cell, on_row=label)
    except Exception:
        return [failure_row(cell, traceback.format_exc(), reached[0], time.perf_counter() - start)]


def _run_with_queue(cell: Cell, progress: Any) -> list[dict[str, Any]]:
    return run_cell_timed(cell, lambda key, step: progress.put((key, step)))


class _Progress:
    """One bar for the whole grid (env steps, ETA) whose postfix shows cells done and how far each
    running cell is; a line for each finished cell. Off a terminal, a summary line a minute
    instead of the bar (:func:`~align_gym.progress.progress_bar`)."""

    def __init__(self, cells: list[Cell], enabled: bool):
        self.budget = {cell_id(c): c.steps for c in cells}
        self.names = {cell_id(c): f"{c.shaping}/s{c.seed}" for c in cells}
        self.done_steps = dict.fromkeys(self.budget, 0)
        self.finished: set[str] = set()
        # A live bar on a terminal; in a log, a line per finished cell and a summary a minute.
        self.bar = progress_bar(total=sum(self.budget.values()), desc="bench", unit="step", enabled=enabled,
                                unit_scale=True, smoothing=0.05)

    def step(self, key: str, step: int) -> None:
        step = min(step, self.budget[key])
        self.bar.update(step - self.done_steps[key])
        self.done_steps[key] = step
        running = [f"{self.names[k]} {self.done_steps[k] / self.budget[k]:.0%}"
                   for k in self.budget if k not in self.finished and self.done_steps[k] > 0]
        cells = f"cells {len(self.finished)}/{len(self.budget)}"
        self.bar.set_postfix_str(cells + (" | " + ", ".join(running[:4]) if running else ""))

    def finish(self, cell: Cell, rows: list[dict[str, Any]]) -> None:
        key = cell_id(cell)
        self.finished.add(key)
        self.step(key, self.budget[key])
        last, name = rows[-1], f"{cell.env_id} | {cell.shaping} | {cell.agent} | seed {cell.seed}"
        if cell_failed(rows):
            self.bar.write(f"FAILED {name} at step {last['step']:,}: {last['error'].splitlines()[-1]}")
        else:
            self.bar.write(f"done {name}: return {last['return_mean']:.3f}, success {last['success_rate']:.2f} "
                           f"in {last['wall_time']:.0f} s")

    def close(self) -> None:
        self.bar.close()


def _lost_worker(cell: Cell, error: BaseException, progress: _Progress) -> list[dict[str, Any]]:
    """The failure row of a cell whose worker died (a crash the cell itself could not catch)."""
    text = "".join(traceback.format_exception(error))
    return [failure_row(cell, f"the worker running this cell died\n{text}", progress.done_steps[cell_id(cell)], 0.0)]


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
                cell = futures[future]
                try:
                    yield cell, future.result()
                except Exception as error:  # the worker process died (killed, out of memory)
                    yield cell, _lost_worker(cell, error, progress)


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
                try:
                    yield refs[ref], ray.get(ref)
                except Exception as error:  # the worker or its node died
                    yield refs[ref], _lost_worker(refs[ref], error, progress)
    finally:
        if started_here:
            ray.shutdown()


def run_grid(grid: Grid, out_dir: str | Path, jobs: int | None = None, backend: str = "local",
             address: str | None = None, progress: bool = True) -> dict[str, list[dict[str, Any]]]:
    """Run every cell of ``grid`` not yet finished in ``out_dir`` (failed ones again) and append
    its rows to ``out_dir/results.jsonl``.

    Returns every recorded cell of ``out_dir`` (cell id -> rows), those of earlier runs included;
    failed cells have one row with ``"status": "failed"``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULTS
    all_cells = grid.cells()
    recorded = read_results(out)
    cells = [c for c in all_cells if cell_id(c) not in recorded or cell_failed(recorded[cell_id(c)])]
    retried = {cell_id(c) for c in cells}
    finished = {key: rows for key, rows in recorded.items() if key not in retried}
    if path.exists():
        _rewrite(path, finished)
    skipped = len(all_cells) - len(cells)
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
    failed = [rows[0] for key, rows in finished.items() if key in retried and cell_failed(rows)]
    if failed:
        print(f"bench: {len(failed)} of {len(cells)} cells failed (recorded in {path}; a rerun tries them again):")
        for row in failed:
            print(f"  {row['env_id']} | {row['shaping']} | {row['agent']} | seed {row['seed']}: {row['error'].splitlines()[-1]}")
    return finished
