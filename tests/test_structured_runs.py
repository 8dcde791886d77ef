"""Structured sweeps end to end: channel pruning in ``fairprune run``, the footprint of the
shipped (slimmed) model, saved models, ``--quick`` and the paper-task configs."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from fairprune.cli import main
from fairprune.config import ExportConfig, load_config, quick
from fairprune.data.base import GroupData, Splits
from fairprune.data.tabular import load_csv
from fairprune.engine import Task, TrainConfig, stratified_subset, train_weights
from fairprune.export import count_parameters, load_exported
from fairprune.fairness.objective import FairnessObjective
from fairprune.inference import predict
from fairprune.masks import prunable_parameters
from fairprune.models import build_model
from fairprune.pruners import build_pruner, run_pruner
from fairprune.reporting.report import write_report
from fairprune.sweep.footprint import footprint
from fairprune.task import resolved

CONFIGS = Path(__file__).parents[1] / "configs"
PAPER_CONFIGS = sorted(CONFIGS.glob("*_resnet10.toml")) + sorted(CONFIGS.glob("*_mobilenet_v2.toml"))


def _config(tmp_path: Path, csv: Path, extra: str = "") -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(
        f"""
methods = ["dense", "magnitude", "fpgm", "bifp"]
sparsities = [0.5]
seeds = [0]
structure = "channel"

[data]
name = "csv"
path = "{csv}"
target = "label"
sensitive_attribute = "group"

[model]
name = "mlp"
params = {{ hidden = [32, 16] }}

[train]
dense_steps = 30
batch_size = 64
eval_every = 5

[export]
latency_batch = 32
latency_repeats = 2
save_models = true

[method_params]
magnitude = {{ finetune_steps = 6 }}
fpgm = {{ finetune_steps = 6 }}
bifp = {{ steps = 4, finetune_steps = 2 }}
{extra}
"""
    )
    return path


def test_channel_sweep_reports_and_saves_slim_models(tmp_path, planted_csv):
    out = tmp_path / "out"
    assert main(["run", str(_config(tmp_path, planted_csv)), "--out", str(out), "--quiet"]) == 0
    frame = pd.read_csv(out / "results.csv")
    pruned = frame[frame["method"] != "dense"]
    assert sorted(pruned["label"]) == ["bifp", "fpgm", "magnitude"]
    assert (pruned["structure"] == "channel").all()
    # 2 hidden layers of 32 and 16 units, 25 inputs, 2 classes: a removed unit takes whole rows
    # and columns, so the sparsity lands within half a unit (32 weights) of the target
    n_prunable = 25 * 32 + 32 * 16 + 16 * 2
    assert ((pruned["achieved_sparsity"] - 0.5).abs() * n_prunable <= 25 / 2 + 16 / 2).all()
    assert ((pruned["channel_fraction"] > 0) & (pruned["channel_fraction"] < 1)).all()
    assert (pruned["params_ratio"] < 0.6).all() and (pruned["flops_ratio"] < 0.6).all()
    assert (pruned["latency_ratio"] > 0).all() and (pruned["slim_max_abs_diff"] < 1e-4).all()
    dense_row = frame[frame["method"] == "dense"].iloc[0]
    assert dense_row["params_ratio"] == 1.0 and dense_row["flops_ratio"] == 1.0
    # the saved slim model rebuilds from its card and reproduces the recorded test accuracy
    splits = load_csv(planted_csv, target="label", sensitive_attribute="group", seed=0)
    for _, row in pruned.iterrows():
        saved = load_exported(out / "models" / row["run_id"])
        assert saved.card["model"]["shapes"]["features.0.weight"][0] < 32  # slimmed
        assert sorted(saved.card["files"]) == ["model.safetensors"]
        assert count_parameters(saved.model) == row["params"] == saved.card["footprint"]["params"]
        accuracy = float((predict(saved.model, splits.test) == splits.test.y).float().mean())
        assert accuracy == pytest.approx(row["accuracy"], abs=1e-6)
        assert saved.card["metrics"]["test"]["pruned"]["accuracy"] == pytest.approx(
            row["accuracy"], abs=1e-12
        )
        assert saved.card["pruning"]["label"] == row["label"] == saved.card["sweep"]["record"]["label"]
    assert not (out / "models" / frame.query("method == 'dense'")["run_id"].iloc[0]).exists()
    # the report lists what each run ships
    text = write_report(out).path.read_text()
    section = text[text.index("## Shipped model footprint") :]
    fpgm = pruned[pruned["label"] == "fpgm"].iloc[0]
    assert f"| fpgm | 0.5 | {fpgm['achieved_sparsity']:.4g} | {fpgm['channel_fraction']:.4g} |" in section


def test_unstructured_footprint_counts_nonzeros_and_no_speedup(planted_splits):
    torch.manual_seed(0)
    dense = build_model("mlp", (25,), 2, hidden=[16, 8])
    task = Task(planted_splits, None, TrainConfig(batch_size=64, eval_every=5), 0)
    train_weights(dense, task, 10)
    model = copy.deepcopy(dense)
    result = run_pruner(build_pruner("magnitude", finetune_steps=2), model, 0.75, task)
    row, shipped = footprint(dense, model, result, planted_splits.val, ExportConfig(), "cpu")
    kept = sum(int(m.sum()) for m in result.masks.values())
    biases = 16 + 8 + 2
    assert row["params"] == kept + biases and row["params_ratio"] == row["params"] / count_parameters(dense)
    assert row["flops_ratio"] == 1.0  # dense kernels multiply the zeros too
    assert pd.isna(row["latency_ratio"]) and pd.isna(row["channel_fraction"])
    torch.testing.assert_close(shipped(planted_splits.val.x), model.eval()(planted_splits.val.x))


class _ChannelFlip(nn.Module):
    """Reverses the channel order: a parameter-free op that mixes channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(1)


