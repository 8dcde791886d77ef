"""Statistics over seeds on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fairprune.reporting.stats import PairedComparison, bootstrap_ci, mean_std, paired_comparison
from fairprune.reporting.summaries import compare_to_baselines, summarise


def test_mean_std_of_one_to_four() -> None:
    mean, std = mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    # sample variance: (1.5² + 0.5² + 0.5² + 1.5²) / 3 = 5/3
    assert std == pytest.approx(math.sqrt(5 / 3), rel=1e-15)


def test_mean_std_of_one_value_has_zero_std() -> None:
    assert mean_std([7.0]) == (7.0, 0.0)


def test_bootstrap_ci_of_one_value_and_of_a_constant() -> None:
    assert bootstrap_ci([3.5]) == (3.5, 3.5)
    assert bootstrap_ci([0.1] * 5) == (0.1, 0.1)


def test_bootstrap_ci_of_zero_and_one_spans_both() -> None:
    # Resample means of [0, 1] are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4: the 2.5% and
    # 97.5% quantiles of 2000 of them are 0 and 1.
    assert bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)


def test_bootstrap_ci_is_deterministic_under_a_seed() -> None:
    values = np.random.default_rng(1).normal(size=10)
    assert bootstrap_ci(values, seed=3) == bootstrap_ci(values, seed=3)
    assert bootstrap_ci(values, seed=3) != bootstrap_ci(values, seed=4)


def test_bootstrap_ci_covers_the_true_mean() -> None:
    covered = 0
    for experiment in range(100):
        draws = np.random.default_rng(1000 + experiment).normal(loc=2.0, scale=1.0, size=30)
        low, high = bootstrap_ci(draws, confidence=0.95, n_resamples=1000, seed=experiment)
        covered += low <= 2.0 <= high
    assert covered >= 90


def test_bootstrap_ci_narrows_with_lower_confidence() -> None:
    values = np.random.default_rng(2).normal(size=20)
    low95, high95 = bootstrap_ci(values, confidence=0.95)
    low50, high50 = bootstrap_ci(values, confidence=0.5)
    assert low95 < low50 < np.mean(values) < high50 < high95


def test_paired_comparison_on_a_hand_case() -> None:
    result = paired_comparison([1.0, 2.0, 3.0], [0.5, 1.5, 2.0])
    assert isinstance(result, PairedComparison)
    # differences 0.5, 0.5, 1.0
    assert result.mean_difference == pytest.approx(2 / 3, rel=1e-15)
    assert result.n_pairs == 3
    # s = sqrt(1/12), se = 1/6, t_{2, 0.975} = 4.302653: mean ± 0.717109 contains 0 (a
    # percentile bootstrap gave [0.5, 1.0] here and called it beyond noise); t = 4, p = 0.0572;
    # the sign flips reach |mean| >= 2/3 only with all signs equal: p = 2/8
    assert (result.ci_low, result.ci_high) == pytest.approx((-0.0504421, 1.3837755), abs=1e-6)
    assert result.p_value == pytest.approx(0.0571910, abs=1e-6)
    assert result.p_sign_flip == 0.25
    assert result.within_noise is True


def test_paired_comparison_constant_shift_is_beyond_noise() -> None:
    result = paired_comparison([1.5, 2.5, 3.5], [1.0, 2.0, 3.0])
    assert (result.mean_difference, result.ci_low, result.ci_high) == (0.5, 0.5, 0.5)
    assert result.within_noise is False


def test_paired_comparison_of_symmetric_noise_is_within_noise() -> None:
    b = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    result = paired_comparison(b + [0.1, -0.1, 0.05, -0.05, 0.02, -0.02], b)
    assert result.mean_difference == pytest.approx(0.0, abs=1e-15)
    assert result.ci_low < 0.0 < result.ci_high
    assert result.within_noise is True


def test_paired_comparison_of_pure_noise_is_mostly_within_noise() -> None:
    # With no true difference a 95% CI excludes 0 about 5% of the time.
    within = 0
    for experiment in range(100):
        rng = np.random.default_rng(experiment)
        base = rng.normal(size=20)
        noisy = base + rng.normal(scale=0.1, size=20)
        within += paired_comparison(noisy, base, n_resamples=1000, seed=experiment).within_noise
    assert within >= 85


def test_paired_comparison_of_a_clear_shift_is_beyond_noise() -> None:
    rng = np.random.default_rng(5)
    base = rng.normal(size=20)
    result = paired_comparison(base + 1.0 + rng.normal(scale=0.1, size=20), base)
    assert result.ci_low > 0.5
    assert result.within_noise is False


def test_paired_comparison_with_one_pair_has_no_verdict() -> None:
    result = paired_comparison([0.9], [0.5])
    assert result.mean_difference == pytest.approx(0.4)
    assert (result.n_pairs, result.within_noise) == (1, None)
    assert math.isnan(result.ci_low) and math.isnan(result.p_value)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: mean_std([]), "at least one value"),
        (lambda: mean_std([[1.0, 2.0]]), "1-D"),
        (lambda: mean_std([1.0, float("nan")]), "finite"),
        (lambda: bootstrap_ci([1.0, 2.0], confidence=1.0), "confidence"),
        (lambda: bootstrap_ci([1.0, 2.0], n_resamples=0), "n_resamples"),
        (lambda: paired_comparison([1.0, 2.0], [1.0]), "equal length"),
        (lambda: paired_comparison([], []), "at least one value"),
    ],
)
def test_bad_inputs_raise_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def _results() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "label": ["bifp"] * 3 + ["magnitude"] * 3 + ["bifp"] * 2,
            "sparsity": [0.5] * 6 + [0.9] * 2,
            "seed": [0, 1, 2, 0, 1, 2, 0, 1],
            "accuracy": [0.80, 0.82, 0.84, 0.70, 0.72, 0.74, 0.60, 0.62],
            "accuracy_gap": [0.01, 0.02, 0.03, 0.10, 0.11, np.nan, 0.05, 0.05],
        }
    )


def test_summarise_on_a_hand_frame() -> None:
    summary = summarise(_results(), metrics=("accuracy", "accuracy_gap"))
    assert list(summary.columns) == [
        "label",
        "sparsity",
        "n_seeds",
        "accuracy_mean",
        "accuracy_std",
        "accuracy_ci_low",
        "accuracy_ci_high",
        "accuracy_gap_mean",
        "accuracy_gap_std",
        "accuracy_gap_ci_low",
        "accuracy_gap_ci_high",
    ]
    assert list(zip(summary["label"], summary["sparsity"], strict=True)) == [
        ("bifp", 0.5),
        ("bifp", 0.9),
        ("magnitude", 0.5),
    ]
    assert summary["n_seeds"].tolist() == [3, 2, 3]
    assert summary["accuracy_mean"].to_numpy() == pytest.approx([0.82, 0.61, 0.72])
    assert summary["accuracy_std"].to_numpy() == pytest.approx([0.02, math.sqrt(2e-4), 0.02])
    # the NaN gap of magnitude's seed 2 is left out: mean of 0.10 and 0.11
    assert summary["accuracy_gap_mean"].to_numpy() == pytest.approx([0.02, 0.05, 0.105])
    assert summary.loc[1, ["accuracy_gap_ci_low", "accuracy_gap_ci_high"]].tolist() == [0.05, 0.05]


def test_summarise_errors_name_what_is_missing() -> None:
    with pytest.raises(ValueError, match="empty DataFrame"):
        summarise(_results().iloc[:0])
    with pytest.raises(ValueError, match=r"missing columns \['worst_group_accuracy'\]"):
        summarise(_results(), metrics=("accuracy", "worst_group_accuracy"))


def test_compare_to_baselines_pairs_by_common_seeds() -> None:
    results = _results()
    # magnitude at 0.9 only has seed 5, which bifp lacks: skipped
    extra = {"label": "magnitude", "sparsity": 0.9, "seed": 5, "accuracy": 0.1, "accuracy_gap": 0.2}
    results = pd.concat([results, pd.DataFrame([extra])], ignore_index=True)
    comparison = compare_to_baselines(results, metrics=("accuracy", "accuracy_gap"))
    assert comparison[["sparsity", "label", "metric"]].values.tolist() == [
        [0.5, "magnitude", "accuracy"],
        [0.5, "magnitude", "accuracy_gap"],
    ]
    accuracy, gap = comparison.iloc[0], comparison.iloc[1]
    assert accuracy["mean_difference"] == pytest.approx(0.10)
    assert accuracy["n_pairs"] == 3
    assert bool(accuracy["within_noise"]) is False
    # seed 2's gap is NaN for magnitude: pairs (0.01, 0.10) and (0.02, 0.11)
    assert gap["n_pairs"] == 2
    assert gap["mean_difference"] == pytest.approx(-0.09)
    assert comparison["reference"].unique().tolist() == ["bifp"]


def test_compare_to_baselines_errors() -> None:
    with pytest.raises(ValueError, match="reference label 'snip' is not in the results"):
        compare_to_baselines(_results(), reference="snip", metrics=("accuracy",))
    duplicated = pd.concat([_results(), _results().iloc[:1]], ignore_index=True)
    with pytest.raises(ValueError, match=r"several runs for seeds \[0\]"):
        compare_to_baselines(duplicated, metrics=("accuracy",))
    with pytest.raises(ValueError, match="missing columns"):
        compare_to_baselines(_results().drop(columns="seed"), metrics=("accuracy",))


def test_compare_to_baselines_without_finite_pairs_reports_na() -> None:
    results = pd.DataFrame(
        {
            "label": ["bifp", "magnitude", "magnitude"],
            "sparsity": [0.5, 0.5, 0.9],
            "seed": [0, 0, 0],
            "accuracy": [0.8, np.nan, 0.7],
        }
    )
    comparison = compare_to_baselines(results, metrics=("accuracy",))
    assert len(comparison) == 1  # nothing at 0.9 to compare against
    row = comparison.iloc[0]
    assert (row["sparsity"], row["label"], row["n_pairs"]) == (0.5, "magnitude", 0)
    assert math.isnan(row["mean_difference"]) and row["within_noise"] is pd.NA
    assert str(comparison["within_noise"].dtype) == "boolean"
    assert comparison["mean_difference"].dtype == np.float64
