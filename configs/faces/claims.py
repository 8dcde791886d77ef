"""Which claims a sweep's pruned models could have certified: the per-group excess degradation.

The face sweeps certify ``V(pruned) - V(dense) <= slack`` for the accuracy gap, a max - min over
groups whose paired bound sums two groups' disagreement terms. A per-group claim — "no group
loses more than eps accuracy beyond the average loss" (``excess_degradation``, one term per
group) — may certify where the gap difference does not. This script re-reads a finished sweep
(its saved models, the dense models, the same certification split) and certifies that claim at
the sweep's confidence for every pruned run; it trains nothing.

    python configs/faces/claims.py runs/faces/utkface_gap_bigcert [--eps 0.02 0.03 0.05]

Prints a table per method (bound median and range, runs certified at each eps, whether the claim
held on the test split, and the churn: the share of certification samples on which the pruned and
the dense model disagree, per sparsity) and writes ``claims.json`` into the sweep directory.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from fairprune.config import config_from_dict
from fairprune.export import load_exported
from fairprune.fairness import certify
from fairprune.fairness.metrics import PER_GROUP_METRICS
from fairprune.inference import predict
from fairprune.model_io import input_shape
from fairprune.models import build_model
from fairprune.sweep import cell_splits, load_dense
from fairprune.sweep.grid import grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.02, 0.03, 0.05])
    args = parser.parse_args()
    cfg = config_from_dict(json.loads((args.sweep / "config.json").read_text()))
    confidence = 0.95 if cfg.fairness.certify == "auto" else float(cfg.fairness.certify)
    rows, cells = [], {}
    for job in grid(cfg):
        if job.variant.method == "dense":
            continue
        model_dir = args.sweep / "models" / job.run_id
        if not model_dir.is_dir():
            continue
        if job.seed not in cells:
            splits = cell_splits(cfg, job)
            shape = input_shape(splits.train.x)
            dense = build_model(cfg.model.name, shape, splits.n_classes, **cfg.model.params)
            load_dense(args.sweep / "dense" / f"{job.dense_key}.pt", dense, args.sweep)
            cells[job.seed] = (splits, predict(dense, splits.certify), predict(dense, splits.test))
        splits, dense_cert, dense_test = cells[job.seed]
        model = load_exported(model_dir).model
        data = splits.certify
        pred = predict(model, data)
        cert = certify(
            "excess_degradation", data.y, pred, groups=data.groups, n_groups=splits.n_groups,
            confidence=confidence, tolerance=max(args.eps), y_pred_dense=dense_cert,
        )  # fmt: skip
        psi = PER_GROUP_METRICS["excess_degradation"](
            splits.test.y, predict(model, splits.test), groups=splits.test.groups, y_pred_dense=dense_test,
            n_groups=splits.n_groups,
        )  # fmt: skip
        rows.append({"run_id": job.run_id, "method": job.variant.label, "sparsity": job.sparsity,
                     "seed": job.seed, "bound": float(cert.bound),
                     "churn": float((pred != dense_cert).float().mean()),
                     "test_max_psi": float(np.max(psi))})  # fmt: skip
    (args.sweep / "claims.json").write_text(json.dumps(rows, indent=1))
    print(f"max_g excess degradation, certified at {confidence:.0%} on {len(splits.certify):,} samples")
    eps = " | ".join(f"≤ {e:g}" for e in args.eps)
    print(f"| method | runs | bound: median (min–max) | {eps} | held on test | churn by sparsity: min–max |")
    print("|---|---|---|" + "---|" * len(args.eps) + "---|---|")
    for method in sorted({r["method"] for r in rows}):
        mine = [r for r in rows if r["method"] == method]
        bounds = np.array([r["bound"] for r in mine])
        counts = [f"{int((bounds <= e).sum())}/{len(mine)}" for e in args.eps]
        held = [r for r in mine if r["bound"] <= max(args.eps)]
        ok = sum(r["test_max_psi"] <= max(args.eps) for r in held)
        churn = ", ".join(
            f"{s:g}: {min(c):.3f}–{max(c):.3f}"
            for s in sorted({r["sparsity"] for r in mine})
            if (c := [r["churn"] for r in mine if r["sparsity"] == s])
        )
        print(f"| {method} | {len(mine)} | {np.median(bounds):.3f} ({bounds.min():.3f}–{bounds.max():.3f}) | "
              + " | ".join(counts) + f" | {ok}/{len(held)} | {churn} |")  # fmt: skip


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
