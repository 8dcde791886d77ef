"""Statistics over seeds: mean ± spread, t-intervals, paired comparisons that hold at small n.

A difference between two methods that is smaller than the spread over seeds is not a result
(DESIGN §9). Every number in a report comes with its sample standard deviation and a Student-t
confidence interval of the mean (valid at any number of seeds when the per-seed values are
roughly normal; no interval from one seed). Every method-vs-method claim is a paired comparison
over the seeds both methods ran: the t-interval of the mean per-seed difference decides the
verdict, and an exact sign-flip permutation test (no normality assumed) is reported beside it.
With fewer than :data:`MIN_SEEDS` pairs there is no verdict at all: two seeds that agree in sign
say nothing about seed noise.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from fairprune.schema import CONSTRAINED_COLUMNS, DEFAULT_METRICS, FAIRNESS_COLUMNS, OUTCOME_COLUMNS

__all__ = [
    "CONSTRAINED_COLUMNS",
    "DEFAULT_METRICS",
    "MIN_SEEDS",
    "OUTCOME_COLUMNS",
    "FAIRNESS_COLUMNS",
    "PairedComparison",
    "bootstrap_ci",
    "compare_to_baselines",
    "mean_std",
    "paired_comparison",
    "sign_flip_p_value",
    "summarise",
    "t_interval",
    "verdict",
]

MIN_SEEDS = 3
"""Fewest paired seeds for a verdict on a difference."""

_EXACT_UP_TO = 16  # pairs: every one of the 2**n sign flips is enumerated up to this n


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
    """Percentile-bootstrap confidence interval of the mean (not used by reports: with a few
    seeds it is too narrow, see :func:`t_interval`).

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


def t_interval(values: Sequence[float] | np.ndarray, *, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t confidence interval of the mean: ``mean ± t_{n-1, (1+c)/2} · s / sqrt(n)``.

    Exact coverage for normal per-seed values at any ``n >= 2``; ``(nan, nan)`` for one value
    (one seed shows no spread); ``(v, v)`` for a constant array.
    """
    array = _as_values(values)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    if array.size < 2:
        return float("nan"), float("nan")
    mean, std = mean_std(array)
    half = float(scipy_stats.t.ppf((1.0 + confidence) / 2, df=array.size - 1)) * std / np.sqrt(array.size)
    return mean - half, mean + half


def sign_flip_p_value(
    differences: Sequence[float] | np.ndarray, *, n_resamples: int = 20000, seed: int = 0
) -> float:
    """Two-sided p-value of the paired permutation (sign-flip) test of "mean difference 0".

    Under the null each per-seed difference is as likely to have either sign, so the p-value is
    the share of the ``2**n`` sign assignments whose mean is at least as far from 0 as the
    observed one. Exact (every assignment enumerated) up to 16 pairs, else ``n_resamples``
    random ones; the smallest possible value is ``2 / 2**n`` (0.25 with 3 seeds, 0.0625 with 5),
    so this test alone needs 6 seeds to reach 5%.
    """
    array = _as_values(differences, "differences")
    observed = abs(array.mean())
    if array.size <= _EXACT_UP_TO:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=array.size)))  # (2**n, n)
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(n_resamples, array.size))
    means = np.abs(signs @ array) / array.size
    return float(np.mean(means >= observed - 1e-12 * max(1.0, observed)))


@dataclass(frozen=True)
class PairedComparison:
    """Paired difference ``a - b`` over seeds.

    Attributes:
        mean_difference: Mean over seeds of ``a_i - b_i``.
        ci_low: Lower end of the t-interval of the mean difference (NaN for one pair).
        ci_high: Upper end of that interval.
        p_value: Two-sided paired t-test p-value (NaN for one pair).
        p_sign_flip: Exact sign-flip permutation p-value (see :func:`sign_flip_p_value`).
        n_pairs: Number of seeds paired.
        within_noise: ``None`` (no verdict) with fewer than :data:`MIN_SEEDS` pairs; else
            ``True`` when the t-interval contains 0, ``False`` when it excludes it.
    """

    mean_difference: float
    ci_low: float
    ci_high: float
    p_value: float
    p_sign_flip: float
    n_pairs: int
    within_noise: bool | None


def _t_test_p(differences: np.ndarray) -> float:
    if differences.size < 2:
        return float("nan")
    mean, std = mean_std(differences)
    if std == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    t = mean / (std / np.sqrt(differences.size))
    return float(2 * scipy_stats.t.sf(abs(t), df=differences.size - 1))


def paired_comparison(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 20000,
    seed: int = 0,
) -> PairedComparison:
    """Compare two methods run on the same seeds through their per-seed differences.

    Args:
        a: Values of the first method, one per seed.
        b: Values of the second method, aligned with ``a`` by seed.
        confidence: Coverage of the t-interval of the mean difference.
        n_resamples: Random sign flips when there are more than 16 pairs.
        seed: Seed of those random sign flips.

    Returns:
        The mean of ``a - b``, its t-interval, both p-values, the number of pairs and the
        verdict (see :class:`PairedComparison`).
    """
    first, second = _as_values(a, "a"), _as_values(b, "b")
    if first.size != second.size:
        raise ValueError(
            f"a and b must be aligned by seed (equal length); got {first.size} and {second.size}"
        )
    differences = first - second
    low, high = t_interval(differences, confidence=confidence)
    within = None if differences.size < MIN_SEEDS else bool(low <= 0.0 <= high)
    return PairedComparison(
        mean_difference=float(np.mean(differences)),
        ci_low=low,
        ci_high=high,
        p_value=_t_test_p(differences),
        p_sign_flip=sign_flip_p_value(differences, n_resamples=n_resamples, seed=seed),
        n_pairs=int(differences.size),
        within_noise=within,
    )


def verdict(within_noise: object, n_pairs: int) -> str:
    """The words of a verdict, with the number of seeds it rests on."""
    if n_pairs < MIN_SEEDS or within_noise is None or pd.isna(within_noise):
        return f"no verdict ({n_pairs} seed{'s' * (n_pairs != 1)}; needs {MIN_SEEDS})"
    words = "within seed noise" if within_noise else "beyond seed noise"
    return f"difference {words} ({n_pairs} seeds)"


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


_COMPARISON_COLUMNS = (
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
    frame = pd.DataFrame(rows, columns=[*by, *_COMPARISON_COLUMNS])
    floats = dict.fromkeys(("mean_difference", "ci_low", "ci_high", "p_value", "p_sign_flip"), "float64")
    return frame.astype({"n_pairs": "int64", **floats, "within_noise": "boolean"})
