"""``fairprune`` command line: parses, calls the library, returns an exit code."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

import pandas as pd

from fairprune.errors import FairpruneError
from fairprune.schema import FLAG_COLUMNS, group_names_in, is_yes

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
    "val_violation",
    "fair",
    "certified",
    "violation_bound",
    "trivial",
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
        help="smoke run: one seed, two sparsities, 1/10 of every iteration budget, 32 px images, "
        "image splits capped at stratified subsets (10,000 train, 2,500 val/test); prints what it "
        "scaled down",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument(
        "--jobs",
        type=_positive_int,
        default=1,
        metavar="N",
        help="runs at a time, each in its own process (default: 1; the results are the same)",
    )
    report = sub.add_parser("report", help="write report.md and plots from an output directory")
    report.add_argument("out", help="output directory of 'fairprune run'")
    _add_shipping(sub)
    return parser


def _add_shipping(sub: argparse._SubParsersAction) -> None:
    """The ``export`` and ``evaluate`` subcommands (see ``fairprune.sweep.shipping``)."""
    export = sub.add_parser("export", help="ship one run of a finished sweep: safetensors, model card, ONNX")
    export.add_argument("out", help="output directory of 'fairprune run'")
    export.add_argument("--method", help="method or variant label of the run (e.g. bifp)")
    export.add_argument("--sparsity", type=float, help="target sparsity of the run (e.g. 0.9)")
    export.add_argument("--seed", type=int, help="seed of the run (needed when the sweep has several)")
    export.add_argument("--structure", choices=["unstructured", "channel"], help="structure of the run")
    choice = export.add_mutually_exclusive_group()
    choice.add_argument("--run-id", help="the run's id in results.csv (instead of the fields above)")
    choice.add_argument(
        "--best",
        action="store_true",
        help="the pruned run with the highest validation accuracy among those within tau (certified "
        "ones first, where the sweep records them), at --sparsity (default: any), narrowed by the "
        "fields above; prints which it picked",
    )
    export.add_argument("--to", required=True, help="directory to write the shipped model into")
    export.add_argument(
        "--weights",
        choices=["auto", "dense", "sparse"],
        default="auto",
        help="weight layout (auto: sparse, bitmask or indices + values, when that is under 90%% of dense)",
    )
    export.add_argument("--onnx", action="store_true", help="also write model.onnx, checked against PyTorch")
    evaluate = sub.add_parser("evaluate", help="re-check a shipped model's card on its data or on other data")
    evaluate.add_argument("directory", help="directory written by 'fairprune export'")
    evaluate.add_argument(
        "--data",
        help="other data: a CSV file / image folder read like the card's data, or a TOML file with a "
        "[data] table; the card's metrics are printed beside the new ones. Or MODULE:FUNCTION "
        "returning the card's data as fairprune.prune takes it ((train, val, test)), checked against "
        "the card",
    )
    evaluate.add_argument(
        "--model",
        metavar="MODULE:FACTORY",
        help="the architecture of a model exported from the Python API: a callable that returns the "
        "nn.Module (e.g. mypkg.models:build); its weights are loaded from the directory",
    )
    evaluate.add_argument(
        "--split",
        choices=["train", "val", "test", "all"],
        help="split to evaluate (default: test on the card's data, all on --data)",
    )
    evaluate.add_argument(
        "--tolerance",
        type=float,
        default=1e-6,
        help="largest |recomputed - card| per metric that counts as agreement (default 1e-6)",
    )


def _group_line(frame: pd.DataFrame) -> str | None:
    """``"groups of race: White, Black, ..."`` from the per-group columns, when they are named."""
    groups = group_names_in(frame.columns)
    if not groups or all(g.isdigit() for g in groups):
        return None
    attributes = frame["sensitive_attribute"].dropna().unique() if "sensitive_attribute" in frame else []
    return f"groups of {' / '.join(map(str, attributes)) or 'the sensitive attribute'}: {', '.join(groups)}"


def format_results(frame: pd.DataFrame) -> str:
    """The results table for the terminal: the main columns, ``fair`` and ``trivial`` as ``yes`` or
    ``-``, and a line naming the groups when the results name them."""
    if frame.empty:
        return "(no runs)"
    cols = [c for c in TABLE_COLUMNS if c in frame.columns and frame[c].notna().any()]
    if "structure" in cols and frame["structure"].nunique() < 2:
        cols.remove("structure")  # says nothing when every run has the same
    shown = frame[cols].copy()
    for flag in FLAG_COLUMNS:
        if flag in shown:
            shown[flag] = shown[flag].map(lambda v: "yes" if is_yes(v) else "-")
    table = shown.to_string(index=False, float_format=lambda v: f"{v:.4f}")
    from fairprune.reporting import certificate_line  # the same sentence as report.md

    lines = [line for line in (_group_line(frame), certificate_line(frame)) if line is not None]
    return "\n".join([table, *lines])


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of processes, got {text!r}")
    return value


def _run(args: argparse.Namespace) -> int:
    from fairprune.config import load_config, quick, quick_changes
    from fairprune.distributed import is_main_process
    from fairprune.sweep import run_experiment

    cfg = load_config(args.config, args.overrides)
    if args.quick:
        cfg, full = quick(cfg), cfg
        print("--quick scaled down:\n  " + "\n  ".join(quick_changes(full, cfg)), flush=True)
    start = time.perf_counter()
    frame = run_experiment(cfg, args.out, restart=args.restart, progress=not args.quiet, jobs=args.jobs)
    if not is_main_process():  # under torchrun: rank 0 reports
        return 0
    print(format_results(frame))
    print(f"\nresults: {args.out}/results.csv  config: {args.out}/config.json")
    print(f"wall time of this invocation: {time.perf_counter() - start:.1f} s")
    return 0


def _report(args: argparse.Namespace) -> int:
    from fairprune.reporting import format_summary_table, write_report

    report = write_report(args.out)
    print(format_summary_table(report.summary))
    print(f"\nreport: {report.path}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from fairprune.sweep import best_in, export_run

    fields = ("method", "sparsity", "seed", "structure")
    choice: dict[str, Any] = {name: getattr(args, name) for name in fields}
    if args.best:
        run_id, line = best_in(args.out, **choice)
        print(line, flush=True)
        choice = {"run_id": run_id}
    else:
        choice["run_id"] = args.run_id
    to = export_run(args.out, args.to, weights=args.weights, onnx=args.onnx, **choice)
    print(f"shipped model: {to}  card: {to}/MODEL_CARD.md")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from fairprune.sweep import evaluate_directory

    result = evaluate_directory(
        args.directory, data=args.data, split=args.split, tolerance=args.tolerance, model=args.model
    )
    print(result.format())
    if result.onnx_max_abs_diff is not None:
        print(f"\nmodel.onnx vs PyTorch on this split: max abs difference {result.onnx_max_abs_diff:.3g}")
    if not result.compared:
        print(f"\n'card' is the card's test split; 'measured' is the {result.split} split of the given data")
    elif result.passed:
        print(f"\nevery metric of the {result.split} split agrees with the card (tol. {result.tolerance:g})")
    for failure in result.failures:
        print(f"fairprune: {failure}", file=sys.stderr)
    return 0 if result.passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fairprune`` command."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        handlers = {"run": _run, "report": _report, "export": _export, "evaluate": _evaluate}
        return handlers[args.command](args)
    except FairpruneError as err:  # a user's input or state: one line; anything else is a bug
        print(f"fairprune: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