def test_channel_mode_refuses_before_training_a_model_that_would_not_slim_equal(planted_splits):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(25, 8), nn.ReLU(), _ChannelFlip(), nn.Linear(8, 2))
    task = Task(planted_splits, None, TrainConfig(batch_size=64, eval_every=5), 0)
    with pytest.raises(
        ValueError, match=r"^channels of 0 \(channels\) cannot be removed exactly .*ignored=\['0'\]"
    ):
        run_pruner(build_pruner("magnitude", structure="channel", finetune_steps=0), model, 0.5, task)


def test_footprint_refuses_a_slim_model_that_differs(planted_splits, monkeypatch):
    monkeypatch.setattr("fairprune.pruners.space.check_channel_plan", lambda *args, **kwargs: None)
    torch.manual_seed(0)
    dense = nn.Sequential(nn.Linear(25, 8), nn.ReLU(), _ChannelFlip(), nn.Linear(8, 2))
    task = Task(planted_splits, None, TrainConfig(batch_size=64, eval_every=5), 0)
    model = copy.deepcopy(dense)
    result = run_pruner(build_pruner("magnitude", structure="channel", finetune_steps=0), model, 0.5, task)
    with pytest.raises(ValueError, match="slimmed model differs from the masked one"):
        footprint(dense, model, result, planted_splits.val, ExportConfig(latency=False), "cpu")


def test_stratified_subset_keeps_every_cell_and_is_seeded():
    y = torch.tensor([0] * 90 + [1] * 10)
    g = torch.tensor([0] * 60 + [1] * 30 + [0] * 9 + [1] * 1)
    data = GroupData(torch.zeros(100, 1), y, g)
    idx = stratified_subset(data, 20, 2, seed=0)
    assert idx.tolist() == sorted(set(idx.tolist()))
    cells = (y[idx] * 2 + g[idx]).tolist()
    assert [cells.count(c) for c in range(4)] == [12, 6, 2, 1]  # 60/30/9/1 of 100 -> 12/6/2/1 (min 1)
    assert torch.equal(idx, stratified_subset(data, 20, 2, seed=0))
    assert not torch.equal(idx, stratified_subset(data, 20, 2, seed=1))


def test_eval_samples_limits_the_validation_checked_during_training(planted_splits):
    task = Task(planted_splits, None, TrainConfig(eval_samples=100), 0)
    assert abs(len(task.validation) - 100) <= 4
    assert len(Task(planted_splits, None, TrainConfig(), 0).validation) == len(planted_splits.val)
    with pytest.raises(
        ValueError,
        match=r"^bad config: train.eval_samples: expected a number greater than or equal to 0; got -1$",
    ):
        TrainConfig(eval_samples=-1)


