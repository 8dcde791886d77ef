"""Our certificate beside the Seldonian toolkit's, on the same task (issue 18).

The Seldonian toolkit (``seldonian-engine`` on PyPI, Thomas et al., Science 2019) is the reference
implementation of the recipe behind ``fairness.certify``, for dense models it trains itself. It
pins ``matplotlib==3.5.1``, which does not build on Python 3.11, so it lives in its own
environment, and this script runs in three steps:

    python configs/seldonian/compare.py export /tmp/adult.npz            # our Adult splits, seed 0
    python -m venv /tmp/sdenv && /tmp/sdenv/bin/pip install autograd cma graphviz matplotlib \\
        numpy pandas scikit-learn scipy tqdm pytest && \\
        /tmp/sdenv/bin/pip install --no-deps seldonian-engine==0.8.11
    /tmp/sdenv/bin/python configs/seldonian/compare.py seldonian /tmp/adult.npz --json sd.json
    python configs/seldonian/compare.py fairprune /tmp/adult.npz --json ours.json

The task: Adult, target income > 50K, sensitive attribute sex, "equalized odds difference
<= epsilon with 95% confidence". Seldonian's constraint is written as two (|FPR gap| <= eps and
|FNR gap| <= eps, delta 0.025 each: together max(FPR gap, TPR gap) <= eps, our metric) and trains
its logistic regression on train + validation (its own 40/60 candidate/safety split); ours prunes
the default run's MLP to 90% with BiFP, reading half of validation and certifying on the other
half. Both are measured on the same test split, with hard 0/1 predictions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

EPSILONS = (0.1, 0.2)
CONFIDENCE = 0.95


def _eo(pred: np.ndarray, y: np.ndarray, g: np.ndarray) -> float:
    """Equalized odds difference of hard predictions: max over y of the group rate gap."""
    gaps = []
    for label in (0, 1):
        rates = [pred[(y == label) & (g == k)].mean() for k in np.unique(g)]
        gaps.append(max(rates) - min(rates))
    return float(max(gaps))


def export(out: Path) -> None:
    """Write the default run's Adult splits (seed 0) as arrays."""
    from fairprune.config import DataConfig
    from fairprune.sweep import load_splits

    splits = load_splits(DataConfig(), 0)
    arrays = {
        f"{name}_{field}": getattr(getattr(splits, name), field).numpy()
        for name in ("train", "val", "test")
        for field in ("x", "y", "groups")
    }
    np.savez_compressed(out, group_names=np.array(splits.group_names), **arrays)
    print(f"wrote {out}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items() if k.endswith("_y")))


def seldonian(data: Path) -> dict[str, dict[str, float | bool | str]]:
    """Run the Seldonian algorithm at each epsilon; hard-prediction test metrics."""
    from seldonian.dataset import SupervisedDataSet, SupervisedMetaData
    from seldonian.models import objectives
    from seldonian.models.models import BinaryLogisticRegressionModel
    from seldonian.parse_tree.parse_tree import make_parse_trees_from_constraints
    from seldonian.seldonian_algorithm import SeldonianAlgorithm
    from seldonian.spec import SupervisedSpec
    from seldonian.utils.stats_utils import default_supervised_initial_solution_fn

    d = np.load(data)
    names = [str(n) for n in d["group_names"]]
    x = np.concatenate([d["train_x"], d["val_x"]]).astype(np.float64)
    y = np.concatenate([d["train_y"], d["val_y"]]).astype(np.int64)
    g = np.concatenate([d["train_groups"], d["val_groups"]])
    sensitive = np.stack([(g == k).astype(int) for k in range(len(names))], axis=1)
    features = [f"f{i}" for i in range(x.shape[1])]
    meta = SupervisedMetaData("classification", features + ["label"] + names, features, ["label"], names)
    dataset = SupervisedDataSet(x, y, sensitive, len(y), meta)
    a, b = names
    out: dict[str, dict[str, float | bool | str]] = {}
    for eps in EPSILONS:
        constraints = [
            f"abs((FPR | [{a}]) - (FPR | [{b}])) - {eps}",
            f"abs((FNR | [{a}]) - (FNR | [{b}])) - {eps}",
        ]
        half = (1 - CONFIDENCE) / 2
        trees = make_parse_trees_from_constraints(
            constraints,
            [half, half],
            regime="supervised_learning",
            sub_regime="classification",
            columns=names,
        )
        model = BinaryLogisticRegressionModel()
        spec = SupervisedSpec(
            dataset=dataset,
            model=model,
            parse_trees=trees,
            sub_regime="classification",
            frac_data_in_safety=0.6,
            primary_objective=objectives.binary_logistic_loss,
            use_builtin_primary_gradient_fn=True,
            initial_solution_fn=default_supervised_initial_solution_fn,
            optimization_technique="gradient_descent",
            optimizer="adam",
            optimization_hyperparams={
                "lambda_init": np.array([0.5, 0.5]),
                "alpha_theta": 0.01,
                "alpha_lamb": 0.01,
                "beta_velocity": 0.9,
                "beta_rmsprop": 0.95,
                "use_batches": False,
                "num_iters": 1000,
                "gradient_library": "autograd",
                "hyper_search": None,
                "verbose": False,
            },
        )
        start = time.perf_counter()
        passed, theta = SeldonianAlgorithm(spec).run()
        seconds = time.perf_counter() - start
        row: dict[str, float | bool | str] = {"certified": bool(passed), "seconds": seconds}
        if not isinstance(theta, str):
            prob = model.predict(theta, d["test_x"].astype(np.float64))
            pred = (prob >= 0.5).astype(int)
            yt, gt = d["test_y"], d["test_groups"]
            row.update(accuracy=float((pred == yt).mean()), equalized_odds=_eo(pred, yt, gt))
        else:
            row["solution"] = theta
        out[f"eps={eps}"] = row
        print(f"seldonian eps={eps}: {row}", flush=True)
    return out


def fairprune_runs(data: Path) -> dict[str, dict[str, float | bool | str]]:
    """Train the default run's dense MLP, then fairprune.prune (BiFP, 90%) at each epsilon."""
    import torch

    import fairprune
    from fairprune.models import build_model

    d = np.load(data)

    def split(name: str) -> tuple[torch.Tensor, ...]:
        return tuple(torch.from_numpy(d[f"{name}_{f}"]) for f in ("x", "y", "groups"))

    train, val, test = split("train"), split("val"), split("test")
    torch.manual_seed(0)
    model = build_model("mlp", (train[0].shape[1],), 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(5):  # about the default run's dense training: 5 passes of batch 256
        for idx in torch.randperm(len(train[1])).split(256):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(train[0][idx]), train[1][idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        dense_pred = model(test[0]).argmax(1).numpy()
    yt, gt = test[1].numpy(), test[2].numpy()
    out: dict[str, dict[str, float | bool | str]] = {
        "dense": {"accuracy": float((dense_pred == yt).mean()), "equalized_odds": _eo(dense_pred, yt, gt)}
    }
    for eps in EPSILONS:
        start = time.perf_counter()
        result = fairprune.prune(
            model,
            train,
            val,
            sparsity=0.9,
            fairness="equalized_odds",
            tolerance=eps,
            test=test,
            certify=CONFIDENCE,
            progress=False,
        )
        with torch.no_grad():
            pred = result.model(test[0]).argmax(1).numpy()
        cert = result.certificate
        out[f"eps={eps}"] = {
            "certified": bool(cert.certified) if cert else False,
            "violation_bound": float(cert.bound) if cert else float("nan"),
            "certificate": cert.describe(d["group_names"].tolist()) if cert else "",
            "accuracy": float((pred == yt).mean()),
            "equalized_odds": _eo(pred, yt, gt),
            "seconds": time.perf_counter() - start,
        }
        print(f"fairprune eps={eps}: {out[f'eps={eps}']}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("export", "seldonian", "fairprune"))
    parser.add_argument("data", type=Path, help="the .npz of the export step")
    parser.add_argument("--json", type=Path, help="write the step's results here")
    args = parser.parse_args(argv)
    if args.step == "export":
        export(args.data)
        return 0
    results = seldonian(args.data) if args.step == "seldonian" else fairprune_runs(args.data)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
