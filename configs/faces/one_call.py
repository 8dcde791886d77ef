"""The one-call API on UTKFace as a new user would call it (issue 18), with its defaults.

    python configs/faces/one_call.py [--root ../shared/data/utkface] [--seed 0] [--json OUT.json]

A small CNN trained in a plain loop (32 px, target gender, groups race), then
``fairprune.prune(model, splits.train, splits.val, sparsity=0.9, fairness="accuracy_gap",
test=splits.test)`` with every other default, beside ``method="magnitude"`` on the same call and
BiFP with the levelling-down floor off (``fairness_settings={"floor": None}``) and with the
lift-only surrogate (``{"direction": "lift"}``). Prints test accuracy, accuracy gap, worst-group
accuracy, the certificate and which state each call returned, and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

import fairprune
from fairprune.batches import model_inputs
from fairprune.config import DataConfig
from fairprune.sweep import load_splits

CALLS = {
    "bifp (defaults)": {},
    "magnitude": {"method": "magnitude"},
    "bifp, floor off": {"fairness_settings": {"floor": None}},
    "bifp, lift": {"fairness_settings": {"direction": "lift"}},
    "bifp, fine-tuning as magnitude's": {"finetune_steps": 277},
}


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(128, 2),
    )  # fmt: skip


def plain_loop(model: nn.Module, train, epochs: int, seed: int) -> None:
    """What a user's own training looks like: Adam, shuffled batches of 128, a few epochs (the
    uint8 images as fairprune reads them: floats in [-1, 1])."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(train.y), generator=gen).split(128):
            opt.zero_grad()
            nn.functional.cross_entropy(model(model_inputs(train.x[idx], "cpu")), train.y[idx]).backward()
            opt.step()
    model.eval()


def headline(result: fairprune.PruningResult) -> dict:
    test = result.metrics["test"]
    cert = result.certificate
    return {
        "accuracy": test["pruned"]["accuracy"],
        "accuracy_gap": test["pruned"]["accuracy_gap"],
        "worst_group_accuracy": test["pruned"]["worst_group_accuracy"],
        "dense_accuracy": test["dense"]["accuracy"],
        "dense_accuracy_gap": test["dense"]["accuracy_gap"],
        "dense_worst_group_accuracy": test["dense"]["worst_group_accuracy"],
        "group_accuracy": {g: test["pruned"][f"group_accuracy_{g}"] for g in result.group_names},
        "dense_group_accuracy": {g: test["dense"][f"group_accuracy_{g}"] for g in result.group_names},
        "tolerance": result.tolerance,
        "feasible": result.feasible,
        "certified": None if cert is None else cert.certified,
        "violation_bound": None if cert is None else cert.bound,
        "certificate": None if cert is None else cert.describe(result.group_names),
        "selection": result.selection,
        "train_iterations": result.train_iterations,
        "wall_seconds": result.wall_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="../shared/data/utkface")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--json", default="results/faces/one_call.json")
    parser.add_argument("--calls", nargs="*", default=list(CALLS), help=f"a subset of {list(CALLS)}")
    parser.add_argument("--dense", help="save the trained CNN here, or load it when the file exists")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    data = DataConfig(
        name="utkface", target="gender", sensitive_attribute="race", root=args.root, params={"resolution": 32}
    )
    splits = load_splits(data, args.seed)
    print(splits)
    model = small_cnn()
    start = time.perf_counter()
    if args.dense and Path(args.dense).exists():
        model.load_state_dict(torch.load(args.dense, weights_only=True))
        model.eval()
    else:
        plain_loop(model, splits.train, args.epochs, args.seed)
        if args.dense:
            torch.save(model.state_dict(), args.dense)
    trained = time.perf_counter() - start
    out: dict = {"dense_training_seconds": trained, "calls": {}}
    for name, kwargs in ((n, CALLS[n]) for n in args.calls):
        call = {"sparsity": 0.9, "fairness": "accuracy_gap", "test": splits.test, "seed": args.seed, **kwargs}
        start = time.perf_counter()
        result = fairprune.prune(model, splits.train, splits.val, group_names=splits.group_names, **call)
        row = headline(result) | {"call_seconds": time.perf_counter() - start}
        out["calls"][name] = row
        print(f"\n== {name}\n{result}")
    print("\n| call | test accuracy | accuracy gap | worst group | certified (bound) | s |")
    print("|---|---|---|---|---|---|")
    for name, r in out["calls"].items():
        cert = (
            "–"
            if r["certified"] is None
            else f"{'yes' if r['certified'] else 'no'} ({r['violation_bound']:.3f})"
        )
        print(
            f"| {name} | {r['accuracy']:.4f} | {r['accuracy_gap']:.4f} | {r['worst_group_accuracy']:.4f} | "
            f"{cert} | {r['call_seconds']:.0f} |"
        )
    dense = next(iter(out["calls"].values()))
    print(
        f"| dense | {dense['dense_accuracy']:.4f} | {dense['dense_accuracy_gap']:.4f} | "
        f"{dense['dense_worst_group_accuracy']:.4f} | | {trained:.0f} (training) |"
    )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
