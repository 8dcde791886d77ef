"""``python -m bench --out DIR``: every benchmark side by side, one table, ``DIR/bench.json``.

    python -m bench --out bench/results/run        # about 10 minutes on a 2-core CPU
    python -m bench --out /tmp/b --fast             # a smoke test (CI), under a minute
    python -m bench --out /tmp/b --device cuda      # on a GPU

Timings are ratios measured side by side in one process (interleaved), so that a shared,
noisy machine slows numerator and denominator alike.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench import iterations, loader, slim, slim_vit, step_cost
from bench.common import Settings, machine
from fairprune.atomic import write_atomic

Row = tuple[str, float, str, Callable[[float, dict[str, float]], bool] | None]


def headline(raw: dict[str, Any]) -> dict[str, float]:
    """The numbers the issue asks for, from the raw measurements."""
    mlp = raw["step_cost"]["mlp_adult"]["ratio"]
    rows = raw["deployment"]["rows"]
    throughput = raw["loader"]
    return {
        "step_cost_alternating": mlp["alternating"],
        "step_cost_joint": mlp["joint"],
        "step_cost_structured": mlp["alternating_channel"],
        "step_cost_structured_joint": mlp["joint_channel"],
        "step_cost_fair_dense": mlp["fair_sgd"],
        "step_cost_alternating_resnet10": raw["step_cost"]["resnet10_random"]["ratio"]["alternating"],
        "step_cost_joint_resnet10": raw["step_cost"]["resnet10_random"]["ratio"]["joint"],
        "iterations_ratio": raw["iterations"]["iterations_ratio"],
        "slim_params_ratio_70": rows["params@0.7"]["params_ratio"],
        "slim_flops_ratio_70": rows["params@0.7"]["flops_ratio"],
        "slim_latency_ratio_70": rows["params@0.7"]["latency_ratio_b64"],
        "slim_latency_ratio_70_batch1": rows["params@0.7"]["latency_ratio_b1"],
        "slim_latency_ratio_70_onnx": rows["params@0.7"].get("onnx_latency_ratio_b64", math.nan),
        "slim_latency_ratio_70_onnx_batch1": rows["params@0.7"].get("onnx_latency_ratio_b1", math.nan),
        "slim_latency_ratio_70_fold_bn_channels_last": raw["deployment"]["latency_gap_70"][
            "latency_ratio_b64+fold_bn+channels_last"
        ],
        "flops_budget_flops_ratio_70": rows["flops@0.7"]["flops_ratio"],
        "mobilenet_v2_latency_ratio_70": raw["mobilenet_v2"]["latency_ratio_b64"],
        "slim_vit_params_ratio_50": raw["slim_vit"]["params_ratio"],
        "slim_vit_flops_ratio_50": raw["slim_vit"]["flops_ratio"],
        "slim_vit_latency_ratio_50": raw["slim_vit"]["latency_ratio_b64"],
        "sparse_file_ratio_90": raw["stored_sizes"]["unstructured@0.9"]["ratio"],
        "loader_images_per_s": throughput["loader_augmented_images_per_s_median"],
        "loader_throughput_ratio": throughput["loader_augmented_over_training"],
        "data_scaling_exponent": raw["scaling"]["exponent"],
    }


TARGETS: dict[str, tuple[str, Callable[[float, dict[str, float]], bool]]] = {
    "step_cost_alternating": ("<= 2.1", lambda v, h: v <= 2.1),
    "step_cost_joint": ("<= 1.25", lambda v, h: v <= 1.25),
    "step_cost_structured": ("<= 1.1 x alternating", lambda v, h: v <= 1.1 * h["step_cost_alternating"]),
    "step_cost_structured_joint": ("<= 1.1 x joint", lambda v, h: v <= 1.1 * h["step_cost_joint"]),
    "iterations_ratio": ("<= 0.05", lambda v, h: v <= 0.05),
    "slim_params_ratio_70": ("<= 0.30", lambda v, h: v <= 0.30),
    "slim_latency_ratio_70": ("FLOPs ratio + 0.03", lambda v, h: v <= h["slim_flops_ratio_70"] + 0.03),
    "slim_latency_ratio_70_batch1": ("FLOPs ratio + 0.03", lambda v, h: v <= h["slim_flops_ratio_70"] + 0.03),
    "slim_latency_ratio_70_onnx": ("FLOPs ratio + 0.03", lambda v, h: v <= h["slim_flops_ratio_70"] + 0.03),
    "slim_latency_ratio_70_onnx_batch1": (
        "FLOPs ratio + 0.03",
        lambda v, h: v <= h["slim_flops_ratio_70"] + 0.03,
    ),
    "flops_budget_flops_ratio_70": ("<= 0.32", lambda v, h: v <= 0.32),
    "slim_vit_latency_ratio_50": (
        "FLOPs ratio +- 0.05",
        lambda v, h: abs(v - h["slim_vit_flops_ratio_50"]) <= 0.05,
    ),
    "loader_images_per_s": (">= 20,000", lambda v, h: v >= 20_000),
    "data_scaling_exponent": ("<= 1.1", lambda v, h: v <= 1.1),
}


def table(numbers: dict[str, float]) -> str:
    lines = [f"{'measure':<34}{'value':>12}  {'target':<22}{'met':<5}", "-" * 75]
    for key, value in numbers.items():
        target, check = TARGETS.get(key, ("", None))
        met = "" if check is None or math.isnan(value) else ("yes" if check(value, numbers) else "NO")
        shown = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3f}"
        lines.append(f"{key:<34}{shown:>12}  {target:<22}{met:<5}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for bench.json")
    parser.add_argument("--fast", action="store_true", help="tiny sizes: a smoke test, not a measurement")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = Settings(fast=args.fast, device=args.device)
    start = time.perf_counter()
    raw: dict[str, Any] = {"machine": machine(args.device), "fast": args.fast}
    seconds: dict[str, float] = {}
    for key, bench in (
        ("step_cost", step_cost.run),
        ("deployment", slim.deployment),
        ("mobilenet_v2", slim.mobilenet),
        ("slim_vit", slim_vit.run),
        ("stored_sizes", slim.stored_sizes),
        ("loader", loader.throughput),
        ("scaling", loader.scaling),
        ("iterations", iterations.run),
    ):
        began = time.perf_counter()
        raw[key] = bench(settings)
        seconds[key] = time.perf_counter() - began
        print(f"{key}: {seconds[key]:.0f} s", file=sys.stderr, flush=True)
    numbers = headline(raw)
    raw["seconds"] = {**seconds, "total": time.perf_counter() - start}
    raw["machine"]["load_average_1min_end"] = machine(args.device)["load_average_1min"]
    print(table(numbers))
    total = raw["seconds"]["total"]
    print(f"\n{args.device}, {args.threads} thread(s), {total:.0f} s; raw timings in bench.json")
    args.out.mkdir(parents=True, exist_ok=True)
    document = {**numbers, "raw": raw}
    write_atomic(
        args.out / "bench.json", json.dumps(document, indent=1, default=_jsonable, allow_nan=True) + "\n"
    )
    print(f"wrote {args.out / 'bench.json'}")
    return 0


def _jsonable(value: object) -> object:
    return None if isinstance(value, float) and math.isnan(value) else str(value)


if __name__ == "__main__":
    raise SystemExit(main())
