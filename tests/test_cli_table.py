"""The terminal table shows ``trivial`` and ``val_violation`` and names the groups; the dense row
carries the dense training's time (issue 11)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from fairprune.cli import format_results, main


def _frame(group_columns: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "label": ["dense", "bifp"],
            "sensitive_attribute": ["sex", "sex"],
            "sparsity": [0.0, 0.9],
            "accuracy": [0.81234, 0.5],
            "val_violation": [0.03125, 0.0],
            "fair": [True, False],
            "trivial": [False, True],
            **group_columns,
        }
    )


def test_table_shows_trivial_and_val_violation_compactly_with_group_names() -> None:
    text = format_results(_frame({"group_accuracy_Female": [0.8, 0.5], "group_accuracy_Male": [0.82, 0.5]}))
    lines = text.splitlines()
    assert lines[0].split() == ["label", "sparsity", "accuracy", "val_violation", "fair", "trivial"]
    assert lines[1].split() == ["dense", "0.0000", "0.8123", "0.0312", "yes", "-"]
    assert lines[2].split() == ["bifp", "0.9000", "0.5000", "0.0000", "-", "yes"]
    assert lines[3] == "groups of sex: Female, Male"


def test_table_names_no_groups_when_the_columns_are_numbered() -> None:
    text = format_results(_frame({"group_accuracy_0": [0.8, 0.5], "group_accuracy_1": [0.82, 0.5]}))
    assert len(text.splitlines()) == 3 and "groups of" not in text


def test_cli_table_and_dense_row_time(
    tmp_path: Path, planted_csv: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    args = [
        "run",
        "--out",
        str(out),
        "--quiet",
        "--set",
        "data.name=csv",
        "--set",
        f"data.path={planted_csv}",
    ]
    args += ["--set", "data.target=label", "--set", "data.sensitive_attribute=group"]
    args += ["--set", "methods=['dense','magnitude']", "--set", "sparsities=[0.5]", "--set", "model.name=mlp"]
    args += ["--set", "train.dense_steps=30", "--set", "method_params.magnitude.finetune_steps=5"]
    assert main(args) == 0
    header = capsys.readouterr().out.splitlines()[0].split()
    assert {"val_violation", "fair", "trivial", "wall_seconds"} <= set(header)
    frame = pd.read_csv(out / "results.csv").set_index("label")
    saved = torch.load(out / "dense" / "seed0.pt", weights_only=True)
    dense_time = frame.loc["dense", "wall_seconds"]
    # the dense row is the measured dense training plus the dense "method" (a copy, well under 0.5 s)
    assert saved["seconds"] > 0 and 0 <= dense_time - saved["seconds"] < 0.5
    assert frame.loc["dense", "train_iterations"] == saved["iterations"] == 30
    assert frame.loc["magnitude", "train_iterations"] == 5  # the shared dense model is not counted again
