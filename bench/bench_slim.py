"""Dense vs. physically slimmed models: parameters, FLOPs and CPU latency.

ResNet-10 and MobileNetV2 (random init; 64x64 inputs) are pruned with structured L1 scores to
50% and 70% of their prunable weights (kept channels: any number, or multiples of 8 —
``slim1@`` / ``slim8@``; the channel count nearest to the target, or, with ``+``, never fewer
weights removed than the target), slimmed with torch-pruning, checked to give the masked
model's outputs, and timed on the CPU (batch 64, eval mode, no_grad). Latencies are medians over
``--rounds`` interleaved rounds of ``--repeats`` timed passes, so that a load spike on the machine
hits dense and slim models alike.

    python bench/bench_slim.py            # prints a table, writes bench/results/slim.json
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fairprune.atomic import write_atomic
from fairprune.export import count_flops, count_parameters, measure_latency
from fairprune.masks import apply_masks, sparsity
from fairprune.models import build_model
from fairprune.structured import (
    channel_groups,
    expand_channel_masks,
    l1_channel_scores,
    n_prunable,
    slim,
    structured_topk,
)

MODELS = ("resnet10", "mobilenet_v2")
SPARSITIES = (0.5, 0.7)
# (round_to, at_least): kept channels any count / multiples of 8; the channel count nearest to
# the target / never fewer weights removed than the target (variant names end in "+")
CHANNEL_ROUNDING = ((1, False), (8, False), (1, True), (8, True))


def _prune(
    model: nn.Module, x: torch.Tensor, target: float, round_to: int, at_least: bool
) -> tuple[nn.Module, float, float]:
    """The slim model, its achieved sparsity and max |masked - slim| output difference."""
    groups = channel_groups(model, x[:1])
    scores = l1_channel_scores(model, groups)
    n = n_prunable(model)
    keep = structured_topk(scores, groups, target, n_prunable=n, round_to=round_to, at_least=at_least)
    masks = expand_channel_masks(model, groups, keep)
    slimmed = slim(model, groups, keep, x[:1]).eval()
    masked = copy.deepcopy(model)
    apply_masks(masked, masks)
    with torch.no_grad():
        diff = float((masked.eval()(x[:8]) - slimmed(x[:8])).abs().max())
    return slimmed, sparsity(masks), diff


def _latencies(models: dict[str, nn.Module], x: torch.Tensor, rounds: int, repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(rounds):
        for key, model in models.items():
            times[key].append(measure_latency(model, x, repeats=repeats, warmup=1))
    return {k: statistics.median(v) for k, v in times.items()}


def run(size: int, batch: int, rounds: int, repeats: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name in MODELS:
        torch.manual_seed(0)
        dense = build_model(name, (3, size, size), 2).eval()
        x = torch.randn(batch, 3, size, size)
        variants: dict[str, nn.Module] = {"dense": dense}
        info: dict[str, list[float]] = {"dense": [0.0, 0.0]}
        for target in SPARSITIES:
            for round_to, at_least in CHANNEL_ROUNDING:
                key = f"slim{round_to}{'+' if at_least else ''}@{target}"
                variants[key], *info[key] = _prune(dense, x, target, round_to, at_least)
        latency = _latencies(variants, x, rounds, repeats)
        base = {
            "params": count_parameters(dense),
            "flops": count_flops(dense, x),
            "latency_s": latency["dense"],
        }
        for key, model in variants.items():
            params, flops = count_parameters(model), count_flops(model, x)
            rows.append(
                {
                    "model": name,
                    "variant": key,
                    "sparsity": info[key][0],
                    "max_abs_diff_masked_vs_slim": info[key][1],
                    "params": params,
                    "flops": flops,
                    "latency_s": latency[key],
                    "params_ratio": params / base["params"],
                    "flops_ratio": flops / base["flops"],
                    "latency_ratio": latency[key] / base["latency_s"],
                }
            )
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    head = f"{'model':<13}{'variant':<12}{'sparsity':>9}{'params':>11}{'GFLOPs':>9}{'latency ms':>12}"
    head += f"{'params x':>10}{'FLOPs x':>9}{'latency x':>11}{'max diff':>10}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['model']:<13}{r['variant']:<12}{r['sparsity']:>9.4f}{r['params']:>11,}"
            f"{r['flops'] / 1e9:>9.2f}{r['latency_s'] * 1e3:>12.1f}{r['params_ratio']:>10.3f}"
            f"{r['flops_ratio']:>9.3f}{r['latency_ratio']:>11.3f}{r['max_abs_diff_masked_vs_slim']:>10.1e}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: unchanged)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "slim.json")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows = run(args.size, args.batch, args.rounds, args.repeats)
    print(_table(rows))
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor()}
    write_atomic(args.out, json.dumps({"config": config, "environment": env, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
