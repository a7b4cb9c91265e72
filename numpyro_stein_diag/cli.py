"""The ``numpyro-stein-diag`` command (also ``python -m numpyro_stein_diag``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="numpyro-stein-diag",
        description="Check posterior samples for missed and misweighted modes.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="show the KSD's blindness to a missing mode")
    demo.add_argument("--n", type=int, default=1000, help="draws per sample (default 1000)")
    demo.add_argument("--repeats", type=int, default=20, help="samples of each kind (default 20)")
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        run_demo(n=args.n, repeats=args.repeats, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
