"""Is CPU training bound by the model or by the data? Images/s from the image cache vs ResNet10 steps.

Loads CelebA at 64x64 through ``load_celeba`` (the shared real subset when present, else a synthetic
folder in CelebA's layout), timing the cold decode into the cache and the warm load from it; then
measures images/s of batches of 64 delivered from the in-memory uint8 splits (index, augment,
``to_float``) against images/s of ResNet10 training steps (forward, backward, SGD) on those batches.

Run: ``python bench/bench_loader.py [--root CELEBA_DIR] [--seconds 5]``; writes
``bench/results/loader.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from fairprune.data.base import GroupData
from fairprune.data.celeba import load_celeba
from fairprune.data.images import augment, to_float

HERE = Path(__file__).resolve().parent
SHARED_CELEBA = HERE.parents[1] / "shared" / "data" / "celeba"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="CelebA folder (default: the shared subset)")
    parser.add_argument("--seconds", type=float, default=10.0, help="time per throughput measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        root = args.root or (SHARED_CELEBA if SHARED_CELEBA.is_dir() else None)
        source = "shared CelebA subset" if root == SHARED_CELEBA else str(root)
        if root is None:
            root, source = synthetic_celeba(Path(temporary) / "celeba"), "synthetic (2000 random JPEGs)"
        cache = Path(temporary) / "cache"
        load = functools.partial(load_celeba, root, resolution=RESOLUTION, cache_dir=cache)
        splits, cold_s = timed(load)
        splits, warm_s = timed(load)
    n_images = sum(len(s) for s in (splits.train, splits.val, splits.test))
    load_before = os.getloadavg()[0]
    plain = rates(loader_step(splits.train, augmented=False), args.seconds)
    augmented = rates(loader_step(splits.train, augmented=True), args.seconds)
    training = rates(training_step(splits.train), args.seconds)
    measured = {"loader": plain, "loader_augmented": augmented, "resnet10_training": training}
    result = {
        "source": source,
        "images": n_images,
        "resolution": RESOLUTION,
        "batch_size": BATCH,
        "cold_load_s": round(cold_s, 3),
        "decode_images_per_s": round(n_images / cold_s, 1),
        "warm_load_s": round(warm_s, 3),
        **{f"{k}_images_per_s_median": round(v[0], 1) for k, v in measured.items()},
        **{f"{k}_images_per_s_best": round(v[1], 1) for k, v in measured.items()},
        "loader_augmented_over_training_median": round(augmented[0] / training[0], 1),
        "loader_augmented_over_training_best": round(augmented[1] / training[1], 1),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    print(
        f"{n_images} images from {source} at {RESOLUTION}x{RESOLUTION}, batch {BATCH}, "
        f"{torch.get_num_threads()} torch threads on {os.cpu_count()} CPUs "
        f"(1-min load average {load_before:.1f} before the throughput runs)"
    )
    print(f"  decode into the cache (cold load)    {n_images / cold_s:>10.0f} img/s   {cold_s:6.2f} s")
    print(f"  load from the cache (warm)           {'':>16}   {warm_s:6.2f} s")
    print(f"  {'':<36} {'median img/s':>14} {'best img/s':>12}")
    names = ("loader: index + to_float", "loader: index + augment + to_float", "ResNet10 training steps")
    for name, (median, best) in zip(names, measured.values(), strict=True):
        print(f"  {name:<36} {median:>14.0f} {best:>12.0f}")
    ratio = (augmented[0] / training[0], augmented[1] / training[1])
    print(f"  {'loader (augmented) / training':<36} {ratio[0]:>13.0f}x {ratio[1]:>11.0f}x")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "loader.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
