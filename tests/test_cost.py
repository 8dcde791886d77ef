"""Iterations to a fair model (the paper's Fig. 6 count), on hand-built run records."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from fairprune.sweep.cost import first_fair_checkpoint, iterations_ratio, iterations_to_fair


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


def test_checkpoints_below_the_target_sparsity_are_not_a_pruned_model():
    """IMP's early rounds and fair_then_prune's dense phase record their sparsity: a fair,
    accurate checkpoint there does not count for a run whose target is higher."""
    history = [
        {**_h(25, 0.95, 0.01), "sparsity": 0.0},  # the dense fair phase: fair and accurate
        {**_h(50, 0.95, 0.01), "sparsity": 0.5},  # an IMP round below the target
        _h(75, 0.95, 0.20),  # at the target (untagged rows are at the target), unfair
        _h(100, 0.95, 0.01),  # at the target, fair
    ]
    assert first_fair_checkpoint(history, 0.10, 0.95, sparsity=0.9) == (100.0, 1.0)
    assert first_fair_checkpoint(history, 0.10, 0.95, sparsity=0.5) == (50.0, 0.5)
    assert first_fair_checkpoint(history, 0.10, 0.95) == (25.0, 0.25)  # no target: every row


def test_imp_and_fair_then_prune_tag_their_rows_below_the_target(planted_splits):
    from fairprune.engine import Task, TrainConfig
    from fairprune.fairness import FairnessObjective
    from fairprune.models import build_model
    from fairprune.pruners import build_pruner, run_pruner

    task = Task(planted_splits, FairnessObjective("equalized_odds", 0.1), TrainConfig(eval_every=5), 0, False)
    n_features = planted_splits.train.x.shape[1]
    imp = run_pruner(
        build_pruner("imp", round_steps=5, rate=0.5), build_model("mlp", (n_features,), 2), 0.8, task
    )
    levels = [row.get("sparsity") for row in imp.history]
    assert levels == [0.5, 0.75, None]  # rounds at 0.5 and 0.75, the last at the target 0.8
    ftp = run_pruner(
        build_pruner("fair_then_prune", fair_steps=5, finetune_steps=5),
        build_model("mlp", (n_features,), 2),
        0.8,
        task,
    )
    assert [row.get("sparsity") for row in ftp.history] == [0.0, None]


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
