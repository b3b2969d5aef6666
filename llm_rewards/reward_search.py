"""Reward search (Eureka, Ma et al. 2023; Text2Reward, Xie et al. 2023): the LLM writes shaping
code, each valid candidate is trained, the next prompt reflects on the best so far, the best is
kept by true return and compared on fresh seeds.

One iteration:

1. ask for ``samples`` candidates (``potential`` by default, or ``reward``) with the
   ``reward_code`` prompt (Text2Reward's abstraction of the state, the task, and from the second
   iteration on Eureka's reward reflection);
2. extract each, run it in the sandbox on recorded states (``states`` of a random policy, and
   ``final_states`` from episode ends, terminated or truncated: the states a random policy reaches
   last, such as the goal behind KeyDoor's open door, that mid-episode states of a short
   recording miss), feed any error back for ``repairs`` repairs
   (:mod:`~align_gym.llm_rewards.codegen`); record every reason;
3. train each valid candidate through the bench's cells on the search seeds, in parallel
   (``llm_potential(path=...)`` or ``llm_reward(path=...)``); failed cells are recorded, never fatal;
4. score: the task return averaged over the evaluations of training (the area under the
   learning curve, by ``info["env_reward"]``), averaged over search seeds; keep the best.
   A candidate whose value turned out NaN or infinite in any training run (on a state the check
   never saw) is rejected with the run's error, which names the state and step: it is broken
   code, and the seeds where it happened not to fail must not make it a winner.

Reward reflection, as Eureka sends it: the best code so far with the series (10 points over
training) of the task return, the success rate and each shaping term, each with its max, mean and
min; beyond Eureka, each term's correlation with the task return; and Eureka's advice (rewrite
when success stays near zero; rescale or drop a term that is constant or dominates).

``candidates=DIR`` skips generation (no LLM is loaded or called): the ``*.py`` files there are the
candidates of a single iteration. After the search, the best is trained again against ``none``
(and the env's ``reference`` potential where it has one) on fresh seeds, never the search's,
by the command itself; the table is written beside the search.

Everything lands in ``out``: ``states.json``, per iteration ``prompt.json`` and per candidate its
``.py`` (when code was extracted) and ``.json`` (answers, errors, status, reason, score,
statistics), the cells' ``results.jsonl``, ``summary.json`` (``candidates``: file, status, reason,
score; ``best``: the chosen candidate's file) and a copy of the best as ``final.py``.
``LLMPotential.load(out)`` reloads the chosen function.

Simplified: Eureka samples 16 candidates for 5 iterations and trains each on the full budget; the
defaults here are sized for a laptop (4 candidates, 2 iterations, 50k steps on 2 search seeds).

>>> rows = [[{"return_mean": 0.0, "success_rate": 0.0, "train_true_return": 0.0},
...          {"return_mean": 0.5, "success_rate": 1.0, "train_true_return": 0.4}]]  # one seed's evaluations
>>> score_of(training_stats(rows))  # the task return over training
0.25
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .codegen import CodeAttempt, CodeRejected, check_code, write_code
from .reward_code import SPECS, reward_prompt

ADVICE = ("Advice: if the success rate stays near zero, write a different function; if a term is nearly "
          "constant, rescale it or drop it; if one term dominates the others, scale it down.")


@dataclass
class SearchConfig:
    """The settings of one search (every field is also a ``reward-search`` option)."""

    env_id: str
    kind: str = "potential"  # what the code computes: potential (invariant) or reward (added raw)
    llm: str = "hf:default"  # the writer's client spec (unused with candidates)
    iterations: int = 2  # rounds of generation and reflection
    samples: int = 4  # candidates asked for per iteration
    repairs: int = 1  # repairs per candidate, each quoting the error
    temperature: float = 1.0  # sampling temperature (Eureka's)
    max_tokens: int = 600  # per answer
    states: int = 256  # recorded states each candidate is checked on
    final_states: int = 16  # recorded episode ends (terminated or truncated) it is also checked on
    agent: str = "ppo"
    steps: int = 50_000  # training budget per candidate and search seed
    search_seeds: list[int] = field(default_factory=lambda: [0, 1])
    final_steps: int = 50_000  # the fresh-seed comparison's budget
    fresh_seeds: list[int] = field(default_factory=lambda: [100, 101, 102, 103, 104])
    eval_episodes: int = 10
    jobs: int = 2
    candidates: str | None = None  # a folder of hand-written .py candidates: no LLM


@dataclass
class Candidate:
    """One candidate's record (what ``summary.json`` lists, and more)."""

    file: str
    iteration: int
    status: str  # valid or rejected
    reason: str = ""
    score: float | None = None
    components: list[str] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


