"""Is training bound by the model or by the data? Cached-image throughput and scaling.

Loads CelebA at 64x64 through ``load_celeba`` (a synthetic folder in CelebA's layout: random
JPEGs, or ``root``), timing the cold decode into the cache and the warm load from it; then
measures images/s of batches of 64 delivered from the in-memory uint8 splits (index, augment,
``to_float``) against images/s of ResNet10 training steps (forward, backward, SGD) on those
batches. Scaling: time per epoch of the library's training loop as the data grows 1x, 2x, 4x
(fitted exponent of time vs size) and as the model grows ResNet10 -> 18 -> 50.
"""

from __future__ import annotations

import functools
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from bench.common import Settings, random_images, step_times, task
from fairprune.data.base import GroupData
from fairprune.data.celeba import load_celeba
from fairprune.data.images import augment, to_float
from fairprune.engine import train_weights
from fairprune.models import build_model

BATCH, RESOLUTION = 64, 64
T = TypeVar("T")


def synthetic_celeba(root: Path, n: int = 2000, seed: int = 0) -> Path:
    """``n`` random 178x218 JPEGs with CelebA's annotation files (attributes Blond_Hair, Male)."""
    rng = np.random.default_rng(seed)
    (root / "img_align_celeba").mkdir(parents=True)
    rows, parts = [], []
    for i in range(1, n + 1):
        name = f"{i:06d}.jpg"
        pixels = rng.integers(0, 256, (218 // 8, 178 // 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((178, 218), Image.Resampling.BILINEAR).save(
            root / "img_align_celeba" / name
        )
        blond, male = rng.choice([-1, 1], p=[0.85, 0.15]), rng.choice([-1, 1])
        rows.append(f"{name} {blond:2d} {male:2d}")
        parts.append(f"{name} {0 if i % 10 < 8 else 1 if i % 10 == 8 else 2}")
    (root / "list_attr_celeba.txt").write_text(f"{n}\nBlond_Hair Male\n" + "\n".join(rows) + "\n")
    (root / "list_eval_partition.txt").write_text("\n".join(parts) + "\n")
    return root


def timed(function: Callable[[], T]) -> tuple[T, float]:
    """``function()`` and its wall-clock seconds."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def rates(step: Callable[[], int], seconds: float, windows: int = 5) -> tuple[float, float]:
    """Median and best images/s over ``windows`` equal windows (``seconds`` in all) of ``step()`` calls.

    ``step()`` returns how many images it delivered; one call first warms up. The machine may be
    shared, so the best window is the least disturbed estimate, the median the typical one.
    """
    step()
    per_window = []
    for _ in range(windows):
        images, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / windows:
            images += step()
        per_window.append(images / elapsed)
    return float(np.median(per_window)), max(per_window)


def loader_step(data: GroupData, augmented: bool) -> Callable[[], int]:
    """One shuffled batch of 64: index the uint8 tensor, optionally augment, to_float."""
    generator = torch.Generator().manual_seed(0)
    n_batches = len(data) // BATCH
    order = torch.empty(0, BATCH, dtype=torch.long)  # (n_batches, 64) indices of one epoch
    steps = 0

    def step() -> int:
        nonlocal order, steps
        if steps % n_batches == 0:
            order = torch.randperm(len(data), generator=generator)[: n_batches * BATCH].view(n_batches, BATCH)
        index = order[steps % n_batches]
        steps += 1
        x = data.x[index]
        x = to_float(augment(x, generator) if augmented else x)
        _ = data.y[index], data.groups[index]
        return len(x)

    return step


def training_step(data: GroupData) -> Callable[[], int]:
    """One ResNet10 training step (forward, cross-entropy, backward, SGD) on a batch of 64."""
    torch.manual_seed(0)
    model = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=2)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    batches = [(to_float(data.x[i : i + BATCH]), data.y[i : i + BATCH]) for i in range(0, 20 * BATCH, BATCH)]
    steps = 0

    def step() -> int:
        nonlocal steps
        x, y = batches[steps % len(batches)]
        optimiser.zero_grad()
        loss_fn(model(x), y).backward()
        optimiser.step()
        steps += 1
        return len(x)

    return step


def throughput(settings: Settings, root: Path | None = None) -> dict[str, Any]:
    """Cold / warm cache loads, loader images/s (plain and augmented) and ResNet10 training images/s."""
    seconds = 1.0 if settings.fast else 8.0
    with tempfile.TemporaryDirectory() as temporary:
        if root is None:
            root = synthetic_celeba(Path(temporary) / "celeba", n=256 if settings.fast else 2000)
        load = functools.partial(
            load_celeba, root, resolution=RESOLUTION, cache_dir=Path(temporary) / "cache"
        )
        splits, cold_s = timed(load)
        splits, warm_s = timed(load)
    n_images = sum(len(s) for s in (splits.train, splits.val, splits.test))
    plain = rates(loader_step(splits.train, augmented=False), seconds)
    augmented = rates(loader_step(splits.train, augmented=True), seconds)
    training = rates(training_step(splits.train), seconds * (1 if settings.fast else 2))
    measured = {"loader": plain, "loader_augmented": augmented, "resnet10_training": training}
    return {
        "images": n_images,
        "resolution": RESOLUTION,
        "batch_size": BATCH,
        "cold_load_s": cold_s,
        "warm_load_s": warm_s,
        **{f"{k}_images_per_s_median": v[0] for k, v in measured.items()},
        **{f"{k}_images_per_s_best": v[1] for k, v in measured.items()},
        "loader_augmented_over_training": augmented[0] / training[0],
    }


def scaling(settings: Settings) -> dict[str, Any]:
    """Seconds per epoch of ``train_weights`` (steps only) on random images: ResNet10 at 1x, 2x,
    4x the data (``exponent``: least-squares slope of log time on log size), and ResNet10, 18, 50
    at 1x."""
    size, n, batch = (32, 8, 4) if settings.fast else (64, 128, 32)
    epochs: dict[str, float] = {}
    for factor in (1, 2, 4):
        epochs[f"resnet10_x{factor}"] = _epoch("resnet10", n * factor, size, batch, settings)
    for name in ("resnet18", "resnet50"):
        epochs[f"{name}_x1"] = _epoch(name, n, size, batch, settings)
    sizes = np.log([n, 2 * n, 4 * n])
    times = np.log([epochs[f"resnet10_x{f}"] for f in (1, 2, 4)])
    exponent = float(np.polyfit(sizes, times, 1)[0])
    return {"base_images": n, "resolution": size, "batch": batch, "epoch_s": epochs, "exponent": exponent}


def _epoch(model_name: str, n: int, size: int, batch: int, settings: Settings) -> float:
    splits = random_images(n, size, settings.seed)
    steps = max(1, math.ceil(n / batch))
    work = task(splits, settings, batch_size=batch, steps=steps)
    model = build_model(model_name, (3, size, size), 2).to(settings.device)
    times: list[float] = []
    with step_times(times, settings.device):
        train_weights(model, work, steps + 1)  # one warm-up step, not counted
    return float(sum(times[1:]) * steps / max(1, len(times) - 1))
