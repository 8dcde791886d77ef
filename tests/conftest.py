"""Shared fixtures: small synthetic data sets with a planted group bias."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from fairprune.data.base import GroupData, Splits, stratified_split_indices
from fairprune.engine import Task, TrainConfig, train_weights
from fairprune.models import build_model

# tiny models: one thread is fastest, and robust when the machine is shared
torch.set_num_threads(1)


def planted_bias_frame(n: int = 4000, seed: int = 0) -> pd.DataFrame:
    """A binary task whose minority group follows a *different* rule than the majority.

    Majority: y = [x0 + .. + x9 > 0]; minority (20%): y = [x10 + .. + x19 > 0]; 5% label noise. Feature
    ``grp_hint`` reveals the group, so a wide enough model can learn both rules, but a heavily
    pruned one that keeps only the majority's weights is right on the minority by chance only.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 24))
    g = (rng.random(n) < 0.2).astype(int)
    score = np.where(g == 1, x[:, 10:20].sum(1), x[:, 0:10].sum(1))
    y = (score > 0).astype(int)
    flip = rng.random(n) < 0.05
    y[flip] = 1 - y[flip]
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(24)])
    frame["grp_hint"] = 2.0 * g - 1.0 + 0.1 * rng.normal(size=n)
    frame["group"] = np.where(g == 1, "minority", "majority")
    frame["label"] = y
    return frame


def splits_from_frame(frame: pd.DataFrame, seed: int = 0) -> Splits:
    x = torch.tensor(frame.drop(columns=["group", "label"]).to_numpy(), dtype=torch.float32)
    y = torch.tensor(frame["label"].to_numpy(), dtype=torch.long)
    g = torch.tensor((frame["group"] == "minority").to_numpy().astype(int), dtype=torch.long)
    tr, va, te = stratified_split_indices((y * 2 + g).numpy(), (0.6, 0.2, 0.2), seed)
    full = GroupData(x, y, g)
    return Splits(
        "planted",
        "label",
        "group",
        full.subset(tr),
        full.subset(va),
        full.subset(te),
        ("0", "1"),
        ("majority", "minority"),
    )


@pytest.fixture(scope="session")
def planted_splits() -> Splits:
    return splits_from_frame(planted_bias_frame())


@pytest.fixture()
def planted_csv(tmp_path: Path) -> Path:
    path = tmp_path / "planted.csv"
    planted_bias_frame(n=1500).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def dense(planted_splits: Splits) -> nn.Module:
    """A small MLP trained 20 steps on the planted-bias splits (the pruner tests start from it)."""
    torch.manual_seed(0)
    model = build_model("mlp", (25,), 2, hidden=[16, 8])
    train_weights(model, Task(planted_splits, None, TrainConfig(batch_size=64, lr=0.05, eval_every=2), 0), 20)
    return model
