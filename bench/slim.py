"""Deployment: slim channel-pruned ResNet10 vs dense, FLOPs budgets, stored sizes.

ResNet10 (random init, 64x64 inputs) is pruned with structured L1 scores to 50/70/90% of its
prunable weights (kept channels in multiples of 8, never fewer weights removed than asked), and,
with ``budget="flops"``, to 70% of its prunable FLOPs; each is physically slimmed with
torch-pruning (outputs checked against the masked model). Reported per model: parameters, FLOPs
(:func:`fairprune.export.count_flops`), CPU latency at batch 1 and 64 (medians over interleaved
rounds, eval mode, no_grad), the weight and activation memory, and on CUDA the measured peak.

The latency-vs-FLOPs gap: the 70% model is also timed with BatchNorm folded into the convs
(eval) and in ``channels_last`` memory format, each against the dense model treated alike; and
the dense and the 70% models are timed as they ship, exported to ONNX by
:func:`fairprune.export.write_onnx` and run by onnxruntime (which folds BatchNorm and fuses the
activations into the convolutions; with the ``onnx`` extra installed).

Unstructured masks: the stored size of a magnitude-pruned model at 50/70/90%, dense safetensors
vs fairprune's sparse safetensors (:func:`fairprune.export.save_weights`).
"""

from __future__ import annotations

import copy
import importlib.util
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

from bench.common import Settings, interleaved, median, synchronize
from fairprune.export import (
    count_flops,
    count_parameters,
    measure_latency,
    measure_onnx_latency,
    save_weights,
    write_onnx,
)
from fairprune.masks import apply_masks, bake_masks, prunable_parameters, topk_masks
from fairprune.models import build_model
from fairprune.structured import (
    channel_groups,
    expand_channel_masks,
    l1_channel_scores,
    slim,
    structured_topk,
    weight_costs,
)

SPARSITIES = (0.5, 0.7, 0.9)


def slim_model(dense: nn.Module, x: torch.Tensor, target: float, budget: str) -> tuple[nn.Module, float]:
    """The slim model at ``target`` of the ``budget`` and its max |masked - slim| output gap."""
    groups = channel_groups(dense, x[:1])
    cost = weight_costs(dense, x[:1], budget)
    total = sum(p.numel() * cost[n] for n, p in prunable_parameters(dense).items())
    keep = structured_topk(
        l1_channel_scores(dense, groups),
        groups,
        target,
        n_prunable=total,
        round_to=8,
        at_least=True,
        weight_cost=cost,
    )
    slimmed = slim(dense, groups, keep, x[:1]).eval()
    masked = copy.deepcopy(dense)
    apply_masks(masked, expand_channel_masks(dense, groups, keep))
    with torch.no_grad():
        gap = float((masked.eval()(x[:4]) - slimmed(x[:4])).abs().max())
    return slimmed, gap