FINAL_STATES_STEP_LIMIT = 200_000  # random-policy steps spent looking for episode ends, at most


def record_inputs(env_id: str, kind: str, count: int, seed: int = 0, final_states: int = 0) -> list[Any]:
    """Inputs for the code from a random policy: states, or (state, action, next state).

    The first ``count`` are the policy's first ``count`` steps. Then come ``final_states`` from
    episode ends (terminated or truncated; the transition that ends the episode for ``reward``),
    the policy playing on until it has seen that many ends: a random policy reaches some states
    only late in an episode (KeyDoor's open door, on the 8x8 grid after some 300 steps), so
    mid-episode states of a short recording miss them. Ends met during the first ``count`` steps
    count too. Every Align env has a time limit, so ends come; the recording stops looking after
    ``FINAL_STATES_STEP_LIMIT`` steps and keeps the ends it found.
    """
    import gymnasium as gym

    from ..envs.core import random_action

    env = gym.make(env_id)
    env.action_space.seed(seed)
    rng = np.random.default_rng(seed)
    _, info = env.reset(seed=seed)
    inputs: list[Any] = []
    ends: list[Any] = []
    steps = 0
    while len(inputs) < count or (len(ends) < final_states and steps < FINAL_STATES_STEP_LIMIT):
        action = random_action(env, info, rng)
        state = info["state"]
        _, _, terminated, truncated, info = env.step(action)
        steps += 1
        action = action.tolist() if isinstance(action, np.ndarray | np.generic) else action
        item = state if kind == "potential" else [state, action, info["state"]]
        if len(inputs) < count:
            inputs.append(item)
        if terminated or truncated:
            if len(ends) < final_states:
                ends.append(info["state"] if kind == "potential" else item)
            _, info = env.reset()
    env.close()
    return inputs + ends


def _nonfinite_error(rows: list[dict[str, Any]]) -> str | None:
    """The message of a failed cell's error if it was a non-finite potential or reward (the
    run-time guard's error, which names the term, the code file, the state and the step), else None."""
    error = rows[-1].get("error", "")
    for name in ("NonFinitePotential", "NonFiniteReward"):
        marker = f".{name}: "  # the traceback's last line: module.Class: message
        if marker in error:
            return " ".join(error.split(marker, 1)[1].split())
    return None


def _series(values: list[float], points: int = 10) -> list[float]:
    if not values:
        return []
    picks = np.linspace(0, len(values) - 1, min(points, len(values))).round().astype(int)
    return [round(float(values[i]), 4) for i in picks]


