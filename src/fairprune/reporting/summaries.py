"""Tables over a sweep's results: each metric's mean, spread and interval over the seeds of
every (label, sparsity) cell, and every method against the baselines, paired by seed — built
from the primitives of :mod:`fairprune.reporting.stats`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fairprune.reporting.stats import (
    mean_std,
    paired_comparison,
    t_interval,
)
from fairprune.schema import DEFAULT_METRICS

__all__ = ["summarise", "compare_to_baselines", "COMPARISON_COLUMNS"]


def _check_frame(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame; got {type(frame).__name__}")
    if frame.empty:
        raise ValueError(f"{name} must hold at least one row; got an empty DataFrame")
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise ValueError(
            f"{name} is missing columns {missing}; expected {list(columns)}, got {list(frame.columns)}"
        )


def _numeric(column: pd.Series, metric: str) -> np.ndarray:
    try:
        values = column.to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError) as error:
        raise ValueError(f"metric {metric!r} must be numeric; got dtype {column.dtype}") from error
    return values


def summarise(
    results: pd.DataFrame,
    *,
    by: Sequence[str] = ("label", "sparsity"),
    metrics: Sequence[str] = DEFAULT_METRICS,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean, sample std and t-interval (:func:`t_interval`) of each metric over the seeds of
    each cell.

    Non-finite values (a metric a method does not report) are left out of their cell; a cell
    with none left gets NaN statistics. Boolean columns (``fair``) summarise as fractions.

    Args:
        results: One row per run.
        by: Columns that define a cell; the rows of a cell are its seeds.
        metrics: Metric columns to summarise.
        confidence: Coverage of the t-intervals.
        n_resamples: Unused (kept for callers of the bootstrap version).
        seed: Unused (kept for callers of the bootstrap version).

    Returns:
        One row per cell, sorted by ``by``: the ``by`` columns, ``n_seeds`` (rows in the cell),
        then ``<metric>_mean``, ``<metric>_std``, ``<metric>_ci_low``, ``<metric>_ci_high``
        (the interval is NaN for a cell of one seed).
    """
    by, metrics = list(by), list(metrics)
    _check_frame(results, [*by, *metrics], "results")
    rows = []
    for key, cell in results.groupby(by, sort=True, dropna=False):
        row: dict[str, object] = dict(zip(by, key, strict=True))
        row["n_seeds"] = len(cell)
        for metric in metrics:
            values = _numeric(cell[metric], metric)
            values = values[np.isfinite(values)]
            stats = (np.nan,) * 4
            if values.size:
                stats = (*mean_std(values), *t_interval(values, confidence=confidence))
            for suffix, value in zip(("mean", "std", "ci_low", "ci_high"), stats, strict=True):
                row[f"{metric}_{suffix}"] = value
        rows.append(row)
    return pd.DataFrame(rows)


COMPARISON_COLUMNS = (
    "label",
    "reference",
    "metric",
    "n_pairs",
    "mean_difference",
    "ci_low",
    "ci_high",
    "p_value",
    "p_sign_flip",
    "within_noise",
)
"""The columns of :func:`compare_to_baselines` after its ``by`` keys."""


def _by_seed(rows: pd.DataFrame, label: str, cell: dict[str, object]) -> pd.DataFrame:
    duplicated = rows["seed"][rows["seed"].duplicated()].tolist()
    if duplicated:
        raise ValueError(
            f"label {label!r} in cell {cell} has several runs for seeds {duplicated}; expected "
            "one run per seed: add the column that tells them apart to `by`"
        )
    return rows.set_index("seed")


def _compare(
    a: np.ndarray, b: np.ndarray, *, confidence: float, n_resamples: int, seed: int
) -> dict[str, object]:
    keep = np.isfinite(a) & np.isfinite(b)
    if not keep.any():
        nan = np.nan
        return dict(
            n_pairs=0,
            mean_difference=nan,
            ci_low=nan,
            ci_high=nan,
            p_value=nan,
            p_sign_flip=nan,
            within_noise=pd.NA,
        )
    result = paired_comparison(a[keep], b[keep], confidence=confidence, n_resamples=n_resamples, seed=seed)
    return dict(
        n_pairs=result.n_pairs,
        mean_difference=result.mean_difference,
        ci_low=result.ci_low,
        ci_high=result.ci_high,
        p_value=result.p_value,
        p_sign_flip=result.p_sign_flip,
        within_noise=pd.NA if result.within_noise is None else result.within_noise,
    )


def compare_to_baselines(
    results: pd.DataFrame,
    *,
    reference: str = "bifp",
    metrics: Sequence[str] = DEFAULT_METRICS,
    by: Sequence[str] = ("sparsity",),
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Paired comparison of the reference label against every other label, cell by cell.

    Within each cell (e.g. a sparsity), the reference's runs and another label's runs are paired
    by seed over the seeds both have; a label that shares no seed with the reference is skipped.
    Pairs where either value is non-finite are dropped per metric.

    Args:
        results: One row per run, with ``label`` and ``seed`` columns.
        reference: The label compared against the others (BiFP by default).
        metrics: Metric columns to compare.
        by: Columns that define a cell, besides ``label``.
        confidence: Coverage of the t-intervals of the mean differences.
        n_resamples: Random sign flips of the permutation test beyond 16 pairs.
        seed: Seed of those sign flips.

    Returns:
        One row per cell × label × metric: the ``by`` columns, ``label``, ``reference``,
        ``metric``, ``n_pairs``, ``mean_difference`` (reference − label), ``ci_low``,
        ``ci_high`` (its t-interval), ``p_value`` (paired t-test), ``p_sign_flip`` (exact
        permutation test), ``within_noise`` (nullable boolean: NA, no verdict, with fewer than
        ``MIN_SEEDS`` finite pairs).
    """
    by, metrics = list(by), list(metrics)
    _check_frame(results, ["label", "seed", *by, *metrics], "results")
    labels = sorted(results["label"].unique())
    if reference not in labels:
        raise ValueError(f"reference label {reference!r} is not in the results; got {labels}")
    rows = []
    for key, group in results.groupby(by, sort=True, dropna=False):
        cell = dict(zip(by, key, strict=True))
        ref_rows = group[group["label"] == reference]
        if ref_rows.empty:
            continue
        ref = _by_seed(ref_rows, reference, cell)
        for label in sorted(set(group["label"]) - {reference}):
            other = _by_seed(group[group["label"] == label], label, cell)
            seeds = sorted(set(ref.index) & set(other.index))
            if not seeds:
                continue
            for metric in metrics:
                a = _numeric(ref.loc[seeds, metric], metric)
                b = _numeric(other.loc[seeds, metric], metric)
                row = {**cell, "label": label, "reference": reference, "metric": metric}
                row.update(_compare(a, b, confidence=confidence, n_resamples=n_resamples, seed=seed))
                rows.append(row)
    frame = pd.DataFrame(rows, columns=[*by, *COMPARISON_COLUMNS])
    floats = dict.fromkeys(("mean_difference", "ci_low", "ci_high", "p_value", "p_sign_flip"), "float64")
    return frame.astype({"n_pairs": "int64", **floats, "within_noise": "boolean"})
