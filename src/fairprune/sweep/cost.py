"""What a fair model cost: training iterations (and seconds) until a run first had one.

The BiFP paper's Fig. 6 counts, for each method, the training iterations until the first
checkpoint that is within the fairness tolerance tau *and* within one accuracy point of the best
baseline at that sparsity. This module reads that off the run records: every validation row of a
run's history holds the iterations and seconds spent so far, the validation accuracy, the exact
violation of the experiment's fairness metric (measured also for unconstrained methods, never
enforced there) and whether the state was trivial.

The reference accuracy of a run is the best final validation accuracy of any pruned run (any
method) of the same data cell, seed, sparsity, structure and tau: "as accurate as the best
method there" is the stricter reading of "the best baseline", and it needs no list of which
methods are baselines. Checkpoints are validated on ``train.eval_samples`` (when set), the final
accuracy on the whole validation split.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from fairprune.methods_spec import methods_with
from fairprune.schema import CONSTRAINED_COLUMNS, COST_COLUMNS

__all__ = [
    "ACCURACY_SLACK",
    "TWO_STAGE_METHODS",
    "COST_COLUMNS",
    "first_fair_checkpoint",
    "iterations_to_fair",
    "iterations_ratio",
]

ACCURACY_SLACK = 0.01  # "within 1 point of the best baseline's accuracy"
TWO_STAGE_METHODS = methods_with("two_stage")
"""Methods that prune first and fix fairness after (the paper's two-stage baselines and the
practitioner's alternatives), against which BiFP's iterations are compared."""
TEST_SLACK = 0.01  # fair_test: the test value of the constrained metric within tau + this
_CELL = ("dataset", "target", "sensitive_attribute", "seed", "sparsity", "structure", "tolerance")


def first_fair_checkpoint(
    history: Sequence[Mapping[str, Any]],
    tolerance: float,
    reference_accuracy: float,
    *,
    slack: float = ACCURACY_SLACK,
    sparsity: float | None = None,
) -> tuple[float, float]:
    """``(iterations, seconds)`` at the first history row with ``violation <= tolerance``,
    ``val_accuracy >= reference_accuracy - slack`` and not trivial; ``(nan, nan)`` if none.

    With the run's target ``sparsity``, rows recorded below it (a row's ``sparsity`` key: IMP's
    early rounds, fair_then_prune's dense phase) are not a pruned model and do not count."""
    for row in history:
        violation, accuracy = row.get("violation"), row.get("val_accuracy")
        if violation is None or accuracy is None or "iterations" not in row:
            continue
        if sparsity is not None and row.get("sparsity", sparsity) < sparsity - 1e-9:
            continue
        if not (math.isfinite(violation) and violation <= tolerance + 1e-12):
            continue
        if accuracy >= reference_accuracy - slack - 1e-12 and not row.get("trivial", 0.0):
            return float(row["iterations"]), float(row.get("seconds", math.nan))
    return math.nan, math.nan


def iterations_to_fair(
    results: pd.DataFrame, histories: Mapping[str, Sequence[Mapping[str, Any]]]
) -> pd.DataFrame:
    """``results`` with :data:`COST_COLUMNS` filled in for every pruned run, and ``fair_test``
    (the test value of the constrained metric within ``tau + TEST_SLACK``, and not trivial) for
    every run.

    A run without a validation history (a method that does not train) counts with its final
    state: its ``train_iterations`` when its final validation state is fair and accurate enough.
    The dense rows get NaN (they are the reference, not a pruned model).
    """
    out = results.copy()
    for column in COST_COLUMNS:
        out[column] = math.nan
    if out.empty:
        return out
    out["fair_test"] = [_fair_on_test(row) for _, row in out.iterrows()]
    pruned = out["method"] != "dense"
    keys = [c for c in _CELL if c in out.columns]
    best = out[pruned].groupby(keys, dropna=False)["val_accuracy"].transform("max")
    out.loc[pruned, "reference_accuracy"] = best
    for i in out.index[pruned]:
        row = out.loc[i]
        history = histories.get(str(row["run_id"])) or [_final_row(row)]
        its, secs = first_fair_checkpoint(
            history,
            float(row["tolerance"]),
            float(row["reference_accuracy"]),
            sparsity=float(row["sparsity"]),
        )
        out.loc[i, ["iterations_to_fair", "seconds_to_fair"]] = [its, secs]
    return out


def _fair_on_test(row: pd.Series) -> bool:
    column = CONSTRAINED_COLUMNS.get(str(row.get("fairness")))
    if column is None or column not in row or not math.isfinite(float(row[column])):
        return False
    return bool(float(row[column]) <= float(row["tolerance"]) + TEST_SLACK) and not bool(
        row.get("trivial", False)
    )


def _final_row(row: pd.Series) -> dict[str, float]:
    return {
        "iterations": float(row["train_iterations"]),
        "seconds": float(row["wall_seconds"]),
        "val_accuracy": float(row["val_accuracy"]),
        "violation": float(row["val_violation"]),
        "trivial": float(bool(row["trivial"])),
    }


def iterations_ratio(results: pd.DataFrame, method: str, versus: Sequence[str]) -> pd.DataFrame:
    """How often and how fast each variant reached a fair model, per (structure, sparsity).

    Columns ``structure, sparsity, label, method, reached, runs, mean_iterations`` (the mean over
    the runs that reached one); the rows of ``method`` also get ``ratio`` = their mean over the
    smallest mean among the variants of the ``versus`` methods, and ``versus_best``, that
    variant's label (NaN / empty when either never reached a fair model).
    """
    if "structure" not in results:  # results from before structured pruning existed
        results = results.assign(structure="unstructured")
    pruned = results[(results["method"] != "dense") & results["method"].isin([method, *versus])]
    summary = (
        pruned.groupby(["structure", "sparsity", "label", "method"], sort=True)["iterations_to_fair"]
        .agg(reached="count", runs="size", mean_iterations="mean")
        .reset_index()
    )
    summary["ratio"], summary["versus_best"] = math.nan, ""
    for _, cell in summary.groupby(["structure", "sparsity"]):
        others = cell[cell["method"].isin(versus)].dropna(subset=["mean_iterations"])
        if others.empty:
            continue
        best = others.loc[others["mean_iterations"].idxmin()]
        own = cell.index[cell["method"] == method]
        summary.loc[own, "ratio"] = summary.loc[own, "mean_iterations"] / best["mean_iterations"]
        summary.loc[own, "versus_best"] = best["label"]
    return summary
