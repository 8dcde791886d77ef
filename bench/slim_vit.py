"""Slim ViT: a small ViT with half of its attention heads and half of its MLP neurons removed.

The built-in ``vit_small`` (torchvision ``VisionTransformer``, 6 blocks, width 192, 4 heads of 48,
MLP 768; random init, 64x64 inputs, 65 tokens) keeps, in every block, its 2 heads and 384 MLP
neurons of largest L1 norm (:func:`fairprune.structured.l1_channel_scores`; the classifier,
zero at torchvision's init, is drawn from N(0, 0.1^2) so that the outputs say something); the masked model is
slimmed (:func:`fairprune.structured.slim`: ``nn.MultiheadAttention`` becomes a
``SlimMultiheadAttention`` with 2 heads, the MLP Linears lose half their hidden width) and checked
against the masked model. Reported: parameters, FLOPs (:func:`fairprune.export.count_flops`:
matmuls, attention included) and CPU latency at batch 64 and 1 (medians of interleaved rounds),
each as a ratio to the dense model.

    python -m bench.slim_vit            # about a minute on one CPU thread
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from typing import Any

import torch

from bench.common import Settings, interleaved, machine, median
from fairprune.export import count_flops, count_parameters, measure_latency
from fairprune.models import build_model
from fairprune.structured import apply_channel_masks, channel_groups, check_slim, l1_channel_scores, slim

WIDTHS = {"hidden_dim": 192, "num_layers": 6, "num_heads": 4, "mlp_dim": 768}


def _half(score: torch.Tensor) -> torch.Tensor:
    """Keep the larger half of a group's channels (by score)."""
    keep = torch.zeros(len(score), dtype=torch.bool)
    keep[torch.argsort(score, descending=True)[: (len(score) + 1) // 2]] = True
    return keep


def run(settings: Settings) -> dict[str, Any]:
    size, batch = (32, 8) if settings.fast else (64, 64)
    rounds, repeats = (1, 1) if settings.fast else (5, 3)
    torch.manual_seed(settings.seed)
    dense = build_model("vit_small", (3, size, size), 2, **WIDTHS).eval()
    torch.nn.init.normal_(dense.heads.head.weight, std=0.1)  # torchvision's zero head: all outputs 0
    x = torch.randn(batch, 3, size, size)
    groups = channel_groups(dense, x[:1])
    keep = {gid: _half(score) for gid, score in l1_channel_scores(dense, groups).items()}
    masked = copy.deepcopy(dense)
    apply_channel_masks(masked, groups, keep)
    small = slim(masked, groups, keep, x[:1]).eval()
    gap = check_slim(masked, small, x[:16])
    models = {"dense": dense.to(settings.device), "slim": small.to(settings.device)}
    x = x.to(settings.device)
    latency: dict[str, dict[str, float]] = {}
    for name, inputs, n in (("b64", x, repeats), ("b1", x[:1], repeats * 5)):
        jobs = {
            k: (lambda m=m, i=inputs, n=n: [measure_latency(m, i, repeats=n, warmup=1)])
            for k, m in models.items()
        }
        latency[name] = {k: median(v) for k, v in interleaved(jobs, rounds).items()}
    params = {k: count_parameters(m) for k, m in models.items()}
    flops = {k: count_flops(m, x[:1]) for k, m in models.items()}
    heads = [g for g in groups if g.kind == "heads"]
    return {
        "model": {**WIDTHS, "image_size": size, "batch": batch},
        "heads_kept": f"{sum(int(keep[g.id].sum()) for g in heads)} of {sum(g.n_channels for g in heads)}",
        "neurons_kept": f"{sum(int(keep[g.id].sum()) for g in groups if g.kind == 'channels')} of "
        f"{sum(g.n_channels for g in groups if g.kind == 'channels')}",
        "params": params,
        "flops_per_image": flops,
        "latency_s": latency,
        "params_ratio": params["slim"] / params["dense"],
        "flops_ratio": flops["slim"] / flops["dense"],
        "latency_ratio_b64": latency["b64"]["slim"] / latency["b64"]["dense"],
        "latency_ratio_b1": latency["b1"]["slim"] / latency["b1"]["dense"],
        "max_abs_diff_masked_vs_slim": gap,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.slim_vit", description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = run(Settings(fast=args.fast))
    for key in ("params_ratio", "flops_ratio", "latency_ratio_b64", "latency_ratio_b1"):
        print(f"{key:<22}{result[key]:.3f}")
    print(json.dumps({"machine": machine("cpu"), **result}, indent=1, default=str), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
