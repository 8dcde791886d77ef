"""Statistics over seeds: mean ± spread, bootstrap confidence intervals, paired comparisons.

A difference between two methods that is smaller than the spread over seeds is not a result
(DESIGN §9), so every number in a report comes with its sample standard deviation and a
percentile-bootstrap confidence interval of the mean, and every method-vs-method claim is a
paired comparison over the seeds both methods were run with.

All resampling uses a seeded ``np.random.Generator``: the same inputs and seed give the same
interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "CONSTRAINED_COLUMNS",
    "DEFAULT_METRICS",
    "OUTCOME_COLUMNS",
    "FAIRNESS_COLUMNS",
    "PairedComparison",
    "bootstrap_ci",
    "compare_to_baselines",
    "mean_std",
    "paired_comparison",
    "summarise",
]

FAIRNESS_COLUMNS: tuple[str, ...] = (
    "accuracy_gap",
    "degradation_gap",
    "demographic_parity_difference",
    "equalized_odds_difference",
    "excess_degradation",
    "worst_group_accuracy",
)
"""The fairness columns of a results table (DESIGN §2)."""

CONSTRAINED_COLUMNS: dict[str, str] = {
    "accuracy_gap": "accuracy_gap",
    "demographic_parity": "demographic_parity_difference",
    "equalized_odds": "equalized_odds_difference",
    "worst_group_accuracy": "worst_group_accuracy",
    "excess_degradation": "excess_degradation",
}
"""Results column of each fairness key (mirrors ``fairness.metrics.METRIC_COLUMNS``, without
importing torch)."""

DEFAULT_METRICS: tuple[str, ...] = ("accuracy", *FAIRNESS_COLUMNS)
"""Metrics summarised and compared by default."""

OUTCOME_COLUMNS: tuple[str, ...] = ("fair", "fair_test", "iterations_to_fair")
"""Summarised in reports beside the metrics (fractions of runs within tau on validation and on
test, iterations to a fair model), not compared pairwise."""


def _as_values(values: Sequence[float] | np.ndarray, name: str = "values") -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per seed); got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} must hold at least one value; got an empty array")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite; got {array.tolist()}")
    return array


def mean_std(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``) of per-seed values.

    Args:
        values: One finite value per seed.

    Returns:
        ``(mean, std)``; ``std`` is ``0.0`` for a single value.
    """
    array = _as_values(values)
    std = float(np.std(array, ddof=1)) if array.size > 1 else 0.0
    return float(np.mean(array)), std


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean.

    Draws ``n_resamples`` samples of size ``n`` with replacement, takes each one's mean, and
    returns the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of those means.
    With a few seeds the interval is narrower than the true one (the bootstrap cannot see more
    spread than the seeds show); read it as a lower bound on the uncertainty.

    Args:
        values: One finite value per seed.
        confidence: Coverage of the interval, in ``(0, 1)``.
        n_resamples: Number of bootstrap resamples.
        seed: Seed of the ``np.random.Generator`` that draws the resamples.

    Returns:
        ``(low, high)``; ``(v, v)`` for a single value or a constant array.
    """
    array = _as_values(values)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer; got {n_resamples!r}")
    if np.all(array == array[0]):
        return float(array[0]), float(array[0])
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, array.size, size=(n_resamples, array.size))
    means = array[indices].mean(axis=1)  # (n_resamples,)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1.0 - alpha / 2])
    return float(low), float(high)


@dataclass(frozen=True)
class PairedComparison:
    """Paired difference ``a - b`` over seeds.

    Attributes:
        mean_difference: Mean over seeds of ``a_i - b_i``.
        ci_low: Lower end of the bootstrap CI of the mean difference.
        ci_high: Upper end of that CI.
        n_pairs: Number of seeds paired.
        within_noise: ``True`` when the CI contains 0 (the difference is not distinguishable
            from seed noise), and always when ``n_pairs < 2``, since one pair cannot show how
            much the seeds vary.
    """

    mean_difference: float
    ci_low: float
    ci_high: float
    n_pairs: int
    within_noise: bool


def paired_comparison(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> PairedComparison:
    """Compare two methods run on the same seeds through their per-seed differences.

    Args:
        a: Values of the first method, one per seed.
        b: Values of the second method, aligned with ``a`` by seed.
        confidence: Coverage of the bootstrap CI of the mean difference.
        n_resamples: Number of bootstrap resamples.
        seed: Seed of the bootstrap generator.

    Returns:
        The mean of ``a - b``, its CI, the number of pairs and whether the difference is within
        seed noise (see ``PairedComparison``).
    """
    first, second = _as_values(a, "a"), _as_values(b, "b")
    if first.size != second.size:
        raise ValueError(
            f"a and b must be aligned by seed (equal length); got {first.size} and {second.size}"
        )
    differences = first - second
    low, high = bootstrap_ci(differences, confidence=confidence, n_resamples=n_resamples, seed=seed)
    within_noise = differences.size < 2 or low <= 0.0 <= high
    return PairedComparison(
        mean_difference=float(np.mean(differences)),
        ci_low=low,
        ci_high=high,
        n_pairs=int(differences.size),
        within_noise=bool(within_noise),
    )


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
    """Mean, sample std and bootstrap CI of each metric over the seeds of each cell.

    Non-finite values (a metric a method does not report) are left out of their cell; a cell
    with none left gets NaN statistics. Boolean columns (``fair``) summarise as fractions.

    Args:
        results: One row per run.
        by: Columns that define a cell; the rows of a cell are its seeds.
        metrics: Metric columns to summarise.
        confidence: Coverage of the bootstrap CIs.
        n_resamples: Number of bootstrap resamples.
        seed: Seed of the bootstrap generator.

    Returns:
        One row per cell, sorted by ``by``: the ``by`` columns, ``n_seeds`` (rows in the cell),
        then ``<metric>_mean``, ``<metric>_std``, ``<metric>_ci_low``, ``<metric>_ci_high``.
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
                ci = bootstrap_ci(values, confidence=confidence, n_resamples=n_resamples, seed=seed)
                stats = (*mean_std(values), *ci)
            for suffix, value in zip(("mean", "std", "ci_low", "ci_high"), stats, strict=True):
                row[f"{metric}_{suffix}"] = value
        rows.append(row)
    return pd.DataFrame(rows)


