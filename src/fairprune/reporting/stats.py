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
    "mean_std",
    "paired_comparison",
    "sign_flip_p_value",
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