def test_device_auto_resolves_and_bad_devices_are_named():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolved(TrainConfig(device="auto")).device == expected
    with pytest.raises(
        ValueError,
        match=r"^bad config: train.device: expected a torch device: 'auto', 'cpu', .*; got 'gpu0'$",
    ):
        TrainConfig(device="gpu0")


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_paper_configs_load_and_quick_scales_them_down(path):
    full = load_config(path)
    assert full.sparsities[:4] == [0.2, 0.36, 0.488, 0.5904]  # the Lottery Ticket schedule
    assert {"bifp", "imp", "prune_then_fair", "fair_then_prune"} <= set(full.methods)
    labels = {v.get("label") for v in full.variants}
    assert {"fpgm (channel)", "bifp (channel)", "magnitude (channel)"} <= labels
    q = quick(full)
    assert q.seeds == [0] and q.sparsities == [0.6723, 0.8926] and q.tolerances == []
    assert q.data.params["resolution"] == 32 and q.model.params["small_input"] is False
    assert q.train.dense_steps == full.train.dense_steps // 10
    assert q.train.batch_size == (32 if full.model.name == "mobilenet_v2" else 64)
    assert q.train.eval_samples == 300 and q.train.eval_every == 20
    assert q.method_params["bifp"] == {"steps": 80, "finetune_steps": 20}
    assert q.method_params["imp"] == {"round_steps": 20}
    # methods without budgets in the config get a tenth of their defaults
    assert q.method_params["bip"] == {"steps": 80, "finetune_steps": 20}


def test_quick_on_the_default_run(tmp_path):
    q = load_config(None, ["sparsities=[0.5, 0.7, 0.9, 0.95]", "seeds=[3, 4]"], quick_run=True)
    assert q.sparsities == [0.7, 0.95] and q.seeds == [3]
    assert q.method_params["magnitude"] == {"finetune_steps": 50}
    assert q.method_params["bifp"] == {"steps": 30, "finetune_steps": 50}
    assert q.data.params == {}  # tabular: no resolution to change


def test_cli_quick_flag_runs_the_scaled_config(tmp_path, planted_csv):
    out = tmp_path / "q"
    cfg = _config(tmp_path, planted_csv, extra="")
    assert (
        main(["run", str(cfg), "--out", str(out), "--quiet", "--quick", "--set", "export.latency=false"]) == 0
    )
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["train"]["dense_steps"] == 3 and resolved["method_params"]["fpgm"] == {
        "finetune_steps": 1
    }


@pytest.fixture(scope="module")
def random_images() -> Splits:
    gen = torch.Generator().manual_seed(0)

    def part(n: int) -> GroupData:
        x = torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8)
        return GroupData(x, torch.arange(n) % 2, (torch.arange(n) // 2) % 2)

    return Splits("random", "y", "g", part(64), part(32), part(32), ("0", "1"), ("a", "b"))


@pytest.mark.parametrize("sparsity", [0.5, 0.7])
@pytest.mark.parametrize("name", ["resnet10", "mobilenet_v2"])
def test_structured_bifp_on_the_paper_cnns_slims_to_the_masked_model(name, sparsity, random_images):
    torch.manual_seed(0)
    model = build_model(name, (3, 32, 32), 2, small_input=False)
    task = Task(
        random_images, FairnessObjective("equalized_odds", 0.1), TrainConfig(batch_size=16, eval_every=1), 0
    )
    pruner = build_pruner("bifp", structure="channel", steps=2, finetune_steps=1)
    result = run_pruner(pruner, model, sparsity, task)
    n = sum(p.numel() for p in prunable_parameters(model).values())
    achieved = sum(int((m == 0).sum()) for m in result.masks.values()) / n
    assert abs(achieved - sparsity) < 0.01 and 0 < result.channels.channel_fraction < sparsity
    slim = result.channels.slim(model).eval()
    model.eval()
    x = random_images.test.x.float() / 127.5 - 1.0
    torch.testing.assert_close(slim(x), model(x), rtol=1e-4, atol=1e-5)
    assert count_parameters(slim) < (1 - sparsity + 0.05) * count_parameters(model)


def test_a_trivial_predictor_is_never_reported_fair(tmp_path):
    """Labels independent of the features and 95% negative: the trained model predicts one class,
    whose equalized odds difference is 0 — reported as trivial, not as fair."""
    rng = np.random.default_rng(0)
    n = 1200
    frame = pd.DataFrame(rng.normal(size=(n, 4)), columns=list("abcd"))
    frame["group"] = np.where(rng.random(n) < 0.5, "x", "y")
    frame["label"] = (rng.random(n) < 0.05).astype(int)
    csv = tmp_path / "noise.csv"
    frame.to_csv(csv, index=False)
    cfg = _config(tmp_path, csv, extra="")
    out = tmp_path / "out"
    overrides = ["--set", "methods=['dense']", "--set", "structure='unstructured'", "--set", "train.lr=0.5"]
    assert main(["run", str(cfg), "--out", str(out), "--quiet", *overrides]) == 0
    row = pd.read_csv(out / "results.csv").iloc[0]
    assert row["trivial"] and row["equalized_odds_difference"] == 0.0
    assert row["val_violation"] <= row["tolerance"] and not row["fair"]
