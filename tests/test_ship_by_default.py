"""A sweep's models are shippable by default: ``fairprune run`` -> ``fairprune export`` (a run, or
``--best``) -> ``fairprune evaluate``; ``export_model`` of an API result writes the same card."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from sweep_helpers import tiny_config, tiny_frame
from test_api import FAST, TabularNet, tabular
from torch.utils.data import TensorDataset

import fairprune
from fairprune.cli import main
from fairprune.data.adapters import as_group_data
from fairprune.export import PRUNING_KEYS, export_model, load_exported, save_model
from fairprune.inference import predict
from fairprune.sweep.choice import best_run


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny sweep (dense, magnitude, BiFP at 0.5, seed 0) with the default export settings."""
    root = tmp_path_factory.mktemp("default")
    csv = root / "tiny.csv"
    tiny_frame().to_csv(csv, index=False)
    out = root / "out"
    # the levelling-down floor off: on 35 validation rows one sample is 3 points, and the test
    # needs a pruned run within tau
    config = tiny_config(root, csv, seeds="[0]", extra="[fairness]\nfloor = -1.0\n")
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    return out


def test_run_then_export_then_evaluate_with_the_default_config(sweep, tmp_path, capsys):
    frame = pd.read_csv(sweep / "results.csv")
    pruned = frame[frame["method"] != "dense"]
    assert sorted(p.name for p in (sweep / "models").iterdir()) == sorted(pruned["run_id"])
    shipped = tmp_path / "shipped"
    assert main(["export", str(sweep), "--method", "bifp", "--sparsity", "0.5", "--to", str(shipped)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(shipped)]) == 0
    assert "every metric of the test split agrees with the card" in capsys.readouterr().out
    card = json.loads((shipped / "card.json").read_text())
    bifp = pruned[pruned["label"] == "bifp"].iloc[0]
    assert card["pruning"]["method"] == "bifp" and card["pruning"]["fair"] == bool(bifp["fair"])
    if not math.isnan(bifp.get("degradation_bound", math.nan)):  # the per-group claim travels with the model
        assert card["pruning"]["degradation_bound"] == pytest.approx(bifp["degradation_bound"])
    assert card["metrics"]["test"]["pruned"]["accuracy"] == pytest.approx(bifp["accuracy"], abs=1e-12)
    saved = json.loads((sweep / "models" / bifp["run_id"] / "card.json").read_text())
    assert list(saved["pruning"]) == list(card["pruning"]) == list(PRUNING_KEYS)  # one card format
    assert saved["metrics"] == card["metrics"] and saved["model"]["shapes"] == card["model"]["shapes"]


