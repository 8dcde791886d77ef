"""Objects print like a library's: sizes, groups with their counts, metrics; never raw tensors."""

from __future__ import annotations

import pandas as pd
import torch
from test_image_data import make_utkface
from torch import nn

from fairprune import PruningResult
from fairprune.data.base import GroupData, Splits
from fairprune.data.utkface import load_utkface
from fairprune.export import Evaluation, SavedModel


def _part(y: list[int], groups: list[int]) -> GroupData:
    return GroupData(torch.zeros(len(y), 4), torch.tensor(y), torch.tensor(groups))


def test_group_data_and_splits_print_sizes_and_group_counts():
    train = _part([0, 1, 1, 0, 1, 1], [0, 0, 1, 1, 1, 1])
    val, test = _part([0, 1, 1], [0, 1, 1]), _part([1, 0], [0, 1])
    assert repr(train) == "GroupData(n=6, x (4,) float32, per class [2, 4], per group [2, 4])"
    splits = Splits("toy", "label", "sex", train, val, test, ("no", "yes"), ("Female", "Male"))
    assert repr(splits) == (
        "Splits('toy': target 'label' (classes no, yes), sensitive attribute 'sex'; x (4,) float32\n"
        "  train 6, val 3, test 2\n"
        "  groups (train/val/test): Female 2/1/1, Male 4/2/1)"
    )


def test_many_groups_are_cut_short():
    groups = list(range(12))
    part = GroupData(
        torch.zeros(12, 3, 2, 2, dtype=torch.uint8), torch.zeros(12, dtype=torch.long), torch.tensor(groups)
    )
    text = repr(Splits("big", "t", "g", part, part, part, ("0", "1"), tuple(f"g{i}" for i in groups)))
    assert text.endswith("g7 1/1/1, ... (4 more))") and "x (3, 2, 2) uint8" in text
    assert repr(part).endswith("per group [1, 1, 1, 1, 1, 1, 1, 1, ... (4 more)])")


def _metrics(accuracy: float, gap: float) -> dict[str, float]:
    return {
        "accuracy": accuracy,
        "equalized_odds_difference": gap,
        "worst_group_accuracy": accuracy - 0.1,
        "group_accuracy_a": accuracy,
        "group_size_a": 30,
        "group_size_b": 70,
    }


def test_pruning_result_prints_its_method_outcome_groups_and_metrics():
    result = PruningResult(
        model=nn.Linear(4, 2),
        metrics={"val": {"dense": _metrics(0.9, 0.1), "pruned": _metrics(0.85, 0.05)}},
        masks={"weight": torch.ones(2, 4, dtype=torch.bool)},
        method="bifp",
        structure="unstructured",
        sparsity=0.9,
        achieved_sparsity=0.9,
        fairness="equalized_odds",
        tolerance=0.1,
        feasible=True,
        train_iterations=120,
        wall_seconds=3.21,
        history=[{"accuracy": 0.5}] * 100,
        group_names=("a", "b"),
    )
    assert repr(result) == (
        "PruningResult(bifp, unstructured, sparsity 0.9 (achieved 0.9000), equalized_odds <= 0.1 on val: "
        "met, 120 iterations, 3.2 s\n"
        "  groups (val sizes): a 30, b 70\n"
        "  val: accuracy 0.8500 (dense 0.9000), equalized_odds_difference 0.0500 (dense 0.1000), "
        "worst_group_accuracy 0.7500 (dense 0.8000))"
    )


def test_saved_model_prints_no_tensors():
    saved = SavedModel(nn.Linear(4, 2), {"weight": torch.ones(2, 4)}, {"model": {}, "result": {}})
    assert repr(saved) == "SavedModel(Linear, 1 masks, card keys ['model', 'result'])"


def test_image_splits_print_in_a_few_lines(tmp_path, monkeypatch):
    """UTKFace-format faces under ``tmp_path``: a few hundred characters, not the tensors."""
    monkeypatch.setenv("FAIRPRUNE_CACHE", str(tmp_path / "cache"))
    make_utkface(tmp_path / "UTKFace")
    splits = load_utkface(tmp_path / "UTKFace", resolution=16)
    text = repr(splits)
    assert len(text) < 400 and len(text.splitlines()) == 3 and "tensor" not in text
    assert "x (3, 16, 16) uint8" in text and "groups (train/val/test): White " in text
    assert len(repr(splits.train)) < 150 and "tensor" not in repr(splits.train)


def test_evaluation_prints_its_verdict_in_one_line():
    table = pd.DataFrame(
        {"metric": ["accuracy", "accuracy_gap"], "card": [0.9, 0.1], "measured": [0.9, 0.2]}
        | {"difference": [0.0, 0.1], "ok": [True, False]}
    )
    failed = Evaluation("test", table, compared=True, tolerance=1e-6, onnx_max_abs_diff=0.0)
    assert repr(failed) == (
        "Evaluation(2 metrics on test: 1 metric(s) disagree with the card beyond 1e-06: ['accuracy_gap']; "
        "ONNX max |diff| 0)"
    )
    passed = Evaluation("val", table.assign(ok=True), compared=True, tolerance=1e-6)
    assert repr(passed) == "Evaluation(2 metrics on val agree with the card within 1e-06)"
    other = Evaluation("all", table.drop(columns="ok"), compared=False, tolerance=1e-6)
    assert repr(other) == "Evaluation(2 metrics on all, beside the card's (other data))"
