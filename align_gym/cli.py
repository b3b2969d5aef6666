"""The ``align-gym`` command line: ``list`` and ``demo`` (later issues add subcommands)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence


def _cmd_list(args: argparse.Namespace) -> int:
    if args.shaping:
        from .wrappers import shaping_entries

        for entry in shaping_entries():
            mark = "invariant" if entry.invariant else "NOT invariant"
            print(f"{entry.name:<12} [{mark}] {entry.summary}")
        return 0
    from . import list_envs

    for env_id, task in list_envs().items():
        print(f"{env_id:<40} {task}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(out_dir=args.out, steps=args.steps, seeds=args.seeds, jobs=args.jobs)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import Grid, cell_failed, default_seeds, load_grid, run_grid
    from .report import write_report
    from .wrappers.registry import split_specs

    if args.config:
        grid = load_grid(args.config)
    else:
        if not args.env or not args.shaping:
            raise SystemExit("align-gym bench: give --env and --shaping, or --config FILE")
        seeds = default_seeds(args.seeds) if args.first_seed is None else list(range(args.first_seed, args.first_seed + args.seeds))
        grid = Grid(envs=split_specs(args.env), shapings=split_specs(args.shaping), agents=split_specs(args.agent),
                    seeds=seeds, steps=args.steps, eval_every=args.eval_every,
                    eval_episodes=args.eval_episodes, n_envs=args.n_envs, success_threshold=args.threshold)
    results = run_grid(grid, args.out, jobs=args.jobs, backend=args.backend, address=args.address, progress=not args.quiet)
    print(write_report(args.out))
    return 1 if any(cell_failed(rows) for rows in results.values()) else 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import write_report

    print(write_report(args.dir, threshold=args.threshold, baselines=args.baseline))
    return 0


def _cmd_serve_llm(args: argparse.Namespace) -> int:
    from .llm_rewards.server import serve

    try:
        serve(args.model, host=args.host, port=args.port, served_model_name=args.served_model_name,
              batch_window=args.batch_window, max_batch=args.max_batch, max_model_len=args.max_model_len,
              batch_invariant=args.batch_invariant)
    except ValueError as error:  # a bad spec or setting: say so, start nothing
        raise SystemExit(f"align-gym serve-llm: {error}") from None
    return 0


def _cmd_serve_env(args: argparse.Namespace) -> int:
    from .agents.openenv_server import serve

    try:
        serve(args.env, args.shaping, gamma=args.gamma, max_concurrent=args.max_concurrent, idle_timeout=args.idle_timeout,
              host=args.host, port=args.port)
    except ValueError as error:  # a bad id, spec or setting: say so, start nothing
        raise SystemExit(f"align-gym serve-env: {error}") from None
    return 0


def _cmd_serve_web(args: argparse.Namespace) -> int:
    from .envs.web.server import serve

    try:
        serve(args.env, seed=args.seed, host=args.host, port=args.port)
    except ValueError as error:
        raise SystemExit(f"align-gym serve-web: {error}") from None
    return 0


def _cmd_reward_search(args: argparse.Namespace) -> int:
    from .llm_rewards.reward_search import RewardSearch, SearchConfig

    def seeds(text: str) -> list[int]:
        return [int(part) for part in text.split(",") if part.strip()]

    try:
        config = SearchConfig(env_id=args.env, kind=args.kind, llm=args.llm, iterations=args.iterations,
                              samples=args.samples, repairs=args.repairs, agent=args.agent, steps=args.steps,
                              search_seeds=seeds(args.search_seeds), final_steps=args.final_steps,
                              fresh_seeds=seeds(args.fresh_seeds), jobs=args.jobs, candidates=args.candidates)
        summary = RewardSearch(config, args.out).run()
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"align-gym reward-search: {error}") from None
    return 0 if summary["best"] else 1


def _cmd_cache(args: argparse.Namespace) -> int:
    import json

    from .llm_rewards.cache import LLMCache

    cache = LLMCache(args.path) if args.path else LLMCache.default()
    if args.action == "stats":
        print(json.dumps(cache.stats(), indent=2, default=str))
    elif args.action == "export":
        if not args.file:
            raise SystemExit("align-gym llm cache export: give the JSONL file to write")
        cache.export(args.file)
        print(f"exported {len(cache)} rows from {cache.path} to {args.file}")
    else:
        if not args.file:
            raise SystemExit("align-gym llm cache import: give the JSONL file to read")
        print(f"imported {cache.import_(args.file)} new rows into {cache.path}")
    return 0


def _cmd_judge_check(args: argparse.Namespace) -> int:
    import json

    from .llm_rewards.judge_check import judge_check
    from .wrappers.registry import split_specs

    reports = [judge_check(llm, args.template, args.env, per_class=args.per_class, seed=args.seed)
               for llm in split_specs(args.llm)]
    print("\n".join(report.summary() for report in reports))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump([report.as_dict() for report in reports] if len(reports) > 1 else reports[0].as_dict(), fh, indent=2)
    return 0


def _cmd_train_llm(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from .agents.llm_policy import ActionPPOConfig, train_action_ppo
    from .agents.token_ppo import TokenPPOConfig, train_token_ppo
    from .hyperparams import llm_agent_defaults
    from .progress import progress_bar

    config_class, train, budget = ((ActionPPOConfig, train_action_ppo, "steps") if args.algo == "action-ppo"
                                   else (TokenPPOConfig, train_token_ppo, "turns"))
    given = {**llm_agent_defaults(args.algo.replace("-", "_"), args.model),  # settings measured to learn with this model
             "env_id": args.env, "model": args.model, "shaping": args.shaping, budget: args.steps, "seed": args.seed,
             "device": args.device, "out": args.out, "resume": args.resume,
             "allow_changes": [name.strip() for name in (args.allow_change or "").split(",") if name.strip()]}
    for name in ("lr", "placement", "normalisation"):
        value = getattr(args, name)
        if value is not None:
            if name not in {f.name for f in fields(config_class)}:
                raise SystemExit(f"align-gym train-llm: --{name} is not a setting of {args.algo}")
            given[name] = value
    config = config_class(**given)
    bar = progress_bar(total=args.steps, unit="step", desc=f"{args.algo} on {args.env}")

    def show(row: dict, _run: object) -> None:
        bar.set_postfix_str(_llm_scores(row))  # before the update, which may print the line
        bar.update(int(row.get("step", row.get("turn", 0))) - bar.n)

    result = train(config, on_update=show)
    bar.close()
    if result.updates:
        print(f"{_llm_scores(result.updates[-1])}; log and checkpoint in {args.out}")
    return 0


def _llm_scores(row: dict) -> str:
    """An LLM agent's update row in words: the task return as the mean over the last episodes with
    its standard error (one episode's return is mostly sampling noise: the spread tells learning
    from luck), the success rate, and the update's approximate KL (0 means the policy did not move)."""
    n = int(row["recent_episodes"])
    if n == 0:
        return f"no episode finished yet, approx KL {row['approx_kl']:.1e}"
    spread = f" ± {row['task_return_se']:.2f}" if n > 1 else ""
    return (f"task return {row['task_return']:.2f}{spread} (mean ± s.e. of the last {n} episodes), "
            f"success {row['success_rate']:.2f}, approx KL {row['approx_kl']:.1e}")


