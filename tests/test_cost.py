"""Iterations to a fair model (the paper's Fig. 6 count), on hand-built run records."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from fairprune.cost import first_fair_checkpoint, iterations_ratio, iterations_to_fair


def _h(iterations, accuracy, violation, trivial=0.0):
    return {
        "iterations": float(iterations),
        "seconds": iterations / 100,
        "val_accuracy": accuracy,
        "violation": violation,
        "trivial": trivial,
    }


def test_first_fair_checkpoint_needs_tau_accuracy_and_a_non_trivial_state():
    history = [
        _h(10, 0.95, 0.30),  # accurate, unfair
        _h(20, 0.80, 0.05),  # fair, 10 points too inaccurate
        _h(30, 0.90, 0.00, trivial=1.0),  # fair and accurate, but a constant predictor
        _h(40, 0.891, 0.10),  # fair (== tau) and within 1 point of 0.90
        _h(50, 0.95, 0.01),
    ]
    assert first_fair_checkpoint(history, 0.10, 0.90) == (40.0, 0.4)
    assert first_fair_checkpoint(history, 0.10, 0.95) == (50.0, 0.5)
    its, secs = first_fair_checkpoint(history, 0.001, 0.90)
    assert math.isnan(its) and math.isnan(secs)
    # an unmeasured violation (NaN) never counts
    assert math.isnan(first_fair_checkpoint([_h(5, 0.99, math.nan)], 1.0, 0.5)[0])


def _row(run_id, method, sparsity, val_accuracy, *, iterations=100, violation=0.0, label=None):
    return {
        "run_id": run_id,
        "dataset": "d",
        "target": "t",
        "sensitive_attribute": "s",
        "seed": 0,
        "sparsity": sparsity,
        "structure": "unstructured",
        "tolerance": 0.1,
        "method": method,
        "label": label or method,
        "val_accuracy": val_accuracy,
        "val_violation": violation,
        "trivial": False,
        "train_iterations": iterations,
        "wall_seconds": 1.0,
    }


def test_reference_is_the_best_pruned_run_of_the_cell_and_dense_is_excluded():
    results = pd.DataFrame(
        [
            _row("dense", "dense", 0.0, 0.99),
            _row("a", "bifp", 0.5, 0.90),
            _row("b", "prune_then_fair", 0.5, 0.92),
            _row("c", "prune_then_fair", 0.9, 0.70),
            _row("p", "postprocess", 0.5, 0.915, iterations=77, violation=0.05),  # no history
        ]
    )
    histories = {
        "a": [_h(100, 0.905, 0.20), _h(200, 0.911, 0.05)],
        "b": [_h(300, 0.90, 0.05), _h(600, 0.92, 0.08)],
        "c": [_h(50, 0.70, 0.09)],
    }
    out = iterations_to_fair(results, histories).set_index("run_id")
    assert math.isnan(out.loc["dense", "reference_accuracy"])
    assert out.loc["a", "reference_accuracy"] == pytest.approx(0.92)  # best of the 0.5 cell
    assert out.loc["c", "reference_accuracy"] == pytest.approx(0.70)  # its own cell
    assert out.loc["a", "iterations_to_fair"] == 200  # 0.911 >= 0.92 - 0.01
    assert out.loc["b", "iterations_to_fair"] == 600  # 0.90 < 0.91 at 300
    assert out.loc["c", "iterations_to_fair"] == 50
    assert out.loc["p", "iterations_to_fair"] == 77  # the final state counts
    assert out.loc["a", "seconds_to_fair"] == pytest.approx(2.0)

    ratio = iterations_ratio(out.reset_index(), "bifp", ["prune_then_fair", "postprocess"])
    at_half = ratio[(ratio["sparsity"] == 0.5) & (ratio["method"] == "bifp")].iloc[0]
    assert at_half["ratio"] == pytest.approx(200 / 77) and at_half["versus_best"] == "postprocess"
    assert at_half["reached"] == 1 and at_half["runs"] == 1
    assert ratio[ratio["sparsity"] == 0.9]["ratio"].isna().all()  # no bifp run there


def test_fair_test_is_the_test_value_within_tau_plus_slack_and_never_trivial():
    rows = []
    for run_id, eo, trivial in [("a", 0.105, False), ("b", 0.115, False), ("c", 0.0, True)]:
        row = _row(run_id, "bifp", 0.5, 0.9)
        rows.append(
            {**row, "fairness": "equalized_odds", "equalized_odds_difference": eo, "trivial": trivial}
        )
    out = iterations_to_fair(pd.DataFrame(rows), {}).set_index("run_id")
    assert out["fair_test"].to_dict() == {"a": True, "b": False, "c": False}  # tau 0.1 + 0.01
