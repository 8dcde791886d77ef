"""Export and evaluate a channel-pruned ResNet10 from a real (tiny) image sweep: uint8 images,
slimmed weights, ONNX run by onnxruntime against PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fairprune.cli import main


@pytest.fixture()
def image_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """96 noisy 16x16 images whose red channel tells the class, in a CSV with a sex column."""
    monkeypatch.setenv("FAIRPRUNE_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    rows = []
    for k in range(96):
        label, sex = k % 2, (k // 2) % 2
        pixels = rng.integers(0, 120, size=(16, 16, 3), dtype=np.uint8)
        pixels[..., 0] += np.uint8(120 * label)
        (tmp_path / "img").mkdir(exist_ok=True)
        Image.fromarray(pixels).save(tmp_path / "img" / f"{k}.png")
        rows.append({"path": f"{k}.png", "label": label, "sex": "fm"[sex]})
    pd.DataFrame(rows).to_csv(tmp_path / "faces.csv", index=False)
    return tmp_path / "faces.csv"


def test_channel_pruned_resnet10_ships_with_a_matching_onnx_file(image_csv, tmp_path, capsys):
    config = tmp_path / "exp.toml"
    config.write_text(
        f"""
methods = ["dense", "magnitude"]
sparsities = [0.5]
seeds = [0]
structure = "channel"

[data]
name = "image_csv"
path = "{image_csv}"
root = "{image_csv.parent / "img"}"
target = "label"
sensitive_attribute = "sex"
params = {{ path_column = "path", resolution = 16 }}

[model]
name = "resnet10"

[train]
dense_steps = 4
batch_size = 16
eval_every = 2

[export]
latency_repeats = 1
save_models = true

[method_params.magnitude]
finetune_steps = 2
"""
    )
    out, ship = tmp_path / "out", tmp_path / "ship"
    assert main(["run", str(config), "--out", str(out), "--quiet"]) == 0
    args = ["export", str(out), "--method", "magnitude", "--to", str(ship), "--onnx"]
    assert main(args) == 0
    card = json.loads((ship / "card.json").read_text())
    assert card["model"]["name"] == "resnet10" and card["model"]["input_shape"] == [3, 16, 16]
    assert card["model"]["input"]["preprocessing"].startswith("uint8 pixels x -> x / 127.5 - 1")
    assert card["model"]["shapes"]["conv1.weight"][0] < 64  # the stem's channels were slimmed
    assert card["files"]["model.onnx"]["max_abs_diff_vs_pytorch"] <= 1e-4
    row = pd.read_csv(out / "results.csv").query("label == 'magnitude'").iloc[0]
    assert card["footprint"]["params"] == row["params"]
    assert card["metrics"]["test"]["pruned"]["accuracy"] == pytest.approx(row["accuracy"], abs=1e-12)
    capsys.readouterr()
    assert main(["evaluate", str(ship)]) == 0
    printed = capsys.readouterr().out
    diff = float(printed.split("max abs difference ")[1].split()[0])
    assert diff <= 1e-4 and "agrees with the card" in printed