def _memory(model: nn.Module, x: torch.Tensor, device: str) -> dict[str, float]:
    """Weight bytes, summed module-output bytes of one pass (what training keeps for backward),
    and on CUDA the measured peak allocation of an inference pass (MB)."""
    sizes: list[int] = []
    handles = [
        m.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel() * out.element_size()))
        for m in model.modules()
        if not list(m.children())
    ]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    out = {
        "weights_mb": sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20,
        "activations_mb": sum(sizes) / 2**20,
    }
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        with torch.no_grad():
            model(x)
        synchronize(device)
        out["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _latencies(models: dict[str, nn.Module], x: torch.Tensor, rounds: int, repeats: int) -> dict[str, float]:
    jobs = {k: (lambda m=m: [measure_latency(m, x, repeats=repeats, warmup=1)]) for k, m in models.items()}
    return {k: median(v) for k, v in interleaved(jobs, rounds).items()}


def onnx_latencies(
    models: dict[str, nn.Module], inputs: dict[str, torch.Tensor], rounds: int, repeats: int
) -> dict[str, dict[str, float]]:
    """Per input name, per model: the median onnxruntime seconds of the model exported as
    ``fairprune export`` ships it (:func:`fairprune.export.write_onnx`); empty without the
    ``onnx`` extra."""
    if importlib.util.find_spec("onnxruntime") is None:
        return {}
    example = next(iter(inputs.values()))
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for key, model in models.items():
            paths[key] = Path(tmp) / f"{key.replace('@', '_')}.onnx"
            write_onnx(copy.deepcopy(model).cpu(), paths[key], example[:2].cpu())
        for name, x in inputs.items():
            jobs = {
                key: (lambda p=path, x=x: [measure_onnx_latency(p, x.cpu(), repeats=repeats, warmup=1)])
                for key, path in paths.items()
            }
            out[name] = {k: median(v) for k, v in interleaved(jobs, rounds).items()}
    return out


def deployment(settings: Settings) -> dict[str, Any]:
    size = 32 if settings.fast else 64
    rounds, repeats = (1, 1) if settings.fast else (5, 3)
    torch.manual_seed(settings.seed)
    dense = build_model("resnet10", (3, size, size), 2).eval()
    x64 = torch.randn(8 if settings.fast else 64, 3, size, size)
    models: dict[str, nn.Module] = {"dense": dense}
    gaps: dict[str, float] = {}
    for target in SPARSITIES:
        models[f"params@{target}"], gaps[f"params@{target}"] = slim_model(dense, x64, target, "params")
    models["flops@0.7"], gaps["flops@0.7"] = slim_model(dense, x64, 0.7, "flops")
    models = {k: m.to(settings.device).eval() for k, m in models.items()}
    x64 = x64.to(settings.device)
    x1 = x64[:1]
    variants = dict(models)
    for key in ("dense", "params@0.7"):  # the latency-vs-FLOPs gap: fold BN, channels_last
        variants[f"{key}+fold_bn"] = fuse(copy.deepcopy(models[key]))
        variants[f"{key}+channels_last"] = copy.deepcopy(models[key]).to(memory_format=torch.channels_last)
        variants[f"{key}+fold_bn+channels_last"] = fuse(copy.deepcopy(models[key])).to(
            memory_format=torch.channels_last
        )
    lat64 = _latencies(variants, x64, rounds, repeats)
    lat1 = _latencies(variants, x1, rounds, repeats * 5)
    shipped = {k: models[k] for k in ("dense", "params@0.7")}  # each export takes tens of seconds
    onnx = onnx_latencies(shipped, {"b64": x64, "b1": x1}, rounds, repeats)
    base = {"params": count_parameters(dense), "flops": count_flops(dense, x1)}
    rows = {}
    for key, model in models.items():
        params, flops = count_parameters(model), count_flops(model, x1)
        rows[key] = {
            "params": params,
            "flops_per_image": flops,
            "params_ratio": params / base["params"],
            "flops_ratio": flops / base["flops"],
            "latency_b1_s": lat1[key],
            "latency_b64_s": lat64[key],
            "latency_ratio_b1": lat1[key] / lat1["dense"],
            "latency_ratio_b64": lat64[key] / lat64["dense"],
            "max_abs_diff_masked_vs_slim": gaps.get(key, 0.0),
            **_memory(model, x64, settings.device),
        }
        for batch, seconds in onnx.items():
            if key in seconds:
                rows[key][f"onnx_latency_{batch}_s"] = seconds[key]
                rows[key][f"onnx_latency_ratio_{batch}"] = seconds[key] / seconds["dense"]
    gap = {
        f"latency_ratio_b64{suffix}": lat64[f"params@0.7{suffix}"] / lat64[f"dense{suffix}"]
        for suffix in ("", "+fold_bn", "+channels_last", "+fold_bn+channels_last")
    }
    gap["slim_fold_bn_channels_last_over_plain_dense"] = (
        lat64["params@0.7+fold_bn+channels_last"] / lat64["dense"]
    )
    return {
        "input": [3, size, size],
        "rows": rows,
        "latency_gap_70": gap,
        "raw_latency_b64_s": lat64,
        "raw_latency_b1_s": lat1,
    }


def mobilenet(settings: Settings) -> dict[str, Any]:
    """MobileNetV2 (the paper's other CNN) at 70% of its prunable weights: ratios to dense."""
    size = 32 if settings.fast else 64
    torch.manual_seed(settings.seed)
    dense = build_model("mobilenet_v2", (3, size, size), 2).eval()
    x = torch.randn(8 if settings.fast else 64, 3, size, size)
    small, gap = slim_model(dense, x, 0.7, "params")
    models = {"dense": dense.to(settings.device), "params@0.7": small.to(settings.device)}
    latency = _latencies(models, x.to(settings.device), 1 if settings.fast else 5, 1 if settings.fast else 3)
    x1 = x[:1].to(settings.device)
    return {
        "params_ratio": count_parameters(small) / count_parameters(dense),
        "flops_ratio": count_flops(models["params@0.7"], x1) / count_flops(models["dense"], x1),
        "latency_ratio_b64": latency["params@0.7"] / latency["dense"],
        "latency_b64_s": latency,
        "max_abs_diff_masked_vs_slim": gap,
    }


def stored_sizes(settings: Settings) -> dict[str, Any]:
    """Bytes of a magnitude-pruned ResNet10 (unstructured, masks baked), dense vs sparse file."""
    size = 32 if settings.fast else 64
    torch.manual_seed(settings.seed)
    dense = build_model("resnet10", (3, size, size), 2)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for target in SPARSITIES:
            model = copy.deepcopy(dense)
            apply_masks(
                model, topk_masks({n: p.abs() for n, p in prunable_parameters(model).items()}, target)
            )
            state = bake_masks(model).state_dict()
            files = {
                layout: save_weights(Path(tmp) / f"{layout}{target}", state, layout)
                for layout in ("dense", "sparse")
            }
            sizes = {layout: path.stat().st_size for layout, path in files.items()}
            out[f"unstructured@{target}"] = {**sizes, "ratio": sizes["sparse"] / sizes["dense"]}
    return out