def test_export_best_picks_the_most_accurate_run_within_tau(sweep, tmp_path, capsys):
    frame = pd.read_csv(sweep / "results.csv")
    within = frame[(frame["method"] != "dense") & frame["fair"]]
    assert not within.empty  # the tiny sweep has a pruned run within tau
    expected = within.loc[within["val_accuracy"].idxmax()]
    capsys.readouterr()
    assert main(["export", str(sweep), "--best", "--to", str(tmp_path / "best")]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith(
        f"--best: run {expected['run_id']} ({expected['label']}, unstructured, sparsity 0.5"
    )
    assert line.endswith(f"of {len(within)} pruned run(s) within tau at every sparsity")
    card = json.loads((tmp_path / "best" / "card.json").read_text())
    assert card["pruning"]["run_id"] == expected["run_id"]
    assert main(["export", str(sweep), "--best", "--sparsity", "0.7", "--to", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fairprune: error: --best: no pruned run at sparsity 0.7; sparsities present: 0.5")
    assert not (tmp_path / "x").exists()


def _frame(**columns: list) -> pd.DataFrame:
    base = {
        "run_id": ["d", "m1", "m2", "b1", "b2", "p"],
        "method": ["dense", "magnitude", "magnitude", "bifp", "bifp", "postprocess"],
        "label": ["dense", "magnitude", "magnitude", "bifp", "bifp", "postprocess"],
        "structure": ["unstructured"] * 6,
        "sparsity": [0.0, 0.5, 0.9, 0.5, 0.9, 0.9],
        "seed": [0] * 6,
        "accuracy": [0.90, 0.80, 0.85, 0.79, 0.84, 0.99],
        "val_accuracy": [0.90, 0.81, 0.86, 0.80, 0.84, 0.99],
        "fair": [True, True, True, True, True, True],
        "needs_sensitive_attribute": [False] * 5 + [True],
    }
    return pd.DataFrame({**base, **columns})


def test_best_run_on_a_hand_built_table():
    row, line = best_run(_frame())  # dense and the group-threshold run are never candidates
    assert row["run_id"] == "m2" and "4 pruned run(s) within tau at every sparsity" in line
    assert best_run(_frame(), sparsity=0.5)[0]["run_id"] == "m1"
    assert best_run(_frame(), method="bifp")[0]["run_id"] == "b2"
    # validation accuracy chooses, not the test split's
    assert best_run(_frame(accuracy=[0.9, 0.99, 0.1, 0.1, 0.1, 0.1]))[0]["run_id"] == "m2"
    unfair = _frame(fair=[True, True, False, True, "False", True])
    assert best_run(unfair)[0]["run_id"] == "m1"
    # certified runs first, when the table records them; otherwise every run within tau
    certified = best_run(_frame(certified=[True, False, False, True, False, False]))
    assert certified[0]["run_id"] == "b1" and "1 pruned run(s) certified within tau" in certified[1]
    none = best_run(_frame(certified=[False] * 6))
    assert none[0]["run_id"] == "m2" and "within tau (none certified)" in none[1]


def test_best_run_without_a_run_within_tau_lists_the_sparsities():
    with pytest.raises(ValueError) as error:
        best_run(_frame(fair=[True, False, True, False, False, True]), sparsity=0.5)
    assert str(error.value) == (
        "--best: no pruned run within tau (column 'fair') at sparsity 0.5; sparsities present: "
        "0.5, 0.9, with a run within tau: 0.9. Pick one of those with --sparsity, or a run with --method"
    )
    with pytest.raises(ValueError, match="with a run within tau: none"):
        best_run(_frame(fair=[False] * 6))


def test_export_reads_models_saved_before_they_were_shipped_directories(sweep, tmp_path, capsys):
    copy = tmp_path / "old"
    shutil.copytree(sweep, copy)
    run_id = pd.read_csv(copy / "results.csv").query("label == 'magnitude'")["run_id"].iloc[0]
    model = load_exported(copy / "models" / run_id).model
    card = json.loads((copy / "models" / run_id / "card.json").read_text())
    shutil.rmtree(copy / "models" / run_id)
    save_model(copy / "models" / run_id, model, {}, {"model": card["model"]})  # model.pt + masks.pt
    assert main(["export", str(copy), "--run-id", run_id, "--to", str(tmp_path / "ship")]) == 0
    assert main(["evaluate", str(tmp_path / "ship")]) == 0


def test_a_sweep_saved_without_models_resumes_under_the_new_default(sweep, tmp_path, capsys):
    copy = tmp_path / "old"
    shutil.copytree(sweep, copy)
    config = json.loads((copy / "config.json").read_text())
    config["export"]["save_models"] = False  # what the default was
    (copy / "config.json").write_text(json.dumps(config))
    assert main(["run", str(sweep.parent / "exp.toml"), "--out", str(copy), "--quiet"]) == 0


def test_export_model_takes_a_pruning_result_and_writes_the_same_card(sweep, tmp_path):
    torch.manual_seed(0)
    train, val, test = (TensorDataset(*tabular(n, seed)) for n, seed in ((300, 1), (150, 2), (150, 3)))
    result = fairprune.prune(
        TabularNet(6, 2), train, val, 0.5, test=test, group_names=["a", "b", "c"], **FAST
    )
    out = export_model(result, tmp_path / "api")
    card = json.loads((out / "card.json").read_text())
    assert list(card["pruning"]) == list(PRUNING_KEYS)
    assert {k: card["pruning"][k] for k in ("method", "structure", "fairness", "fair")} == {
        "method": "bifp",
        "structure": "unstructured",
        "fairness": "equalized_odds",
        "fair": result.feasible,
    }
    assert card["pruning"]["tolerance"] == result.tolerance and card["pruning"]["sparsity"] == 0.5
    assert card["pruning"]["degradation_bound"] == result.degradation_bound
    assert card["footprint"]["sparsity"] == result.achieved_sparsity == 0.5
    pruned = result.metrics["test"]["pruned"]
    assert card["metrics"]["test"]["pruned"]["accuracy"] == pruned["accuracy"]
    assert card["metrics"]["val"]["dense"]["accuracy"] == result.metrics["val"]["dense"]["accuracy"]
    assert card["metrics"]["test"]["pruned"]["group_size"] == {"a": 50, "b": 50, "c": 50}
    assert (
        card["data"]["group_names"] == ["a", "b", "c"] and card["data"]["group_sizes"]["train"] == [100] * 3
    )
    sweep_card = json.loads(next((sweep / "models").glob("bifp*/card.json")).read_text())
    assert set(card) - {"data_source", "sweep"} == set(sweep_card) - {"data_source", "sweep"}
    markdown = (out / "MODEL_CARD.md").read_text()
    assert markdown.startswith("# Model card: TabularNet pruned by bifp\n")
    within = "within" if result.feasible else "not within"
    assert f"- **Outcome**: equalized_odds {within} tau = {result.tolerance:.4g} on validation" in markdown
    loaded = load_exported(out, model=TabularNet(6, 2))
    data = as_group_data(test, name="test")
    assert torch.equal(predict(loaded.model, data), predict(result.model, data))
    text = repr(loaded)
    assert text.startswith(
        "ExportedModel(TabularNet pruned by bifp (unstructured, sparsity 0.5)\n  equalized_odds"
    )
    assert f"test: accuracy {pruned['accuracy']:.4g} (dense" in text and len(text) < 400


def test_export_model_of_a_channel_result_records_the_achieved_sparsity(tmp_path):
    torch.manual_seed(0)
    train, val = (TensorDataset(*tabular(n, seed)) for n, seed in ((300, 1), (150, 2)))
    result = fairprune.prune(
        TabularNet(6, 2),
        train,
        val,
        0.5,
        method="magnitude",
        structure="channel",
        finetune_steps=2,
        progress=False,
    )
    card = json.loads((export_model(result, tmp_path / "slim") / "card.json").read_text())
    assert card["model"]["shapes"]["body.0.weight"][0] < 16  # physically slimmed
    assert card["footprint"]["sparsity"] == result.achieved_sparsity > 0.3
    assert card["pruning"]["structure"] == "channel" and card["pruning"]["fairness"] == "equalized_odds"
    assert set(card["metrics"]) == {"val"}  # no test split given


def test_export_model_rejects_something_else(tmp_path):
    with pytest.raises(TypeError, match="expects an nn.Module or a PruningResult; received dict"):
        export_model({"model": 1}, tmp_path / "x")
