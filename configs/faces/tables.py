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

With certificates recorded (issue 18): per label, the runs certified and, among them, the runs
whose claim held on the test split (coverage; the target is at least 95% over every certified
run); the same recorded bounds at other thresholds (a paired bound does not depend on the slack,
so each threshold is its own pre-stated claim, read post hoc); no levelling down (accuracy and
worst-group accuracy against magnitude pruning's of the same seed); how the runs chose their
state (refusals of the levelling-down floor, read from the run records); and the oscillation of
the validation violation over the last half of each constrained run (std, multiplier travel).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from fairprune.fairness import METRIC_COLUMNS
from fairprune.reporting import certificate_line, load_results, oscillation, truthy
from fairprune.sweep import TWO_STAGE_METHODS

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


THRESHOLDS = (0.02, 0.05, 0.1, 0.15, 0.2)


def certification(results: pd.DataFrame) -> str:
    """Markdown: certified runs and their coverage on test, per label and pooled, and at other
    thresholds of the same bounds."""
    line = certificate_line(results)
    if line is None:
        return "(no certificates recorded)"
    runs = results.dropna(subset=["certified"])
    certified, holds = truthy(runs["certified"]), truthy(runs["claim_holds_test"])
    first = runs.iloc[0]
    lines = [
        f"{line}; smallest cell {int(runs['certify_min_cell'].min())}.",
        "",
        "| label | certified | claim held on test (certified) | claim held on test (all) "
        "| bound: median (min–max) |",
        "|---|---|---|---|---|",
    ]
    for label, part in runs.groupby("label", sort=True):
        c, h = certified[part.index], holds[part.index]
        bound = part["violation_bound"]
        lines.append(
            f"| {label} | {int(c.sum())}/{len(part)} | {int((c & h).sum())}/{int(c.sum())} | "
            f"{int(h.sum())}/{len(part)} | {bound.median():.3f} ({bound.min():.3f}–{bound.max():.3f}) |"
        )
    lines.append(
        f"| **all** | {int(certified.sum())}/{len(runs)} | "
        f"{int((certified & holds).sum())}/{int(certified.sum())} | "
        f"{int(holds.sum())}/{len(runs)} | {runs['violation_bound'].median():.3f} |"
    )
    if first["certify_kind"] == "paired":
        lines += [
            "",
            "| threshold ε | certified (bound ≤ ε) | claim held on test among them |",
            "|---|---|---|",
        ]
        for eps in THRESHOLDS:
            c = runs["violation_bound"] <= eps
            h = runs["claim_test"] <= eps + 1e-12
            share = f"{int((c & h).sum())}/{int(c.sum())}" if c.any() else "–"
            lines.append(f"| {eps:g} | {int(c.sum())}/{len(runs)} | {share} |")
    return "\n".join(lines)


def levelling(results: pd.DataFrame) -> str:
    """Markdown: per (label, sparsity), mean over seeds of accuracy and worst-group accuracy minus
    magnitude pruning's (same sparsity and seed), and the seeds more than 1 point below on either."""
    base = results[results["label"] == "magnitude"].set_index(["sparsity", "seed"])
    if base.empty:
        return "(no magnitude runs to compare with)"
    lines = [
        "| label | sparsity | Δ accuracy | Δ worst group | seeds > 1 pt below |",
        "|---|---|---|---|---|",
    ]
    pruned = results[(results["method"] != "dense") & (results["label"] != "magnitude")]
    for (label, sparsity), part in pruned.groupby(["label", "sparsity"], sort=True):
        keys = list(zip(part["sparsity"], part["seed"], strict=True))
        ref = base.reindex(keys)
        d_acc = part["accuracy"].to_numpy() - ref["accuracy"].to_numpy()
        d_worst = part["worst_group_accuracy"].to_numpy() - ref["worst_group_accuracy"].to_numpy()
        below = int(((d_acc < -0.01) | (d_worst < -0.01)).sum())
        lines.append(
            f"| {label} | {sparsity:g} | {_cell(mean_interval(pd.Series(d_acc)))} | "
            f"{_cell(mean_interval(pd.Series(d_worst)))} | {below}/{len(part)} |"
        )
    return "\n".join(lines)


def records(out: str | Path) -> pd.DataFrame:
    """One row per run record: label, sparsity, seed, how it chose its state, and the oscillation
    measures of its history."""
    rows = []
    for path in sorted((Path(out) / "runs").glob("*.json")):
        record = json.loads(path.read_text())
        result, history = record.get("result", {}), record.get("history") or []
        selection = record.get("selection") or ""
        row = {
            "label": result.get("label"),
            "sparsity": result.get("sparsity"),
            "seed": result.get("seed"),
            "refused": "refused for levelling down" in selection,
            "fell_back": "no state met tau" in selection,
        }
        if history and "multiplier" in history[0]:
            row.update(oscillation(history))
        rows.append(row)
    return pd.DataFrame(rows)


def selection_and_oscillation(out: str | Path) -> str:
    """Markdown: per label, runs whose floor refused a state, runs that met no tau, and the mean
    oscillation measures over its constrained runs."""
    frame = records(out)
    if frame.empty:
        return "(no run records)"
    lines = [
        "| label | floor refused a state | no state met τ | violation std (last half) | violation range "
        "| multiplier travel | multiplier max |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, part in frame.groupby("label", sort=True):
        osc = [
            _cell(mean_interval(part[c]), 4) if c in part else "–"
            for c in ("violation_std", "violation_range", "multiplier_tv", "multiplier_max")
        ]
        lines.append(
            f"| {label} | {int(part['refused'].sum())}/{len(part)} | "
            f"{int(part['fell_back'].sum())}/{len(part)} | " + " | ".join(osc) + " |"
        )
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
        print()
        print(certification(results))
        print()
        print(levelling(results))
        print()
        print(selection_and_oscillation(out))
        everything[out] = {"table": json.loads(table.to_json(orient="records")), "targets": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(everything, indent=1))


if __name__ == "__main__":
    main()
