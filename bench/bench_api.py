"""``fairprune.prune`` with every default on a trained MLP: the measured table of docs/python-api.md.

For COMPAS (race) and Adult (sex): ``build_model("mlp", hidden=[64, 32])`` trained 1500 steps
with ``train_weights`` (seed 0), then ``fairprune.prune(model, train, val, sparsity=0.9,
test=test)`` (BiFP, equalized odds, tolerance = the dense model's validation value, budgets
scaled to the training set). One torch thread.

    PYTHONPATH=src python bench/bench_api.py
"""

from __future__ import annotations

import time

import torch

import fairprune
from fairprune.engine import Task, TrainConfig, train_weights
from fairprune.models import build_model

DATA = (("compas", "race"), ("adult", "sex"))


def main() -> None:
    torch.set_num_threads(1)
    print("| data | train rows | call s | iterations | tau | test acc dense -> pruned | test EO | val EO |")
    for name, attribute in DATA:
        torch.manual_seed(0)
        splits = fairprune.load_dataset(name, sensitive_attribute=attribute)
        model = build_model("mlp", tuple(splits.train.x.shape[1:]), 2, hidden=[64, 32])
        train_weights(model, Task(splits, None, TrainConfig(), seed=0), steps=1500)
        start = time.perf_counter()
        result = fairprune.prune(
            model, splits.train, splits.val, sparsity=0.9, test=splits.test,
            group_names=splits.group_names, progress=False,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        test, val = result.metrics["test"], result.metrics["val"]["pruned"]
        eo = "equalized_odds_difference"
        print(
            f"| {name} ({attribute}) | {len(splits.train)} | {seconds:.1f} | {result.train_iterations} "
            f"| {result.tolerance:.3f} | {test['dense']['accuracy']:.3f} -> {test['pruned']['accuracy']:.3f} "
            f"| {test['dense'][eo]:.3f} -> {test['pruned'][eo]:.3f} | {val[eo]:.3f} |"
        )


if __name__ == "__main__":
    main()
