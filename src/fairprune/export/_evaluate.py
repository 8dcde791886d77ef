"""Re-check a shipped model: recompute its card's metrics on data and compare.

On the data the card was measured on (same split), every metric must agree with the card within
a stated absolute tolerance; the degradation metrics are recomputed from the card's dense
per-group accuracies (the dense model is not shipped). On other data the card's metrics are shown
beside the new ones, as a deployment check.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fairprune.batches import model_inputs
from fairprune.data.base import GroupData, Splits
from fairprune.errors import ShippedModelError
from fairprune.export._card import card_metrics, check_names, flat_metrics
from fairprune.export._load import ExportedModel
from fairprune.export._onnx import ONNX_FILE, ONNX_TOLERANCE, onnx_outputs
from fairprune.fairness.metrics import fairness_report
from fairprune.inference import logits_of, predict
from fairprune.model_io import concat, sample_shapes, single_tensor
from fairprune.schema import GROUP_ACCURACY, GROUPED

__all__ = ["Evaluation", "evaluate_exported", "DEFAULT_TOLERANCE", "SPLIT_CHOICES"]

DEFAULT_TOLERANCE = 1e-6
"""Default largest ``|recomputed - card|`` per metric: the card's metrics are fractions of a split,
recomputed exactly from the same weights and data (one flipped prediction among N moves an accuracy
by 1/N)."""
SPLIT_CHOICES = ("train", "val", "test", "all")


@dataclass(frozen=True)
class Evaluation:
    """The outcome of :func:`evaluate_exported`.

    Attributes:
        split: The evaluated split.
        table: One row per metric: ``metric``, ``card``, ``measured``, ``difference`` and, when
            compared against the card, ``ok``.
        compared: Whether the data are the card's (metrics must agree) or other data (shown side
            by side, never a failure).
        tolerance: The absolute tolerance of the comparison.
        onnx_max_abs_diff: Largest ``|onnxruntime - PyTorch|`` output on the split (``None`` when
            the directory has no ONNX file).
    """

    split: str
    table: pd.DataFrame
    compared: bool
    tolerance: float
    onnx_max_abs_diff: float | None = None

    @property
    def failures(self) -> list[str]:
        """What went wrong, one line each: metrics beyond the tolerance (on the card's data), an
        ONNX file further than :data:`ONNX_TOLERANCE` from PyTorch."""
        out = []
        if self.compared and not self.table["ok"].all():
            names = self.table.loc[~self.table["ok"], "metric"].tolist()
            out.append(f"{len(names)} metric(s) disagree with the card beyond {self.tolerance:g}: {names}")
        if self.onnx_max_abs_diff is not None and not self.onnx_max_abs_diff <= ONNX_TOLERANCE:
            diff = self.onnx_max_abs_diff
            out.append(f"model.onnx differs from PyTorch by {diff:.3g} (expected <= {ONNX_TOLERANCE:g})")
        return out

    @property
    def passed(self) -> bool:
        """No :attr:`failures`."""
        return not self.failures

    def __repr__(self) -> str:
        """One line: the split, how many metrics, the verdict (or that it is other data), ONNX."""
        n = len(self.table)
        if not self.compared:
            verdict = f"{n} metrics on {self.split}, beside the card's (other data)"
        elif self.passed:
            verdict = f"{n} metrics on {self.split} agree with the card within {self.tolerance:g}"
        else:
            verdict = f"{n} metrics on {self.split}: " + "; ".join(self.failures)
        onnx = "" if self.onnx_max_abs_diff is None else f"; ONNX max |diff| {self.onnx_max_abs_diff:.3g}"
        return f"Evaluation({verdict}{onnx})"

    def format(self) -> str:
        """The table for the terminal (only the disagreements when some metric disagrees)."""
        shown = self.table
        if self.compared and not self.table["ok"].all():
            shown = self.table[~self.table["ok"]]
        return shown.to_string(index=False, float_format=lambda v: f"{v:.6g}", na_rep="-")


def _select(data: Splits, split: str) -> GroupData:
    if split not in SPLIT_CHOICES:
        raise ShippedModelError(f"split must be one of {list(SPLIT_CHOICES)}; received {split!r}")
    if split != "all":
        return getattr(data, split)
    parts = [data.train, data.val, data.test]
    x = concat([p.x for p in parts])
    return GroupData(x, *(torch.cat([getattr(p, f) for p in parts]) for f in ("y", "groups")))


def _degradations(pruned: Mapping[str, Any], dense: Mapping[str, Any]) -> dict[str, float]:
    """``degradation_gap`` and ``excess_degradation`` from per-group accuracies (Defs. 2-3)."""
    key = GROUPED[GROUP_ACCURACY]
    names = list(dense[key])
    r = np.array([dense[key][n] - pruned[key][n] for n in names])
    overall = dense["accuracy"] - pruned["accuracy"]
    return {"degradation_gap": float(r.max() - r.min()), "excess_degradation": float((r - overall).max())}


def evaluate_exported(
    exported: ExportedModel,
    data: Splits,
    *,
    split: str = "test",
    same_data: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    directory: str | Path | None = None,
) -> Evaluation:
    """Recompute the card's metrics of ``exported`` on one split of ``data``.

    Args:
        exported: The reloaded model and card (:func:`~fairprune.export.load_exported`).
        data: The card's data (``same_data``) or the user's own, with the same class and group
            names and input shape.
        split: ``train``, ``val``, ``test`` or ``all`` (the three together); on the card's data
            ``val`` or ``test`` (the splits the card holds).
        same_data: Compare against the card's metrics of ``split``; else show the card's test
            metrics beside the new ones.
        tolerance: Largest absolute difference per metric that counts as agreement.
        directory: The shipped directory: its ONNX file, if the card lists one, is run on the
            split too and compared with PyTorch.

    Raises:
        ValueError: If the data's classes, groups or input shape differ from the card's, or the
            card holds no metrics of ``split`` (on its own data).
    """
    card = exported.card
    check_names(card, data.class_names, data.group_names)
    part = _select(data, split)
    expected_shape = card["model"].get("input_shape")
    if expected_shape is not None and sample_shapes(part.x) != expected_shape:
        raise ShippedModelError(
            f"the data's inputs have shape {sample_shapes(part.x)}, the card's model takes {expected_shape}"
        )
    if not math.isfinite(tolerance) or tolerance < 0:
        raise ShippedModelError(f"tolerance must be a finite number >= 0; received {tolerance}")
    reference_split = split if same_data else "test"
    card_split = card.get("metrics", {}).get(reference_split)
    if card_split is None and same_data:
        raise ShippedModelError(
            f"the card holds no metrics of the {split!r} split (it has {sorted(card.get('metrics', {}))}); "
            "expected --split val or test on the card's data"
        )
    report = fairness_report(
        part.y, predict(exported.model, part), groups=part.groups, n_groups=data.n_groups
    )
    measured = card_metrics(report, data.group_names)
    if same_data and "dense" in card_split:
        measured.update(_degradations(measured, card_split["dense"]))
    reference = flat_metrics(card_split["pruned"]) if card_split else {}
    table = _table(reference, flat_metrics(measured), tolerance if same_data else None)
    onnx_diff = None
    if directory is not None and ONNX_FILE in card.get("files", {}):
        onnx_diff = _onnx_difference(exported, Path(directory) / ONNX_FILE, part)
    return Evaluation(split, table, same_data, tolerance, onnx_diff)


def _table(
    reference: Mapping[str, float], measured: Mapping[str, float], tolerance: float | None
) -> pd.DataFrame:
    names = list(reference) + [n for n in measured if n not in reference]
    rows = []
    for name in names:
        card, new = reference.get(name, math.nan), measured.get(name, math.nan)
        row: dict[str, Any] = {"metric": name, "card": card, "measured": new, "difference": new - card}
        if tolerance is not None:
            row["ok"] = bool(abs(new - card) <= tolerance)  # NaN (a metric missing on one side): not ok
        rows.append(row)
    return pd.DataFrame(rows)


def _onnx_difference(exported: ExportedModel, path: Path, part: GroupData) -> float:
    worst = 0.0
    for start in range(0, len(part), 1024):
        chunk = part.subset(torch.arange(start, min(start + 1024, len(part))))
        expected = logits_of(exported.model, chunk)
        inputs = single_tensor(model_inputs(chunk.x, "cpu"), "model.onnx")
        worst = max(worst, float((onnx_outputs(path, inputs) - expected).abs().max()))
    return worst
