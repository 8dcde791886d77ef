"""End-to-end runs of the ``fairprune`` command on a small CSV data set."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from fairprune.cli import main

REQUIRED_COLUMNS = [
    "dataset",
    "target",
    "sensitive_attribute",
    "model",
    "method",
    "sparsity",
    "seed",
    "accuracy",
    "accuracy_gap",
    "degradation_gap",
    "demographic_parity_difference",
    "equalized_odds_difference",
    "worst_group_accuracy",
    "train_iterations",
    "wall_seconds",
]


def _config(tmp_path: Path, csv: Path, extra: str = "") -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(
        f"""
methods = ["dense", "magnitude", "bifp"]
sparsities = [0.5, 0.8]
seeds = [0]

[data]
name = "csv"
path = "{csv}"
target = "label"
sensitive_attribute = "group"

[model]
name = "mlp"
params = {{ hidden = [16] }}

[train]
dense_steps = 30
batch_size = 64
eval_every = 5

[method_params.magnitude]
finetune_steps = 10

[method_params.bifp]
steps = 6
finetune_steps = 4
{extra}
"""
    )
    return path


def test_run_writes_results_config_and_resumes(tmp_path, planted_csv, capsys):
    out = tmp_path / "out"
    cfg = _config(tmp_path, planted_csv)
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "bifp" in printed and "results:" in printed
    frame = pd.read_csv(out / "results.csv")
    assert set(REQUIRED_COLUMNS) <= set(frame.columns)
    assert len(frame) == 1 + 2 * 2  # dense once, then 2 methods x 2 sparsities
    assert sorted(frame["label"].unique()) == ["bifp", "dense", "magnitude"]
    pruned = frame[frame["method"] != "dense"]
    assert (pruned["achieved_sparsity"].round(2) == pruned["sparsity"]).all()
    assert (frame["dataset"] == "planted").all() and (frame["sensitive_attribute"] == "group").all()
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["data"]["target"] == "label" and resolved["method_params"]["bifp"]["steps"] == 6
    # a second run on the same directory skips every recorded run
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")} == stamps


def test_run_refuses_a_directory_with_another_config(tmp_path, planted_csv, capsys):
    out = tmp_path / "out"
    cfg = _config(tmp_path, planted_csv)
    dense_only = ["--set", "methods=['dense']"]
    assert main(["run", str(cfg), "--out", str(out), "--quiet", *dense_only, "--set", "train.lr=0.1"]) == 0
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(out), "--quiet", *dense_only]) == 2
    assert "different config" in capsys.readouterr().err
    assert len(pd.read_csv(out / "results.csv")) == 1  # nothing lost
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--restart"]) == 0
    assert len(pd.read_csv(out / "results.csv")) == 5


def test_a_config_that_only_adds_runs_extends_the_sweep(tmp_path, planted_csv, capsys):
    out = tmp_path / "out"
    cfg = _config(tmp_path, planted_csv)
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--set", "methods=['dense', 'bifp']"]) == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    assert len(stamps) == 3
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0  # adds magnitude
    after = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    assert len(after) == 5 and all(after[name] == stamp for name, stamp in stamps.items())
    assert json.loads((out / "config.json").read_text())["methods"] == ["dense", "magnitude", "bifp"]
    # changing a recorded method's hyperparameters is not an extension
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--set", "method_params.bifp.steps=7"]) == 2
    assert "different config" in capsys.readouterr().err


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.name=adultt"], r"data.name: expected 'adult', .*got 'adultt'"),
        (["data.target=labell"], "labell"),
        (["methods=['magnitud']"], r"methods\[0\]: expected 'dense', .*got 'magnitud'"),
        (["sparsities=[0.5, 1.0]"], r"sparsities\[1\]: expected a number less than 1; got 1.0"),
        (["sparsities=[-0.1]"], r"sparsities\[0\]: expected a number greater than or equal to 0; got -0.1"),
        (["train.lrr=0.1"], r"train.lrr: unknown key"),
        (["colour=1"], r"colour: unknown key"),
        (["fairness.tolerance='loose'"], "'dense'"),
        (["fairness.metric='parity'"], r"fairness.metric: expected 'accuracy_gap', .*got 'parity'"),
        (["method_params.bifp.stepz=2"], "stepz"),
        (["data.sensitive_attribute='f0'"], "group"),
        (["novalue"], "key=value"),
    ],
)
def test_bad_input_is_a_clear_error(tmp_path, planted_csv, capsys, overrides, message):
    cfg = _config(tmp_path, planted_csv)
    args = ["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 2
    assert re.search(message, capsys.readouterr().err)


def test_one_group_sensitive_attribute_is_an_error(tmp_path, capsys):
    csv = tmp_path / "one.csv"
    pd.DataFrame({"a": range(40), "label": [0, 1] * 20, "group": ["x"] * 40}).to_csv(csv, index=False)
    assert main(["run", str(_config(tmp_path, csv)), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "group" in capsys.readouterr().err


def test_missing_config_file_is_an_error(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml"), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_nan_loss_stops_with_the_step_and_keeps_earlier_runs(tmp_path, planted_csv, capsys):
    cfg = _config(tmp_path, planted_csv, extra="\n[fairness]\nmode = 'penalty'\npenalty_weight = 1e308\n")
    out = tmp_path / "out"
    assert (
        main(["run", str(cfg), "--out", str(out), "--quiet", "--set", "methods=['dense','prune_then_fair']"])
        == 2
    )
    err = capsys.readouterr().err
    assert "at step" in err and "expected a finite loss" in err
    frame = pd.read_csv(out / "results.csv")
    assert frame["method"].tolist() == ["dense"]  # the finished run is kept
    assert not list((out / "runs").glob(".*.tmp"))


def test_grid_over_targets_and_sensitive_attributes(tmp_path, planted_csv):
    from fairprune.config import load_config
    from fairprune.sweep.experiment import grid

    frame = pd.read_csv(planted_csv)
    frame["site"] = ["north", "south"] * (len(frame) // 2)
    frame["label2"] = (frame["f0"] > 0).astype(int)
    csv = tmp_path / "two.csv"
    frame.to_csv(csv, index=False)
    cfg_path = _config(tmp_path, csv)
    overrides = [
        "sensitive_attributes=['group','site']",
        "targets=['label','label2']",
        "methods=['dense','magnitude']",
        "sparsities=[0.5]",
    ]
    jobs = grid(load_config(cfg_path, overrides))
    assert len(jobs) == 4 * 2  # 4 cells x (dense + magnitude)
    assert len({j.run_id for j in jobs}) == 8 and len({j.dense_key for j in jobs}) == 4
    out = tmp_path / "out"
    args = ["run", str(cfg_path), "--out", str(out), "--quiet", "--set", "data.fractions=[0.6,0.2,0.2]"]
    for item in overrides:
        args += ["--set", item]
    assert main(args) == 0
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 8
    pairs = set(zip(results["target"], results["sensitive_attribute"], strict=True))
    assert pairs == {("label", "group"), ("label", "site"), ("label2", "group"), ("label2", "site")}
    assert len(list((out / "dense").glob("*.pt"))) == 4


CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_load(path):
    from fairprune.config import load_config
    from fairprune.sweep.experiment import grid

    jobs = grid(load_config(path))
    assert len(jobs) > len(load_config(path).seeds)
    assert len({j.run_id for j in jobs}) == len(jobs)


def test_report_on_a_real_run(tmp_path, planted_csv, capsys):
    out = tmp_path / "out"
    cfg = _config(tmp_path, planted_csv)
    overrides = ["--set", "seeds=[0,1]", "--set", "methods=['dense','magnitude','bip','bifp']"]
    assert main(["run", str(cfg), "--out", str(out), "--quiet", *overrides]) == 0
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "bifp" in printed and "report.md" in printed
    text = (out / "report.md").read_text()
    assert "plots/accuracy_vs_sparsity.png" in text and "within seed noise" in text
    for name in ["accuracy_vs_sparsity", "equalized_odds_difference_vs_sparsity", "convergence", "ablation"]:
        assert (out / "plots" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_of_a_missing_directory_is_an_error(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err


def test_dense_factor_scales_the_dense_tolerance(tmp_path, planted_csv):
    cfg = _config(tmp_path, planted_csv)
    runs = ["--set", "methods=['dense', 'magnitude']", "--set", "sparsities=[0.5]"]
    assert main(["run", str(cfg), "--out", str(tmp_path / "one"), "--quiet", *runs]) == 0
    half = ["--set", "fairness.dense_factor=0.5"]
    assert main(["run", str(cfg), "--out", str(tmp_path / "half"), "--quiet", *runs, *half]) == 0
    one, halved = (pd.read_csv(tmp_path / d / "results.csv").set_index("label") for d in ("one", "half"))
    dense_violation = one.loc["dense", "val_violation"]
    assert one.loc["magnitude", "tolerance"] == pytest.approx(dense_violation)
    assert halved.loc["magnitude", "tolerance"] == pytest.approx(0.5 * dense_violation)
    assert halved.loc["magnitude", "tolerance_setting"] == "0.5*dense"
    assert (
        main(["run", str(cfg), "--out", str(tmp_path / "bad"), "--set", "fairness.tolerance=0.1", *half]) == 2
    )


def test_the_dense_row_carries_the_dense_training_time(tmp_path, planted_csv, capsys):
    cfg = _config(tmp_path, planted_csv)
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--set", "methods=['dense']"]) == 0
    assert "wall time of this invocation:" in capsys.readouterr().out
    dense = pd.read_csv(out / "results.csv").iloc[0]
    saved = torch.load(out / "dense" / "seed0.pt", weights_only=True)
    assert saved["seconds"] > 0 and dense["wall_seconds"] >= saved["seconds"]
    assert dense["train_iterations"] == saved["iterations"] == 30  # train.dense_steps
