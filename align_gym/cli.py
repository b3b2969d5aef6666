"""The ``align-gym`` command line: ``list`` and ``demo`` (later issues add subcommands)."""

from __future__ import annotations

import argparse
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="align-gym", description="Sparse-reward tasks and reward shaping for Gymnasium.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    listing = commands.add_parser("list", help="list the registered envs (or shapings)",
                                  description="List every registered Align env with its task, or every shaping method.")
    listing.add_argument("--shaping", action="store_true", help="list shaping methods instead of envs")
    listing.set_defaults(run=_cmd_list)

    demo = commands.add_parser(
        "demo", help="PPO on KeyDoor-8x8 without shaping vs the reference potential",
        description="Train PPO on Align/KeyDoor-8x8-v0 with no shaping and with potential-based shaping "
                    "(the reference potential), score both on the task reward, print a table and "
                    "write a learning-curve PNG. 3 seeds make a demo, not a claim.")
    demo.add_argument("--steps", type=int, default=None, help="env steps per run (default: the demo's budget)")
    demo.add_argument("--seeds", type=int, default=3, help="seeds per shaping (default 3)")
    demo.add_argument("--jobs", type=int, default=None, help="parallel processes (default: CPU count, at most 6)")
    demo.add_argument("--out", default="align_gym_demo", help="output folder (default ./align_gym_demo)")
    demo.set_defaults(run=_cmd_demo)
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
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
