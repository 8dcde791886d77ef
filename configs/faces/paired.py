"""Paired differences between two sweeps of the same grid: a change measured run by run.

    python configs/faces/paired.py BASE NEW [NEW ...] [--methods bifp magnitude] [--against magnitude]

Each NEW sweep's runs are matched to BASE's by (method, sparsity, seed) — the same dense model,
the same splits — and the mean difference NEW - BASE of test accuracy, worst-group accuracy, the
constrained metric on test (the sweep's ``fairness.metric``) and the certificate's bound is
printed per method and sparsity with its 95% t-interval, with NEW's certified count. Both sweeps
must have finished their records (``results.csv``); runs present in only one of them are left out.
``--against METHOD`` pairs every NEW run with BASE's run of METHOD instead (same sparsity and
seed): one method against another, e.g. BiFP in one sweep against magnitude pruning in another.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from fairprune.fairness.metrics import METRIC_COLUMNS

BASE_COLUMNS = {"accuracy": "Δ accuracy", "worst_group_accuracy": "Δ worst group"}


def interval(d: pd.Series | np.ndarray) -> str:
    """``mean ± half-width`` of the 95% t-interval of paired differences."""
    d = pd.Series(np.asarray(d, dtype=float))
    if len(d) < 2:
        return f"{d.mean():+.3f}"
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    return f"{d.mean():+.3f} ± {half:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("new", type=Path, nargs="+")
    parser.add_argument("--methods", nargs="+", default=None)
    parser.add_argument("--against", default=None, help="pair with BASE's runs of this method")
    args = parser.parse_args()
    key = ["label", "sparsity", "seed"]
    base = pd.read_csv(args.base / "results.csv").set_index(key)
    metric = METRIC_COLUMNS[json.loads((args.base / "config.json").read_text())["fairness"]["metric"]]
    columns = {**BASE_COLUMNS, metric: f"Δ {metric} (test)", "violation_bound": "Δ bound"}
    print(f"paired against {args.base}" + (f", method {args.against}" if args.against else ""))
    print("| sweep | method | sparsity | runs | " + " | ".join(columns.values()) + " | certified |")
    print("|---|---|---|---|" + "---|" * len(columns) + "---|")
    for sweep in args.new:
        new = pd.read_csv(sweep / "results.csv").set_index(key)
        new = new[new.index.get_level_values("sparsity") > 0]  # the dense runs are the same models

        def partner(i: tuple) -> tuple:
            return (args.against or i[0], *i[1:])

        both = [i for i in new.index if partner(i) in base.index]
        methods = args.methods or sorted({i[0] for i in both})
        for method in methods:
            mine = [i for i in both if i[0] == method]
            for s in sorted({i[1] for i in mine}):
                idx = [i for i in mine if i[1] == s]
                before = base.loc[[partner(i) for i in idx]]
                diffs = [interval(new.loc[idx, c].to_numpy() - before[c].to_numpy()) for c in columns]
                certified = f"{int(new.loc[idx, 'certified'].astype(bool).sum())}/{len(idx)}"
                cells = [sweep.name, method, f"{s:g}", str(len(idx)), *diffs, certified]
                print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