def _train_llm_defaults_text() -> str:
    """train-llm's defaults per agent and model, in words, from the table they live in."""
    from .hyperparams import LLM_AGENT_DEFAULTS

    def settings(values: dict) -> str:
        return ", ".join(f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"
                         for name, value in values.items())

    listed = "; ".join(f"{agent.replace('_', '-')} with {model}: {settings(values)}"
                       for (agent, model), values in LLM_AGENT_DEFAULTS.items())
    return (f"Defaults per --model (a local folder gets embedded's), each measured to move its model at a healthy "
            f"rate (an update's approximate KL about 1e-3 to 2e-2; align_gym/hyperparams.py has the measurements): {listed}. "
            "The tiny random model is for plumbing: action-ppo learns TextQuest-easy with it (training return "
            "0.20 -> 0.90 in 2,048 steps), token-ppo moves it but cannot teach it words; learn with embedded or "
            "a pretrained folder.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="align-gym", description="Sparse-reward tasks and reward shaping for Gymnasium.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    listing = commands.add_parser("list", help="list the registered envs (or shapings)",
                                  description="List every registered Align env with its task, or every shaping method.")
    listing.add_argument("--shaping", action="store_true", help="list shaping methods instead of envs")
    listing.set_defaults(run=_cmd_list)

    demo = commands.add_parser(
        "demo", help="PPO on KeyDoor-8x8: no shaping vs the reference potential vs ELLM's LLM goals",
        description="Train PPO on Align/KeyDoor-8x8-v0 with no shaping, with potential-based shaping "
                    "(the reference potential) and with ELLM (goals from the embedded LLM), score each on "
                    "the task reward, print a table and write a learning-curve PNG. 3 seeds make a demo, "
                    "not a claim.")
    demo.add_argument("--steps", type=int, default=None, help="env steps per run (default: the demo's budget)")
    demo.add_argument("--seeds", type=int, default=3, help="seeds per shaping (default 3)")
    demo.add_argument("--jobs", type=int, default=None, help="parallel processes (default: CPU count, at most 6)")
    demo.add_argument("--out", default="align_gym_demo", help="output folder (default ./align_gym_demo)")
    demo.set_defaults(run=_cmd_demo)

    bench = commands.add_parser(
        "bench", help="run a grid of env x shaping x agent x seeds, scored on the task reward",
        description="Train every combination of envs, shapings, agents and seeds; evaluate each on the "
                    "unshaped task; write results.jsonl, summary.md and curves_<env>.png to --out. "
                    "Lists are comma-separated (commas inside brackets or quotes belong to the spec); "
                    "a spec's layers stack with +. Rerunning skips finished cells and retries failed ones; "
                    "the exit status is 1 if any cell failed.",
        epilog='example: align-gym bench --env Align/KeyDoor-8x8-v0 --shaping "none,pbrs(potential=reference)" '
               "--agent ppo --seeds 5 --steps 200000 --out results/kd")
    bench.add_argument("--config", help="a TOML or YAML file describing the grid (instead of the flags below)")
    bench.add_argument("--env", help="env ids, comma-separated")
    bench.add_argument("--shaping", help='shaping specs, e.g. "none,pbrs(potential=reference),pbrs(potential=reference)+pbrs(potential=distance, name=d)"')
    bench.add_argument("--agent", default="ppo", help="ppo, a2c, dqn, sac, maskable_ppo, action_ppo (comma-separated; action_ppo takes --n-envs 1)")
    bench.add_argument("--seeds", type=int, default=5, help="number of seeds (default 5)")
    bench.add_argument("--first-seed", type=int, default=None,
                       help="seeds are FIRST..FIRST+N-1 (default 1000: the bench's seeds, disjoint from the "
                            "seeds 0-2 its default settings were tuned on)")
    bench.add_argument("--steps", type=int, default=100_000, help="env steps per cell (default 100000)")
    bench.add_argument("--eval-every", type=int, default=None, help="env steps between evaluations (default steps/20)")
    bench.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation (default 10)")
    bench.add_argument("--n-envs", type=int, default=8, help="parallel envs per agent (default 8)")
    bench.add_argument("--threshold", type=float, default=0.8, help="success rate for 'steps to threshold' (default 0.8)")
    bench.add_argument("--jobs", type=int, default=None, help="cells run at once (default: CPU count)")
    bench.add_argument("--backend", choices=["local", "ray"], default="local", help="local processes or Ray tasks")
    bench.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    bench.add_argument("--out", required=True, help="output folder")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.set_defaults(run=_cmd_bench)

    report = commands.add_parser("report", help="rebuild summary.md and the plots of a bench folder",
                                 description="Regenerate summary.md, verdicts.md and curves_<env>.png from DIR/results.jsonl.")
    report.add_argument("dir", help="a bench output folder")
    report.add_argument("--threshold", type=float, default=None, help="success threshold (default: the grid's)")
    report.add_argument("--baseline", action="append", default=None, metavar="SPEC",
                        help="also compare every entry with this shaping (its spec as in the grid), paired by seed; "
                             "repeatable; `none` is always a baseline")
    report.set_defaults(run=_cmd_report)

    serve_llm = commands.add_parser(
        "serve-llm", help="serve a local model over an OpenAI-compatible HTTP API",
        description="Load a local model once and serve /v1/models, /v1/chat/completions and /v1/completions "
                    "as vLLM's server does (logprobs and top_logprobs, n, stop, seed, finish_reason, streaming; "
                    "echo+logprobs for scoring), so several env processes share it through "
                    "openai:MODEL@http://HOST:PORT/v1. Concurrent requests share forward passes; a request "
                    "whose client leaves is cancelled; one SIGTERM stops the server. Flags follow `vllm serve`.")
    serve_llm.add_argument("--model", default="hf:default", help="hf:default or hf:/path/to/model (default hf:default)")
    serve_llm.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve_llm.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve_llm.add_argument("--served-model-name", default=None, help="model id clients ask for (default: the model's name)")
    serve_llm.add_argument("--batch-window", type=float, default=0.05,
                           help="seconds between arrivals that still join one batch (default 0.05)")
    serve_llm.add_argument("--max-batch", type=int, default=32,
                           help="most sequences decoded together, and so in one request: prompts x n (default 32)")
    serve_llm.add_argument("--max-model-len", type=int, default=None,
                           help="most tokens of a prompt and its completion; longer requests get 400 "
                                "(default: the model's context)")
    serve_llm.add_argument("--batch-invariant", action="store_true",
                           help="decode each request in forward passes of its own, so that what it is batched "
                                "with cannot change a greedy or seeded answer (slower under concurrent load)")
    serve_llm.set_defaults(run=_cmd_serve_llm)

    serve_env = commands.add_parser(
        "serve-env", help="serve a text, tool or web env as an OpenEnv environment server",
        description="Serve an Align text, tool or web env as an OpenEnv environment server (WebSocket /ws, plus "
                    "OpenEnv's HTTP routes), each client session with its own env instance. Actions are "
                    '{"action": "<text>"}; observations carry text, valid_actions, state_hash, env_reward and '
                    "reward_terms; the reward is the task reward plus the terms. Any OpenEnv client "
                    "(GenericEnvClient; TRL, SkyRL, ART, Unsloth, NeMo Gym) reads it.")
    serve_env.add_argument("--env", required=True, help="an Align text, tool or web env id, e.g. Align/ToolCalc-v0")
    serve_env.add_argument("--shaping", default="none", help="a shaping spec, layers joined by + (default none)")
    serve_env.add_argument("--gamma", type=float, default=1.0,
                           help="the trainer's discount (default 1: GRPO-style trainers score undiscounted returns)")
    serve_env.add_argument("--max-concurrent", type=int, default=8,
                           help="most sessions at once; a client past it is refused with the reason (default 8)")
    serve_env.add_argument("--idle-timeout", type=float, default=600, metavar="SECONDS",
                           help="close a session whose client sends nothing for this long, freeing its slot; "
                                "0 never (default 600)")
    serve_env.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve_env.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve_env.set_defaults(run=_cmd_serve_env)

    serve_web = commands.add_parser(
        "serve-web", help="serve a web env's pages to people and browsers",
        description="Serve the pages of Align/WebShop-v0 or Align/WebForm-v0 over HTTP: buttons and forms work in "
                    "any browser; the first page shows the instruction, the last the score. Actions are POST forms "
                    "carrying the episode's token, and a request must name this server as its Host, so other "
                    "sites open in the same browser cannot drive the episode.")
    serve_web.add_argument("--env", default="Align/WebShop-v0", help="a web env id (default Align/WebShop-v0)")
    serve_web.add_argument("--seed", type=int, default=0, help="the first episode's seed, 0 to 2**63 - 1 (default 0)")
    serve_web.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve_web.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve_web.set_defaults(run=_cmd_serve_web)

    search = commands.add_parser(
        "reward-search", help="search for an LLM-written potential or reward (Eureka, Text2Reward)",
        description="The LLM writes shaping code from the env's task and state schema; each candidate is checked "
                    "in the sandbox (errors fed back for repair), trained on the search seeds, and reflected on "
                    "(Eureka); the best by task return is compared with none and the reference potential on fresh "
                    "seeds. Everything is saved in --out; summary.json lists every candidate and why it lost.",
        epilog="example: align-gym reward-search --env Align/PointMaze-v0 --candidates my_potentials/ --out runs/rs")
    search.add_argument("--env", required=True, help="an Align env id (it needs a state_schema)")
    search.add_argument("--kind", default="potential", choices=["potential", "reward"],
                        help="potential (invariant, the default) or reward (added raw, not invariant)")
    search.add_argument("--llm", default="hf:default", help="the writer's client spec (default hf:default)")
    search.add_argument("--iterations", type=int, default=2, help="rounds of generation and reflection (default 2)")
    search.add_argument("--samples", type=int, default=4, help="candidates per iteration (default 4)")
    search.add_argument("--repairs", type=int, default=1, help="repairs per candidate (default 1)")
    search.add_argument("--candidates", default=None, help="a folder of .py candidates: no LLM is loaded or called")
    search.add_argument("--agent", default="ppo", help="the SB3 agent (default ppo)")
    search.add_argument("--steps", type=int, default=50_000, help="training steps per candidate and seed (default 50000)")
    search.add_argument("--search-seeds", default="0,1", help="seeds the search trains on (default 0,1)")
    search.add_argument("--final-steps", type=int, default=50_000, help="the fresh-seed comparison's steps (default 50000)")
    search.add_argument("--fresh-seeds", default="100,101,102,103,104", help="the comparison's seeds (default 100-104)")
    search.add_argument("--jobs", type=int, default=2, help="training runs at once (default 2)")
    search.add_argument("--out", required=True, help="the folder everything is saved in")
    search.set_defaults(run=_cmd_reward_search)

    train_llm = commands.add_parser(
        "train-llm", help="train a language model as the agent (action-PPO or token-PPO)",
        description="Train a language model on a text, tool or web env: action-ppo scores the env's valid actions by "
                    "their token likelihood (TWOSOME, GLAM); token-ppo writes free-text actions token by token. Any "
                    "shaping spec; the task return is what is reported, in the progress line as the mean over the "
                    "last 20 episodes ± its standard error. --out keeps log.jsonl and a checkpoint written "
                    "after every update; --resume goes on from it. " + _train_llm_defaults_text(),
        epilog="example: align-gym train-llm --env Align/TextQuest-easy-v0 --model tiny --algo action-ppo --steps 2048 "
               "--out runs/tq")
    train_llm.add_argument("--env", required=True, help="a text, tool or web env id, e.g. Align/TextQuest-easy-v0")
    train_llm.add_argument("--model", default="tiny", help="tiny, embedded, or a local Hugging Face causal-LM folder")
    train_llm.add_argument("--algo", default="action-ppo", choices=["action-ppo", "token-ppo"])
    train_llm.add_argument("--shaping", default="none", help="a shaping spec, layers joined by + (default none)")
    train_llm.add_argument("--steps", type=int, default=4096, help="env steps (turns) in all (default 4096)")
    train_llm.add_argument("--lr", type=float, default=None, help="the model's learning rate (default: per --model, above)")
    train_llm.add_argument("--placement", default=None, help="token-ppo: last_token, uniform, discounted or value_shaping")
    train_llm.add_argument("--normalisation", default=None, help="action-ppo: token, word or none")
    train_llm.add_argument("--seed", type=int, default=0)
    train_llm.add_argument("--device", default="auto", help="auto (cuda where present), cpu or cuda")
    train_llm.add_argument("--out", required=True, help="the folder for log.jsonl and checkpoint.pt")
    train_llm.add_argument("--resume", action="store_true",
                           help="go on from --out's checkpoint; settings other than --steps and --device must be the "
                                "checkpoint's, or the resume is refused with the differences")
    train_llm.add_argument("--allow-change", default=None, metavar="NAMES",
                           help="with --resume: the settings you mean to change, comma-separated, as the refusal names "
                                "them (e.g. lr)")
    train_llm.set_defaults(run=_cmd_train_llm)

    llm = commands.add_parser("llm", help="LLM layer tools (the on-disk cache)", description="LLM layer tools.")
    llm_commands = llm.add_subparsers(dest="llm_command", metavar="COMMAND", required=True)
    cache = llm_commands.add_parser("cache", help="inspect, export or import the LLM call cache",
                                    description="stats: counts and size; export FILE: write every row as JSONL; "
                                                "import FILE: add the rows of a JSONL export (duplicates ignored).")
    cache.add_argument("action", choices=["stats", "export", "import"])
    cache.add_argument("file", nargs="?", help="the JSONL file for export or import")
    cache.add_argument("--path", default=None, help="cache file (default $ALIGN_GYM_CACHE or ~/.cache/align_gym/llm_cache.sqlite)")
    cache.set_defaults(run=_cmd_cache)
    check = llm_commands.add_parser(
        "judge-check", help="false positives of an LLM judge on master keys, accuracy on real captions",
        description="Run a labelling or rating template on 'master keys' (contentless answers such as ':' or "
                    "'Thought process:', which fool generative judges: Zhao et al. 2025) and on captions of the "
                    "env labelled by its oracle (did the step make progress?); print the false-positive rate "
                    "and the accuracy with counts and 95% intervals.",
        epilog="example: align-gym llm judge-check --llm hf:default --template oni_label --env Align/KeyDoor-5x5-v0")
    check.add_argument("--llm", default="hf:default",
                       help="the judge's client spec, or several, comma-separated; oracle(error=p, mode=flip|positive) "
                            "measures an oracle's corruption (default hf:default)")
    check.add_argument("--template", default="oni_label",
                       help="oni_label, rate_number, calm_step (captions) or web_progress (web pages) (default oni_label)")
    check.add_argument("--env", default="Align/KeyDoor-5x5-v0", help="env whose captions are judged")
    check.add_argument("--per-class", type=int, default=50, help="progress and other captions, each (default 50)")
    check.add_argument("--seed", type=int, default=0, help="seed of the random policy collecting captions")
    check.add_argument("--json", default=None, help="also write the report as JSON to this file")
    check.set_defaults(run=_cmd_judge_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(__version__)
        return 0
    if not getattr(args, "run", None):
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except (ValueError, FileNotFoundError, ImportError) as error:
        # Bad input (an unknown env or shaping, a refused grid, a missing model or extra): the
        # reason on one line, not a traceback. ALIGN_GYM_TRACEBACK=1 shows where it came from.
        if os.environ.get("ALIGN_GYM_TRACEBACK"):
            raise
        sys.exit(f"align-gym {args.command}: {type(error).__name__}: {error}")


if __name__ == "__main__":
    sys.exit(main())
