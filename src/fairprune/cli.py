"""``fairprune`` command line: parses, calls the library, returns an exit code."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

import pandas as pd

from fairprune.errors import FairpruneError

__all__ = ["main"]

TABLE_COLUMNS = [
    "label",
    "structure",
    "sparsity",
    "seed",
    "accuracy",
    "equalized_odds_difference",
    "demographic_parity_difference",
    "accuracy_gap",
    "worst_group_accuracy",
    "fair",
    "params_ratio",
    "latency_ratio",
    "train_iterations",
    "wall_seconds",
]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fairprune", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment grid (defaults: Adult, sex, equalized odds)")
    run.add_argument("config", nargs="?", help="TOML config file (defaults when omitted)")
    run.add_argument("--out", default="runs/default", help="output directory (default: runs/default)")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set data.name=compas (repeatable)",
    )
    run.add_argument(
        "--restart",
        action="store_true",
        help="start over in an output directory that holds another config",
    )
    run.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: one seed, two sparsities, 1/10 of every iteration budget, 32 px images",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    report = sub.add_parser("report", help="write report.md and plots from an output directory")
    report.add_argument("out", help="output directory of 'fairprune run'")
    return parser


def format_results(frame: pd.DataFrame) -> str:
    """The results table for the terminal."""
    if frame.empty:
        return "(no runs)"
    cols = [c for c in TABLE_COLUMNS if c in frame.columns and frame[c].notna().any()]
    if "structure" in cols and frame["structure"].nunique() < 2:
        cols.remove("structure")  # says nothing when every run has the same
    return frame[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}")


def _run(args: argparse.Namespace) -> int:
    from fairprune.config import load_config
    from fairprune.experiment import run_experiment

    cfg = load_config(args.config, args.overrides, quick_run=args.quick)
    start = time.perf_counter()
    frame = run_experiment(cfg, args.out, restart=args.restart, progress=not args.quiet)
    print(format_results(frame))
    print(f"\nresults: {args.out}/results.csv  config: {args.out}/config.json")
    print(f"wall time of this invocation: {time.perf_counter() - start:.1f} s")
    return 0


def _report(args: argparse.Namespace) -> int:
    from fairprune.report import format_summary_table, write_report

    report = write_report(args.out)
    print(format_summary_table(report.summary))
    print(f"\nreport: {report.path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fairprune`` command."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _run(args) if args.command == "run" else _report(args)
    except FairpruneError as err:  # a user's input or state: one line; anything else is a bug
        print(f"fairprune: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
