"""The multiplier controllers compared run by run: oscillation of the validation violation.

    python configs/faces/oscillation.py BASE OTHER [OTHER ...] [--method bifp]

For each sweep, every run of ``--method`` (matched across sweeps by sparsity and seed: the same
dense model and data) gives :func:`fairprune.reporting.convergence.oscillation` of its history — the
violation's standard deviation and range over the last half of the checks, the multiplier's total
variation and maximum — and its test accuracy. Prints the mean of each per sweep, with each OTHER
sweep's paired difference to BASE and its 95% t-interval.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from fairprune.reporting import oscillation

MEASURES = ("violation_std", "violation_range", "multiplier_tv", "multiplier_max")


def measures(sweep: Path, method: str) -> pd.DataFrame:
    """One row per run of ``method``: its oscillation measures and test accuracy."""
    rows = []
    for path in sorted((sweep / "runs").glob(f"{method}__*.json")):
        record = json.loads(path.read_text())
        result = record["result"]
        rows.append({
            "sparsity": result["sparsity"], "seed": result["seed"], **oscillation(record["history"]),
            "accuracy": result["accuracy"],
        })  # fmt: skip
    if not rows:
        raise SystemExit(f"{sweep}: no run records of method {method!r} under runs/")
    return pd.DataFrame(rows).set_index(["sparsity", "seed"]).sort_index()


def cell(values: pd.Series, base: pd.Series | None) -> str:
    """``mean`` or, against ``base``, ``mean (difference ± half-width)``."""
    if base is None:
        return f"{values.mean():.4f}"
    d = (values - base.loc[values.index]).astype(float)
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
    return f"{values.mean():.4f} ({d.mean():+.4f} ± {half:.4f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("others", type=Path, nargs="+")
    parser.add_argument("--method", default="bifp")
    args = parser.parse_args()
    base = measures(args.base, args.method)
    columns = (*MEASURES, "accuracy")
    print("| sweep | runs | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    print(f"| {args.base.name} | {len(base)} | " + " | ".join(cell(base[c], None) for c in columns) + " |")
    for sweep in args.others:
        other = measures(sweep, args.method)
        other = other.loc[other.index.intersection(base.index)]
        cells = [cell(other[c], base[c]) for c in columns]
        print(f"| {sweep.name} | {len(other)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
