"""Shipped file sizes: dense vs. sparse safetensors (unstructured) and slimmed safetensors (channel).

The default tabular MLP (Adult's 104 features, hidden 256-256, 2 classes) and ResNet10 (64x64
inputs, 2 classes) at random init: a file's size depends on the shapes and on how many weights
are kept, not on their values. Unstructured: global magnitude masks at 50/90/97/99% baked in and
written dense and sparse (bitmask + values). Channel: structured L1 top-k at 50/70%, slimmed.
Every export is checked against ONNX (``--onnx``, max abs difference printed).

    python bench/bench_export_sizes.py [--onnx]    # prints a table, writes bench/results/export_sizes.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fairprune.atomic import write_atomic
from fairprune.export import count_parameters, export_model
from fairprune.masks import apply_masks, prunable_parameters, topk_masks
from fairprune.models import build_model
from fairprune.structured import channel_groups, l1_channel_scores, n_prunable, slim, structured_topk

MODELS = {"mlp": ((104,), {"hidden": [256, 256]}), "resnet10": ((3, 64, 64), {})}


def _export(model: nn.Module, name: str, example: torch.Tensor, weights: str, onnx: bool) -> dict[str, Any]:
    shape, params = MODELS[name]
    architecture = {"name": name, "input_shape": list(shape), "n_classes": 2, "params": params}
    with tempfile.TemporaryDirectory() as folder:
        out = export_model(
            model, folder, architecture=architecture, example_input=example, weights=weights, onnx=onnx
        )
        card = json.loads((out / "card.json").read_text())
    files = card["files"]
    weight_file = next(f for f in files.values() if f["layout"] != "onnx")
    return {
        "bytes": weight_file["bytes"],
        "params": card["footprint"]["params"],
        "nonzero": card["footprint"]["nonzero_params"],
        "onnx_bytes": files.get("model.onnx", {}).get("bytes"),
        "onnx_diff": files.get("model.onnx", {}).get("max_abs_diff_vs_pytorch"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", action="store_true", help="also export and check ONNX")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    for name, (shape, params) in MODELS.items():
        example = torch.randn(2, *shape)
        dense = build_model(name, shape, 2, **params).eval()
        base = _export(dense, name, example, "dense", args.onnx)
        rows.append({"model": name, "kind": "dense", "target": 0.0, **base, "ratio": 1.0})
        weights = prunable_parameters(dense)
        for target in (0.5, 0.9, 0.97, 0.99):
            masked = build_model(name, shape, 2, **params).eval()
            masked.load_state_dict(dense.state_dict())
            apply_masks(masked, topk_masks({k: w.abs() for k, w in weights.items()}, target))
            for layout in ("dense", "sparse"):
                row = _export(masked, name, example, layout, args.onnx and layout == "sparse")
                rows.append({"model": name, "kind": f"unstructured/{layout}", "target": target, **row})
        for target in (0.5, 0.7):
            groups = channel_groups(dense, example[:1])
            keep = structured_topk(
                l1_channel_scores(dense, groups), groups, target, n_prunable=n_prunable(dense)
            )
            small = slim(dense, groups, keep, example[:1]).eval()
            assert count_parameters(small) < count_parameters(dense)
            rows.append(
                {
                    "model": name,
                    "kind": "channel",
                    "target": target,
                    **_export(small, name, example, "auto", args.onnx),
                }
            )
        for row in rows:
            if row["model"] == name:
                row["ratio"] = row["bytes"] / base["bytes"]
                row["params_ratio"] = row["params"] / base["params"]
                row["density"] = row["nonzero"] / base["params"]
    head = ("model", "kind", "target", "bytes", "ratio", "density", "params_ratio", "onnx_diff")
    print("{:9} {:20} {:>6} {:>10} {:>7} {:>8} {:>12} {:>9}".format(*head))
    for r in rows:
        diff = "" if r["onnx_diff"] is None else f"{r['onnx_diff']:.1e}"
        print(
            f"{r['model']:9} {r['kind']:20} {r['target']:6.2f} {r['bytes']:10d} {r['ratio']:7.4f} "
            f"{r['density']:8.4f} {r['params_ratio']:12.4f} {diff:>9}"
        )
    write_atomic(Path(__file__).parent / "results" / "export_sizes.json", json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
