"""Pick a run of a finished sweep's results table: by its fields (:func:`find_run`), or the most
accurate run within tau (:func:`best_run`). Reads ``results.csv`` columns only (no torch)."""

from __future__ import annotations

import pandas as pd

from fairprune.errors import ShippedModelError
from fairprune.schema import is_yes

__all__ = ["find_run", "best_run"]

_KEYS = ["label", "structure", "sparsity", "seed"]
_SAME = 1e-9  # two sparsities closer than this are one


def _available(frame: pd.DataFrame) -> str:
    keys = [k for k in _KEYS if k in frame.columns]
    cells = [k for k in ("target", "sensitive_attribute") if k in frame and frame[k].nunique() > 1]
    rows = frame[keys + cells].drop_duplicates().itertuples(index=False)
    return "; ".join("(" + ", ".join(str(v) for v in row) + ")" for row in rows)


def _matching(
    frame: pd.DataFrame,
    method: str | None,
    sparsity: float | None,
    seed: int | None,
    structure: str | None,
) -> pd.DataFrame:
    """The rows of ``frame`` with these fields (``method`` matches a label first, then a method)."""
    chosen = frame
    if method is not None:
        by_label = chosen[chosen["label"] == method]
        chosen = by_label if not by_label.empty else chosen[chosen["method"] == method]
    if sparsity is not None:
        chosen = chosen[(chosen["sparsity"] - sparsity).abs() < _SAME]
    if seed is not None:
        chosen = chosen[chosen["seed"] == seed]
    if structure is not None:
        chosen = chosen[chosen["structure"] == structure]
    return chosen


def find_run(
    frame: pd.DataFrame,
    *,
    method: str | None = None,
    sparsity: float | None = None,
    seed: int | None = None,
    structure: str | None = None,
    run_id: str | None = None,
) -> pd.Series:
    """The one row of a results table matching the choice (``method`` matches a label first, then
    a method name); an error listing the available (label, structure, sparsity, seed) when none
    or several match."""
    chosen = frame if run_id is None else frame[frame["run_id"] == run_id]
    chosen = _matching(chosen, method, sparsity, seed, structure)
    if len(chosen) != 1:
        what = "no run matches" if chosen.empty else f"{len(chosen)} runs match"
        raise ShippedModelError(
            f"{what} method={method!r}, sparsity={sparsity}, seed={seed}, structure={structure}"
            f"{f', run_id={run_id!r}' if run_id else ''}; available (label, structure, sparsity, seed): "
            f"{_available(frame)}. Narrow it with --seed / --structure / --run-id"
        )
    return chosen.iloc[0]


def _yes(column: pd.Series) -> pd.Series:
    """A yes/no column as booleans (``True``, ``"True"``, ``1``; a missing value is no)."""
    return column.map(is_yes)


def _sparsities(rows: pd.DataFrame) -> str:
    return ", ".join(f"{s:g}" for s in sorted(rows["sparsity"].unique())) or "none"


def best_run(
    frame: pd.DataFrame,
    *,
    sparsity: float | None = None,
    method: str | None = None,
    seed: int | None = None,
    structure: str | None = None,
) -> tuple[pd.Series, str]:
    """The most accurate pruned run within tau, and one line saying which and why.

    Candidates: the pruned runs (not ``dense``, nor a method whose predictions need the sensitive
    attribute) at ``sparsity`` (every sparsity when ``None``) with the other fields given, that
    are within tau on validation (column ``fair``); where the table has a ``certified`` column
    and some candidate is certified, only the certified ones. The most accurate is the highest
    validation accuracy (``val_accuracy``; ``accuracy``, the test split's, where the table has
    none), the first in the table on a tie: the test split does not choose the model it reports.

    Raises:
        ShippedModelError: No pruned run at the sparsity, or none within tau; the message lists
            the sparsities present and those with a run within tau.
    """
    pruned = frame[frame["method"] != "dense"]
    if "needs_sensitive_attribute" in pruned:
        pruned = pruned[~_yes(pruned["needs_sensitive_attribute"])]
    pruned = _matching(pruned, method, None, seed, structure)
    at = _matching(pruned, None, sparsity, None, None)
    where = "at every sparsity" if sparsity is None else f"at sparsity {sparsity:g}"
    fair = at[_yes(at["fair"])] if "fair" in at else at.iloc[:0]
    if fair.empty:
        within = pruned[_yes(pruned["fair"])] if "fair" in pruned else pruned.iloc[:0]
        problem = "no pruned run" if at.empty else "no pruned run within tau (column 'fair')"
        raise ShippedModelError(
            f"--best: {problem} {where}; sparsities present: {_sparsities(pruned)}, with a run within "
            f"tau: {_sparsities(within)}. Pick one of those with --sparsity, or a run with --method"
        )
    pool, kind = fair, "within tau"
    if "certified" in fair and _yes(fair["certified"]).any():
        pool, kind = fair[_yes(fair["certified"])], "certified within tau"
    elif "certified" in fair:
        kind = "within tau (none certified)"
    key = "val_accuracy" if "val_accuracy" in pool and pool["val_accuracy"].notna().all() else "accuracy"
    row = pool.loc[pool[key].idxmax()]
    named = "validation accuracy" if key == "val_accuracy" else "test accuracy"
    line = (
        f"--best: run {row['run_id']} ({row['label']}, {row['structure']}, sparsity {row['sparsity']:g}, "
        f"seed {row['seed']}): the highest {named} ({row[key]:.4f}; test {row['accuracy']:.4f}) of "
        f"{len(pool)} pruned run(s) {kind} {where}"
    )
    return row, line