_COMPARISON_COLUMNS = (
    "label",
    "reference",
    "metric",
    "n_pairs",
    "mean_difference",
    "ci_low",
    "ci_high",
    "within_noise",
)


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
        return dict(n_pairs=0, mean_difference=np.nan, ci_low=np.nan, ci_high=np.nan, within_noise=pd.NA)
    result = paired_comparison(a[keep], b[keep], confidence=confidence, n_resamples=n_resamples, seed=seed)
    return dict(
        n_pairs=result.n_pairs,
        mean_difference=result.mean_difference,
        ci_low=result.ci_low,
        ci_high=result.ci_high,
        within_noise=result.within_noise,
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
        confidence: Coverage of the bootstrap CIs.
        n_resamples: Number of bootstrap resamples.
        seed: Seed of the bootstrap generator.

    Returns:
        One row per cell × label × metric: the ``by`` columns, ``label``, ``reference``,
        ``metric``, ``n_pairs``, ``mean_difference`` (reference − label), ``ci_low``,
        ``ci_high``, ``within_noise`` (nullable boolean; NA when no finite pair is left).
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
    frame = pd.DataFrame(rows, columns=[*by, *_COMPARISON_COLUMNS])
    floats = dict.fromkeys(("mean_difference", "ci_low", "ci_high"), "float64")
    return frame.astype({"n_pairs": "int64", **floats, "within_noise": "boolean"})
