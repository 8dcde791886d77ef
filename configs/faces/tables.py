"""The face protocol's tables and targets, from one or more finished sweeps (issue 12).

    python configs/faces/tables.py runs/faces/celeba_eo [runs/faces/celeba_gap ...] [--json OUT.json]

Per (label, sparsity): mean and 95% t-interval half-width over the seeds of test accuracy,
accuracy gap, equalized-odds difference, worst-group accuracy and iterations to a fair model (over
the runs that reached one), the fraction of runs within tau on validation and on test (tau + 0.01),
then the targets for every BiFP label: test violation within tau + 0.01 in at least 2 of 3 seeds,
mean accuracy at least the best baseline's mean minus 1 point, and iterations to a fair model at
most half the best two-stage method's; and the validation optimism per label: the mean of test
minus validation value of the constrained metric (a constrained method whose dual steps and
checkpoint choice both read the validation split ends with an optimistic validation value).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from fairprune.cost import TWO_STAGE_METHODS
from fairprune.fairness import METRIC_COLUMNS
from fairprune.report import load_results

METRICS = (
    "accuracy",
    "accuracy_gap",
    "equalized_odds_difference",
    "worst_group_accuracy",
    "iterations_to_fair",
)


def mean_interval(values: pd.Series) -> tuple[float, float, int]:
    """Mean, 95% t-interval half-width (NaN below 2 values) and count of the finite values."""
    x = values.to_numpy(dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return math.nan, math.nan, 0
    if len(x) == 1:
        return float(x[0]), math.nan, 1
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(half), len(x)


def _cell(value: tuple[float, float, int], digits: int = 3) -> str:
    mean, half, n = value
    if n == 0:
        return "–"
    if math.isnan(half):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def protocol_table(results: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (label, sparsity), runs in results.groupby(["label", "sparsity"], sort=True):
        row = {"label": label, "method": runs["method"].iloc[0], "sparsity": sparsity, "seeds": len(runs)}
        for metric in METRICS:
            row[metric] = mean_interval(runs[metric])
        row["fair_val"] = f"{int(runs['fair'].astype(bool).sum())}/{len(runs)}"
        row["fair_test"] = f"{int(runs['fair_test'].astype(bool).sum())}/{len(runs)}"
        rows.append(row)
    return pd.DataFrame(rows)


def targets(results: pd.DataFrame) -> list[dict]:
    out = []
    pruned = results[results["method"] != "dense"]
    for sparsity, cell in pruned.groupby("sparsity"):
        for structure, by_structure in cell.groupby("structure"):
            baselines = by_structure[~by_structure["method"].isin(["bifp"])]
            best = baselines.groupby("label")["accuracy"].mean()
            fair_share = baselines.groupby("label")["fair"].mean()
            best_fair = best[fair_share >= 2 / 3 - 1e-9]  # within tau on validation in >= 2 of 3 seeds
            two_stage = baselines[baselines["method"].isin(TWO_STAGE_METHODS)]
            two_stage_its = two_stage.groupby("label")["iterations_to_fair"].mean().dropna()
            for label, runs in by_structure[by_structure["method"] == "bifp"].groupby("label"):
                its = runs["iterations_to_fair"].mean()
                best_two = two_stage_its.min() if len(two_stage_its) else math.nan
                out.append(
                    {
                        "label": label,
                        "sparsity": float(sparsity),
                        "structure": structure,
                        "fair_test": int(runs["fair_test"].astype(bool).sum()),
                        "seeds": len(runs),
                        "accuracy": float(runs["accuracy"].mean()),
                        "best_baseline": str(best.idxmax()) if len(best) else "",
                        "best_baseline_accuracy": float(best.max()) if len(best) else math.nan,
                        "best_fair_baseline": str(best_fair.idxmax()) if len(best_fair) else "",
                        "best_fair_baseline_accuracy": float(best_fair.max()) if len(best_fair) else math.nan,
                        "reached": int(runs["iterations_to_fair"].notna().sum()),
                        "iterations_to_fair": float(its),
                        "best_two_stage": str(two_stage_its.idxmin()) if len(two_stage_its) else "",
                        "best_two_stage_iterations": float(best_two),
                        "ratio": float(its / best_two) if best_two and math.isfinite(best_two) else math.nan,
                    }
                )
    return out


def optimism(results: pd.DataFrame) -> str:
    """Markdown table: per label, mean ± 95% t-interval of (test - validation) of the constrained
    metric over all its runs (sparsities and seeds pooled)."""
    column = METRIC_COLUMNS[results["fairness"].iloc[0]]
    shift = results[column] - results["val_violation"]
    lines = ["| label | test − validation | runs |", "|---|---|---|"]
    for label, values in shift.groupby(results["label"], sort=True):
        lines.append(f"| {label} | {_cell(mean_interval(values), 4)} | {values.notna().sum()} |")
    return "\n".join(lines)


def _markdown(table: pd.DataFrame) -> str:
    headers = ["method", "sparsity", *METRICS, "fair (val)", "fair (test)"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for _, r in table.iterrows():
        cells = [r["label"], f"{r['sparsity']:g}"]
        cells += [_cell(r[m], 0 if m == "iterations_to_fair" else 3) for m in METRICS]
        cells[-1] += f" ({r['iterations_to_fair'][2]}/{r['seeds']})"
        cells += [r["fair_val"], r["fair_test"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _met(ok: bool) -> str:
    return "met" if ok else "missed"


def _iterations_verdict(r: dict) -> str:
    if math.isnan(r["iterations_to_fair"]):
        return "no fair run"
    own = f"{r['iterations_to_fair']:.0f} ({r['reached']}/{r['seeds']} runs)"
    if not math.isfinite(r["ratio"]):
        return f"{own}; no two-stage run reached one"
    versus = f"{r['best_two_stage_iterations']:.0f} ({r['best_two_stage']})"
    return f"{own} vs {versus}: {r['ratio']:.2f} {_met(r['ratio'] <= 0.5)}"


def _verdicts(rows: list[dict]) -> str:
    headers = [
        "BiFP label",
        "sparsity",
        "test within τ+0.01",
        "accuracy vs best baseline",
        "best fair (val) baseline",
        "iterations to fair",
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        within = f"{r['fair_test']}/{r['seeds']} {_met(3 * r['fair_test'] >= 2 * r['seeds'])}"
        accuracy = (
            f"{r['accuracy']:.3f} vs {r['best_baseline_accuracy']:.3f} ({r['best_baseline']}) "
            f"{_met(r['accuracy'] >= r['best_baseline_accuracy'] - 0.01)}"
        )
        fair_accuracy = (
            f"{r['best_fair_baseline_accuracy']:.3f} ({r['best_fair_baseline']})"
            if r["best_fair_baseline"]
            else "none fair"
        )
        cells = [r["label"], f"{r['sparsity']:g}", within, accuracy, fair_accuracy, _iterations_verdict(r)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", nargs="+", help="sweep output directories")
    parser.add_argument("--json", help="also write the tables here")
    args = parser.parse_args()
    everything = {}
    for out in args.out:
        results = load_results(out)
        table, rows = protocol_table(results), targets(results)
        tau = results.loc[results["method"] != "dense", "tolerance"]
        print(f"\n## {out} ({results['fairness'].iloc[0]}, tau {tau.min():.3f}–{tau.max():.3f})\n")
        print(_markdown(table))
        print()
        print(_verdicts(rows))
        print()
        print(optimism(results))
        everything[out] = {"table": json.loads(table.to_json(orient="records")), "targets": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(everything, indent=1))


if __name__ == "__main__":
    main()
