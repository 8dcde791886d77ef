"""``fairprune export`` / ``fairprune evaluate`` on real small sweeps: round trips, file sizes,
ONNX against PyTorch, and every bad input of issue 10 as a clear error."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import planted_bias_frame
from safetensors import safe_open

from fairprune.cli import main
from fairprune.data.tabular import load_csv
from fairprune.export import export_model, load_exported, load_weights, onnx_outputs
from fairprune.inference import logits_of, predict

HIDDEN = [256, 128]  # wide enough that a file's header is noise next to its weights


def _sweep(root: Path, csv: Path, name: str, extra: str) -> Path:
    config = root / f"{name}.toml"
    config.write_text(
        f"""
methods = ["dense", "magnitude"]
seeds = [0, 1]
{extra}

[data]
name = "csv"
path = "{csv}"
target = "label"
sensitive_attribute = "group"

[model]
name = "mlp"
params = {{ hidden = {HIDDEN} }}

[train]
dense_steps = 30
batch_size = 64
eval_every = 5

[export]
latency_repeats = 2
save_models = true

[method_params.magnitude]
finetune_steps = 6
"""
    )
    out = root / name
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "planted.csv"
    planted_bias_frame(n=1500).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def unstructured(tmp_path_factory: pytest.TempPathFactory, csv: Path) -> Path:
    return _sweep(tmp_path_factory.mktemp("sweeps"), csv, "unstructured", "sparsities = [0.9]")


@pytest.fixture(scope="module")
def channel(tmp_path_factory: pytest.TempPathFactory, csv: Path) -> Path:
    extra = 'sparsities = [0.5]\nstructure = "channel"'
    return _sweep(tmp_path_factory.mktemp("sweeps"), csv, "channel", extra)


def _export(out: Path, to: Path, *args: str) -> Path:
    assert main(["export", str(out), "--to", str(to), *args]) == 0
    return to


def _record(out: Path, label: str, seed: int = 0) -> pd.Series:
    frame = pd.read_csv(out / "results.csv")
    return frame[(frame["label"] == label) & (frame["seed"] == seed)].iloc[0]


def test_unstructured_round_trip_card_sparse_file_and_onnx(unstructured, csv, tmp_path, capsys):
    ship = _export(
        unstructured, tmp_path / "ship", "--method", "magnitude", "--sparsity", "0.9", "--seed", "0", "--onnx"
    )
    assert sorted(p.name for p in ship.iterdir()) == [
        "MODEL_CARD.md",
        "card.json",
        "model.onnx",
        "model.sparse.safetensors",
    ]
    card = json.loads((ship / "card.json").read_text())
    row = _record(unstructured, "magnitude")
    test = card["metrics"]["test"]
    assert test["pruned"]["accuracy"] == pytest.approx(row["accuracy"], abs=1e-12)
    assert test["pruned"]["equalized_odds_difference"] == pytest.approx(
        row["equalized_odds_difference"], abs=1e-12
    )
    assert test["pruned"]["degradation_gap"] == pytest.approx(row["degradation_gap"], abs=1e-12)
    assert test["dense"]["accuracy"] == pytest.approx(_record(unstructured, "dense")["accuracy"], abs=1e-12)
    assert sum(test["pruned"]["group_size"].values()) == 225 and set(card["metrics"]) == {"val", "test"}
    assert card["data"]["group_names"] == ["majority", "minority"] and card["data"]["target"] == "label"
    assert card["footprint"]["sparsity"] == pytest.approx(row["achieved_sparsity"], abs=1e-12)
    assert (
        card["pruning"]["tolerance"] == pytest.approx(row["tolerance"])
        and card["pruning"]["fairness"] == "equalized_odds"
    )
    both = pd.read_csv(unstructured / "results.csv").query("label == 'magnitude'")["accuracy"]
    assert card["seeds"]["seeds"] == [0, 1] and card["seeds"]["metrics"]["accuracy"]["mean"] == pytest.approx(
        both.mean()
    )
    # the Student-t interval of two seeds: mean -/+ t(1, 0.975) * s / sqrt(2), t = 12.706
    half = 12.706204736 * both.std(ddof=1) / math.sqrt(2)
    interval = card["seeds"]["metrics"]["accuracy"]
    assert (interval["low"], interval["high"]) == pytest.approx((both.mean() - half, both.mean() + half))
    assert card["config"]["model"]["params"]["hidden"] == HIDDEN
    for name, entry in card["files"].items():
        assert entry["sha256"] == hashlib.sha256((ship / name).read_bytes()).hexdigest()
    assert "majority (train" in (ship / "MODEL_CARD.md").read_text()
    # the shipped model reproduces the record, ONNX reproduces PyTorch
    splits = load_csv(csv, target="label", sensitive_attribute="group", seed=0)
    model = load_exported(ship).model
    assert float((predict(model, splits.test) == splits.test.y).float().mean()) == pytest.approx(
        row["accuracy"]
    )
    diff = (onnx_outputs(ship / "model.onnx", splits.test.x) - logits_of(model, splits.test)).abs().max()
    assert float(diff) <= 1e-4
    capsys.readouterr()
    assert main(["evaluate", str(ship)]) == 0
    printed = capsys.readouterr().out
    assert "agrees with the card" in printed and "model.onnx vs PyTorch" in printed
    assert main(["evaluate", str(ship), "--split", "val"]) == 0


def test_sparse_file_is_about_the_density_and_decodes_in_plain_pytorch(unstructured, tmp_path):
    args = ["--method", "magnitude", "--sparsity", "0.9", "--seed", "0"]
    sparse = _export(unstructured, tmp_path / "sparse", *args) / "model.sparse.safetensors"
    dense = _export(unstructured, tmp_path / "dense", *args, "--weights", "dense") / "model.safetensors"
    card = json.loads((sparse.parent / "card.json").read_text())
    density = card["footprint"]["nonzero_params"] / card["footprint"]["params"]
    ratio = sparse.stat().st_size / dense.stat().st_size
    assert density < ratio < density + 1 / 32 + 0.01  # bitmask: 1 bit per weight, 4 bytes per kept one
    assert card["files"]["model.sparse.safetensors"]["bytes"] == sparse.stat().st_size
    # the plain decoding of docs/export-and-shipping.md (safetensors + torch only) gives the same tensors
    state = {}
    with safe_open(str(sparse), framework="pt") as f:
        shapes, stored = json.loads(f.metadata()["shapes"]), set(f.keys())
        for name, shape in shapes.items():
            if name in stored:
                state[name] = f.get_tensor(name)
                continue
            if name + ":indices" in stored:
                where = f.get_tensor(name + ":indices").long()
            else:
                bits = f.get_tensor(name + ":bitmask")[:, None] >> torch.arange(7, -1, -1, dtype=torch.uint8)
                where = (bits & 1).flatten()[: math.prod(shape)].bool()
            weight = torch.zeros(math.prod(shape))
            weight[where] = f.get_tensor(name + ":values")
            state[name] = weight.view(shape)
    reference = load_weights(dense)
    assert state.keys() == reference.keys()
    assert all(torch.equal(state[k], reference[k]) for k in state)


def test_channel_round_trip_and_file_is_about_the_parameter_ratio(channel, tmp_path, capsys):
    ship = _export(channel, tmp_path / "ship", "--method", "magnitude", "--sparsity", "0.5", "--seed", "1")
    dense = _export(channel, tmp_path / "dense", "--method", "dense", "--seed", "1")
    assert (ship / "model.safetensors").is_file()  # auto: a slimmed model has no zeros to pack
    row = _record(channel, "magnitude", seed=1)
    card = json.loads((ship / "card.json").read_text())
    assert card["model"]["shapes"]["features.0.weight"][0] < HIDDEN[0]  # physically slimmed
    assert card["footprint"]["params"] == row["params"]
    size_ratio = (ship / "model.safetensors").stat().st_size / (dense / "model.safetensors").stat().st_size
    assert size_ratio == pytest.approx(row["params_ratio"], abs=0.01)
    assert card["metrics"]["test"]["pruned"]["accuracy"] == pytest.approx(row["accuracy"], abs=1e-12)
    capsys.readouterr()
    assert main(["evaluate", str(ship)]) == 0 and main(["evaluate", str(dense)]) == 0
    assert "agrees with the card" in capsys.readouterr().out


def test_evaluate_on_other_data_prints_the_card_beside_new_metrics(unstructured, tmp_path, capsys):
    ship = _export(unstructured, tmp_path / "ship", "--method", "magnitude", "--seed", "1")
    other = tmp_path / "other.csv"
    planted_bias_frame(n=600, seed=7).to_csv(other, index=False)
    capsys.readouterr()
    assert main(["evaluate", str(ship), "--data", str(other)]) == 0
    printed = capsys.readouterr().out
    splits = load_csv(other, target="label", sensitive_attribute="group", seed=1)
    y = torch.cat([splits.train.y, splits.val.y, splits.test.y])
    pred = torch.cat([predict(load_exported(ship).model, s) for s in (splits.train, splits.val, splits.test)])
    accuracy = float((pred == y).float().mean())
    card = json.loads((ship / "card.json").read_text())["metrics"]["test"]["pruned"]["accuracy"]
    line = next(x for x in printed.splitlines() if x.split()[0] == "accuracy")
    assert line.split()[1:3] == [f"{card:.6g}", f"{accuracy:.6g}"]
    assert "the all split of the given data" in printed


def test_a_metric_that_disagrees_with_the_card_exits_1_with_the_difference(unstructured, tmp_path, capsys):
    ship = _export(unstructured, tmp_path / "ship", "--method", "magnitude", "--seed", "0")
    card = json.loads((ship / "card.json").read_text())
    true_value = card["metrics"]["test"]["pruned"]["accuracy_gap"]
    card["metrics"]["test"]["pruned"]["accuracy_gap"] = true_value - 0.01
    (ship / "card.json").write_text(json.dumps(card))
    capsys.readouterr()
    assert main(["evaluate", str(ship)]) == 1
    captured = capsys.readouterr()
    rows = [x.split() for x in captured.out.splitlines()[1:] if x.strip()]
    assert [r[0] for r in rows] == ["accuracy_gap"] and float(rows[0][3]) == pytest.approx(0.01, abs=1e-6)
    assert "1 metric(s) disagree with the card beyond 1e-06: ['accuracy_gap']" in captured.err
    assert main(["evaluate", str(ship), "--tolerance", "0.02"]) == 0


def _shipped(unstructured: Path, tmp_path: Path) -> Path:
    return _export(unstructured, tmp_path / "ship", "--method", "magnitude", "--seed", "0")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "model.sparse.safetensors").unlink(), "misses model.sparse.safetensors"),
        (lambda d: _flip_last_byte(d / "model.sparse.safetensors"), "sha256 .* but the card records"),
        (
            lambda d: _edit_card(d, ["model", "shapes", "head.weight"], [3, 128]),
            r"'head.weight' has shape \[2, 128\]",
        ),
        (lambda d: (d / "card.json").unlink(), "holds no card.json"),
        (lambda d: _edit_card(d, ["files", "../x"], {"sha256": "0"}), "expected plain file names"),
    ],
    ids=["missing-file", "tampered", "card-shapes", "no-card", "path-outside"],
)
def test_a_damaged_model_directory_is_a_clear_error(unstructured, tmp_path, capsys, damage, message):
    ship = _shipped(unstructured, tmp_path)
    damage(ship)
    capsys.readouterr()
    assert main(["evaluate", str(ship)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fairprune: error:")
    assert re.search(message, err)


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_card(directory: Path, keys: list[str], value: object) -> None:
    card = json.loads((directory / "card.json").read_text())
    entry = card
    for key in keys[:-1]:
        entry = entry[key]
    entry[keys[-1]] = value
    (directory / "card.json").write_text(json.dumps(card))


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda f: f.assign(group=f["group"].replace("minority", "other")),
            r"groups .*missing \['minority'\]; not in the card \['other'\]",
        ),
        (
            lambda f: f.assign(label=f["label"].replace(1, 2)),
            r"classes .*missing \['1'\]; not in the card \['2'\]",
        ),
    ],
    ids=["groups", "classes"],
)
def test_evaluate_data_with_other_groups_or_classes_names_them(
    unstructured, tmp_path, capsys, change, message
):
    ship = _shipped(unstructured, tmp_path)
    other = tmp_path / "other.csv"
    change(planted_bias_frame(n=600, seed=3)).to_csv(other, index=False)
    capsys.readouterr()
    assert main(["evaluate", str(ship), "--data", str(other)]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_export_bad_choices_are_clear_errors(unstructured, tmp_path, capsys):
    to = ["--to", str(tmp_path / "x")]
    assert main(["export", str(tmp_path / "nothing"), "--method", "bifp", *to]) == 2
    assert "holds no finished sweep" in capsys.readouterr().err
    assert main(["export", str(unstructured), "--method", "bifp", "--sparsity", "0.9", *to]) == 2
    err = capsys.readouterr().err
    assert "no run matches method='bifp'" in err and "(magnitude, unstructured, 0.9, 1)" in err
    assert main(["export", str(unstructured), "--method", "magnitude", *to]) == 2
    assert "2 runs match" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_export_of_a_sweep_without_saved_models_says_how_to_save_them(unstructured, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(unstructured, copy)
    shutil.rmtree(copy / "models")
    assert (
        main(["export", str(copy), "--method", "magnitude", "--seed", "0", "--to", str(tmp_path / "x")]) == 2
    )
    assert "--set export.save_models=true" in capsys.readouterr().err
    _export(copy, tmp_path / "dense", "--method", "dense", "--seed", "0")  # the dense model is always kept
    frame = pd.read_csv(copy / "results.csv")
    frame["needs_sensitive_attribute"] = True
    frame.to_csv(copy / "results.csv", index=False)
    assert main(["export", str(copy), "--method", "dense", "--seed", "0", "--to", str(tmp_path / "y")]) == 2
    assert "needs the sensitive attribute at prediction time" in capsys.readouterr().err


def test_evaluate_data_from_a_toml_table_and_a_card_without_data(unstructured, csv, tmp_path, capsys):
    ship = _shipped(unstructured, tmp_path)
    table = tmp_path / "data.toml"
    table.write_text(
        f'[data]\nname = "csv"\npath = "{csv}"\ntarget = "label"\nsensitive_attribute = "group"\n'
    )
    capsys.readouterr()
    assert main(["evaluate", str(ship), "--data", str(table), "--split", "test"]) == 0
    printed = capsys.readouterr().out
    line = next(x for x in printed.splitlines() if x.split()[0] == "accuracy")
    assert line.split()[1] == line.split()[2]  # the card's own data and split: the same accuracy
    model = load_exported(ship).model
    bare = export_model(
        model, tmp_path / "bare", architecture=json.loads((ship / "card.json").read_text())["model"]
    )
    assert main(["evaluate", str(bare)]) == 2
    assert "names no data to re-check on" in capsys.readouterr().err