def training_stats(rows_by_seed: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """What the reflection reports of one candidate's training, averaged over its seeds."""
    usable = [rows for rows in rows_by_seed if rows and all(r.get("status", "ok") == "ok" for r in rows)]
    if not usable:
        return {}
    length = min(len(rows) for rows in usable)

    def mean_series(key: str) -> list[float]:
        return [float(np.mean([rows[i].get(key) or 0.0 for rows in usable])) for i in range(length)]

    stats: dict[str, Any] = {"task return": mean_series("return_mean"), "success rate": mean_series("success_rate")}
    true_train = mean_series("train_true_return")
    for key in sorted({k for rows in usable for r in rows for k in r if k.startswith("train_term.")}):
        series = mean_series(key)
        varies = np.ptp(series) > 1e-9 and np.ptp(true_train) > 1e-9  # else the correlation is undefined
        stats[f"term {key[len('train_term.'):]}"] = series
        stats[f"correlation {key[len('train_term.'):]}"] = float(np.corrcoef(series, true_train)[0, 1]) if varies else None
    return stats


def score_of(stats: dict[str, Any]) -> float | None:
    """The search's score: the task return over training's evaluations (area under the curve)."""
    returns = stats.get("task return")
    return float(np.mean(returns)) if returns else None


def reflection(source: str, stats: dict[str, Any]) -> str:
    """Eureka's reward reflection on ``source`` (plus each term's correlation with the task return)."""
    lines = ["Here is the best function so far:", "```python", source.strip(), "```",
             "We trained a policy with it and tracked, over training (10 points):"]
    for name, values in stats.items():
        if name.startswith("correlation"):
            continue
        series = _series(values)
        lines.append(f"- {name}: {series}, max {max(series):.3f}, mean {np.mean(series):.3f}, min {min(series):.3f}")
        correlation = stats.get(f"correlation {name[5:]}") if name.startswith("term ") else None
        if name.startswith("term "):
            lines.append("  its correlation with the task return: "
                         + ("undefined (constant)" if correlation is None else f"{correlation:.2f}"))
    lines += [ADVICE, "Write an improved function."]
    return "\n".join(lines)


class RewardSearch:
    """One search run into ``out`` (see the module docstring)."""

    def __init__(self, config: SearchConfig, out: str | Path, client: Any = None, progress: bool = True):
        if config.kind not in SPECS:
            raise ValueError(f"kind must be 'potential' or 'reward', got {config.kind!r}")
        if set(config.search_seeds) & set(config.fresh_seeds):
            raise ValueError("the final comparison's seeds must be fresh: none of the search seeds")
        self.config, self.out, self.progress = config, Path(out), progress
        self.out.mkdir(parents=True, exist_ok=True)
        self._client = client
        self.candidates: list[Candidate] = []
        self.best: Candidate | None = None

    def say(self, message: str) -> None:
        if self.progress:
            print(f"reward-search: {message}", flush=True)

    @property
    def client(self) -> Any:
        if self._client is None:
            from .clients import get_client

            self._client = get_client(self.config.llm)
        return self._client

    def shaping(self, path: Path) -> str:
        """The shaping spec of a code file: its path relative to the working directory where it
        lies below it (rows and reports then name no machine's folders), else absolute."""
        path = path.resolve()
        try:
            path = path.relative_to(Path.cwd())
        except ValueError:
            pass
        return f"llm_{self.config.kind}(path={str(path)!r})"

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        config = self.config
        inputs = record_inputs(config.env_id, config.kind, config.states, final_states=config.final_states)
        # a sample of each kind: mid-episode states, then those of episode ends
        sample = inputs[:32] + inputs[config.states:config.states + 8]
        (self.out / "states.json").write_text(json.dumps(sample, default=str, indent=1))
        iterations = 1 if config.candidates else config.iterations
        for iteration in range(1, iterations + 1):
            folder = self.out / f"iter_{iteration}"
            folder.mkdir(exist_ok=True)
            found = self.from_files(folder, inputs) if config.candidates else self.generate(folder, iteration, inputs)
            self.train(folder, [c for c in found if c.status == "valid"])
            self.candidates += found
            self.write_summary()
        return self.finish()

    def generate(self, folder: Path, iteration: int, inputs: list[Any]) -> list[Candidate]:
        import gymnasium as gym

        from .prompts import load_template

        config = self.config
        env = gym.make(config.env_id)
        example = inputs[0] if config.kind == "potential" else inputs[0][0]
        feedback = reflection(Path(self.out / self.best.file).read_text(), self.best.stats) if self.best else ""
        prompt = reward_prompt(env, config.kind, example, feedback)
        (folder / "prompt.json").write_text(json.dumps(prompt, indent=1))
        self.say(f"iteration {iteration}: asking {config.llm} for {config.samples} candidates")
        attempts = write_code(self.client, prompt, SPECS[config.kind], inputs, samples=config.samples,
                              repairs=config.repairs, temperature=config.temperature, max_tokens=config.max_tokens,
                              template_key=load_template("reward_code").key)
        return [self.keep(folder, iteration, f"candidate_{a.index + 1}", a) for a in attempts]

    def from_files(self, folder: Path, inputs: list[Any]) -> list[Candidate]:
        files = sorted(Path(self.config.candidates).glob("*.py"))
        if not files:
            raise FileNotFoundError(f"no .py candidates in {self.config.candidates}")
        self.say(f"checking {len(files)} candidates from {self.config.candidates} (no LLM)")
        found = []
        for path in files:
            source = path.read_text()
            attempt = CodeAttempt(0, [source], [], source)
            try:
                attempt.checked = check_code(source, SPECS[self.config.kind], inputs)
            except CodeRejected as error:
                attempt.errors.append(error.reason)
            found.append(self.keep(folder, 1, path.stem, attempt))
        return found

    def keep(self, folder: Path, iteration: int, stem: str, attempt: CodeAttempt) -> Candidate:
        """Save a candidate's code and record; return its record."""
        code = folder / f"{stem}.py"
        if attempt.source is not None:
            code.write_text(attempt.source + "\n")
        else:  # no code was extracted: the candidate is its record
            code = code.with_suffix(".json")
        candidate = Candidate(file=str(code.relative_to(self.out)), iteration=iteration, status=attempt.status,
                              reason=attempt.reason, components=attempt.checked.components if attempt.checked else [],
                              answers=attempt.answers, errors=attempt.errors)
        self.say(f"  {stem}: {candidate.status}" + (f" ({candidate.reason})" if candidate.reason else ""))
        self.save(candidate)
        return candidate

    def save(self, candidate: Candidate) -> None:
        """The candidate's record beside its code: answers, errors, status, reason, score, statistics."""
        (self.out / candidate.file).with_suffix(".json").write_text(json.dumps(asdict(candidate), indent=1))

    def train(self, folder: Path, valid: list[Candidate]) -> None:
        from ..bench import Grid, cell_failed, run_grid

        if not valid:
            self.say("no valid candidate to train in this iteration")
            return
        config = self.config
        specs = {self.shaping(self.out / c.file): c for c in valid}
        grid = Grid(envs=[config.env_id], shapings=list(specs), agents=[config.agent], seeds=config.search_seeds,
                    steps=config.steps, eval_episodes=config.eval_episodes)
        self.say(f"training {len(valid)} candidates x {len(config.search_seeds)} seeds, {config.steps:,} steps each")
        results = run_grid(grid, folder / "cells", jobs=config.jobs, progress=self.progress)
        for spec, candidate in specs.items():
            runs = [rows for rows in results.values() if rows and rows[0].get("shaping") == spec]
            failed = [rows for rows in runs if cell_failed(rows)]
            candidate.stats = training_stats([rows for rows in runs if not cell_failed(rows)])
            candidate.score = score_of(candidate.stats)
            nonfinite = [error for error in map(_nonfinite_error, failed) if error]
            if nonfinite:  # broken code, however the other seeds went
                candidate.status, candidate.score = "rejected", None
                candidate.reason = f"training met a non-finite {self.config.kind}: {nonfinite[0]}"
            elif candidate.score is None:
                candidate.status = "rejected"
                candidate.reason = "training failed: " + (failed[0][-1].get("error", "no rows") if failed else "no rows")
            elif failed:
                candidate.reason = f"{len(failed)} of {len(runs)} training runs failed"
            if candidate.score is not None and (self.best is None or candidate.score > self.best.score):
                self.best = candidate
        for candidate in valid:
            self.save(candidate)

    # -- the end -------------------------------------------------------------------------------
    def write_summary(self) -> dict[str, Any]:
        for c in self.candidates:  # why a valid candidate lost
            if c.status == "valid" and self.best is not None and c is not self.best and c.score is not None:
                c.reason = (f"tied with the best ({c.score:.3f}); the first found is kept" if c.score == self.best.score
                            else f"lower task return than the best ({c.score:.3f} vs {self.best.score:.3f})")
                self.save(c)
        summary = {
            "env_id": self.config.env_id, "kind": self.config.kind,
            "llm": None if self.config.candidates else self.config.llm, "config": asdict(self.config),
            "candidates": [{"file": c.file, "status": c.status, "reason": c.reason, "score": c.score,
                            "iteration": c.iteration, "components": c.components} for c in self.candidates],
            "best": self.best.file if self.best else None, "best_score": self.best.score if self.best else None,
            "warning": self.warning(),
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=1))
        return summary

    def warning(self) -> str | None:
        """What a reader must know about the choice: nothing learned, so it was arbitrary."""
        if self.best is not None and not self.best.score:
            return ("no candidate earned any task return within the search budget: the best was chosen among ties "
                    "(the first found); raise --steps")
        return None

    def finish(self) -> dict[str, Any]:
        if self.best is None:
            self.say("no valid candidate: see summary.json for every reason")
            return self.write_summary()
        shutil.copyfile(self.out / self.best.file, self.out / "final.py")
        summary = self.write_summary()
        if summary["warning"]:
            self.say("warning: " + summary["warning"])
        self.say(f"best: {self.best.file} (task return {self.best.score:.3f} over training); "
                 f"comparing it on fresh seeds {self.config.fresh_seeds}")
        self.compare()
        return summary

    def compare(self) -> None:
        """The best against ``none`` (and the env's reference potential) on fresh seeds."""
        import gymnasium as gym

        from ..bench import Grid, run_grid
        from ..report import write_report

        config = self.config
        # The chosen candidate's own file (not final.py): a cell's identity is its spec, so a
        # resumed search whose best changed never reuses the old best's runs.
        shapings = ["none", self.shaping(self.out / self.best.file)]
        if "reference" in getattr(gym.make(config.env_id).unwrapped, "potentials", {}):
            shapings.append("pbrs(potential=reference)")
        grid = Grid(envs=[config.env_id], shapings=shapings, agents=[config.agent], seeds=config.fresh_seeds,
                    steps=config.final_steps, eval_episodes=config.eval_episodes)
        run_grid(grid, self.out / "final", jobs=config.jobs, progress=self.progress)
        write_report(self.out / "final")
        self.say("fresh-seed comparison written to " + str(self.out / "final" / "summary.md"))
