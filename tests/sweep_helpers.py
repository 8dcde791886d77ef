"""A tiny CSV and a tiny sweep config shared by the bad-input, restart and kill tests."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd


def tiny_frame(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Four features, a binary label, groups ``Female`` (40%) and ``Male``, a 3-class column."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    g = (rng.random(n) < 0.4).astype(int)
    frame = pd.DataFrame(x, columns=list("abcd"))
    frame["group"] = np.where(g == 1, "Female", "Male")
    frame["label"] = ((x[:, 0] + x[:, 1] * g) > 0).astype(int)
    frame["three"] = rng.integers(0, 3, n)
    return frame


def tiny_config(folder: Path, csv: Path, *, seeds: str = "[0, 1]", extra: str = "") -> Path:
    """A sweep of dense, magnitude and BiFP at one sparsity over ``seeds``, seconds per run."""
    path = folder / "exp.toml"
    path.write_text(
        f"""
methods = ["dense", "magnitude", "bifp"]
sparsities = [0.5]
seeds = {seeds}
{extra}
[data]
name = "csv"
path = "{csv}"
target = "label"
sensitive_attribute = "group"

[model]
name = "mlp"
params = {{ hidden = [8] }}

[train]
dense_steps = 10
batch_size = 32
eval_every = 5

[export]
latency = false

[method_params.magnitude]
finetune_steps = 5

[method_params.bifp]
steps = 6
finetune_steps = 4
"""
    )
    return path


def snapshot(out: Path) -> dict[str, str]:
    """SHA-256 of every file under ``out`` (relative path -> digest)."""
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }
