"""Fairness certificates: exact Clopper–Pearson bounds, hand-computed certificates, and coverage
simulations showing a model whose true violation exceeds the threshold is certified in at most
``1 - confidence`` of draws."""

from __future__ import annotations

import math
import statistics
import time

import numpy as np
import pytest
from scipy.stats import beta, binomtest

from fairprune.fairness import accuracy_gap, equalized_odds_difference, excess_degradations
from fairprune.fairness.certificate import (
    CERTIFIABLE_METRICS,
    Certificate,
    cell_sizes,
    certify,
    clopper_pearson_lower,
    clopper_pearson_upper,
)


def _ub(k: float, n: float, a: float) -> float:
    return 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))


def _lb(k: float, n: float, a: float) -> float:
    return 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))


def _labels(*cells: tuple[int, int]) -> np.ndarray:
    """Per-sample 0/1 values: ``k`` ones then ``n - k`` zeros for each ``(k, n)``."""
    return np.concatenate([np.repeat([1, 0], [k, n - k]) for k, n in cells])


# ---------------------------------------------------------------- Clopper–Pearson


@pytest.mark.parametrize(("k", "n"), [(0, 20), (3, 20), (10, 20), (19, 20), (20, 20), (7, 250)])
@pytest.mark.parametrize("a", [0.025, 0.005])
def test_clopper_pearson_equals_the_exact_binomial_interval(k: int, n: int, a: float) -> None:
    # a one-sided bound at level a is an end of the two-sided exact interval at 1 - 2a
    interval = binomtest(k, n).proportion_ci(confidence_level=1 - 2 * a, method="exact")
    assert float(clopper_pearson_lower(k, n, a)) == pytest.approx(interval.low, abs=1e-12)
    assert float(clopper_pearson_upper(k, n, a)) == pytest.approx(interval.high, abs=1e-12)


def test_clopper_pearson_edges_by_hand() -> None:
    # k = 0: P(0 of n | p) = (1 - p)^n = a  =>  UB = 1 - a^(1/n); k = n: LB = a^(1/n)
    assert float(clopper_pearson_upper(0, 20, 0.05)) == pytest.approx(1 - 0.05 ** (1 / 20), abs=1e-12)
    assert float(clopper_pearson_lower(20, 20, 0.05)) == pytest.approx(0.05 ** (1 / 20), abs=1e-12)
    assert float(clopper_pearson_lower(0, 20, 0.05)) == 0.0
    assert float(clopper_pearson_upper(20, 20, 0.05)) == 1.0
    # real-valued counts (scale): the same closed form with n = 12.5
    assert float(clopper_pearson_upper(0.0, 12.5, 0.05)) == pytest.approx(1 - 0.05 ** (1 / 12.5), abs=1e-12)


# ---------------------------------------------------------------- absolute certificates


def test_absolute_accuracy_gap_by_hand() -> None:
    # group 0: 18 of 20 correct, group 1: 15 of 25 correct; y = 1, so correct <=> predicted 1
    pred = _labels((18, 20), (15, 25))
    groups = np.repeat([0, 1], [20, 25])
    y = np.ones_like(pred)
    a = 0.10 / (2 * 1 * 2)  # M = 2 S G = 4 one-sided bounds at confidence 0.9
    expected = max(_ub(18, 20, a), _ub(15, 25, a)) - min(_lb(18, 20, a), _lb(15, 25, a))
    assert expected == pytest.approx(_ub(18, 20, a) - _lb(15, 25, a))
    cert = certify("accuracy_gap", y, pred, groups=groups, n_groups=2, confidence=0.9, tolerance=0.5)
    assert cert.bound == pytest.approx(expected, abs=1e-12)
    assert (cert.kind, cert.threshold, cert.certified) == ("absolute", 0.5, expected <= 0.5)
    assert cert.n_samples == 45 and cert.cell_sizes == ((20, 25),)
    # the ideal model: both groups at the pooled rate 33/45
    ideal = [(33 / 45 * 20, 20), (33 / 45 * 25, 25)]
    smallest = max(_ub(k, n, a) for k, n in ideal) - min(_lb(k, n, a) for k, n in ideal)
    assert cert.smallest_certifiable == pytest.approx(smallest, abs=1e-12)


def test_absolute_equalized_odds_by_hand() -> None:
    # y=1: group 0 TPR 16/20, group 1 10/20; y=0: group 0 FPR 2/20, group 1 4/20
    y = np.repeat([1, 0, 1, 0], 20)
    pred = _labels((16, 20), (2, 20), (10, 20), (4, 20))
    groups = np.repeat([0, 1], 40)
    a = 0.05 / (2 * 2 * 2)  # M = 2 S G = 8
    tpr = _ub(16, 20, a) - _lb(10, 20, a)
    fpr = _ub(4, 20, a) - _lb(2, 20, a)
    cert = certify("equalized_odds", y, pred, groups=groups, n_groups=2, confidence=0.95, tolerance=0.1)
    assert cert.bound == pytest.approx(max(tpr, fpr), abs=1e-12)
    assert cert.cell_sizes == ((20, 20), (20, 20))
    assert not cert.certified


def test_a_perfect_model_gets_the_closed_form_bound() -> None:
    # every sample correct: bound = 1 - min_g LB(n_g of n_g) = 1 - a^(1/20), the smallest group's
    groups = np.repeat([0, 1], [20, 30])
    y = np.ones(50, dtype=np.int64)
    cert = certify("accuracy_gap", y, y, groups=groups, n_groups=2, confidence=0.95, tolerance=0.2)
    a = 0.05 / 4
    assert cert.bound == pytest.approx(1 - a ** (1 / 20), abs=1e-12)
    assert cert.smallest_certifiable == pytest.approx(cert.bound, abs=1e-12)
    assert cert.certified


# ---------------------------------------------------------------- paired certificates


def test_identical_predictions_get_the_smallest_certifiable_bound() -> None:
    # group 0: 30 of 40 correct, group 1: 45 of 60, and pruned == dense. No sample is discordant,
    # yet UB(0 discordant of n) = 1 - a^(1/n) > 0: from finitely many samples one can never rule
    # out that the models differ elsewhere, so "V(p) - V(d) <= 0" (slack 0) is never certified.
    pred = _labels((30, 40), (45, 60))
    groups = np.repeat([0, 1], [40, 60])
    y = np.ones_like(pred)
    cert = certify(
        "accuracy_gap",
        y,
        pred,
        groups=groups,
        n_groups=2,
        confidence=0.95,
        y_pred_dense=pred,
        dense_factor=1.0,
    )
    a = 0.05 / (8 * 1 * 2)  # M = 8 S G = 16
    expected = (1 - a ** (1 / 40)) + (1 - a ** (1 / 60))  # UB(delta_0) - LB(delta_1)
    assert cert.bound == pytest.approx(expected, abs=1e-12)
    assert cert.smallest_certifiable == cert.bound > 0
    assert (cert.kind, cert.threshold, cert.certified) == ("paired", 0.0, False)


def test_paired_is_much_tighter_than_unpaired_when_the_models_agree_on_95_percent() -> None:
    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1], 2000)
    y = np.ones(4000, dtype=np.int64)
    dense = (rng.random(4000) < np.where(groups == 0, 0.85, 0.80)).astype(np.int64)
    pruned = np.where(rng.random(4000) < 0.05, 1 - dense, dense)
    point = accuracy_gap(y, pruned, groups=groups) - accuracy_gap(y, dense, groups=groups)
    paired = certify(
        "accuracy_gap",
        y,
        pruned,
        groups=groups,
        n_groups=2,
        confidence=0.9,
        y_pred_dense=dense,
        dense_factor=1.0,
    )
    # unpaired: UB(V(p)) from the absolute certificate minus LB(V(d)), granting each level alpha/4
    absolute = certify("accuracy_gap", y, pruned, groups=groups, n_groups=2, confidence=0.9, tolerance=1.0)
    k, n = np.bincount(groups, weights=dense), np.bincount(groups)
    lower_dense = max(
        0.0, clopper_pearson_lower(k, n, 0.025).max() - clopper_pearson_upper(k, n, 0.025).min()
    )
    unpaired = absolute.bound - lower_dense
    assert paired.bound - point < 0.5 * (unpaired - point)


def test_lifting_the_worst_group_is_not_charged_its_own_improvement() -> None:
    # dense: group 0 at 2700/3000, group 1 at 2100/3000; pruned fixes 150 of group 1's errors.
    dense = _labels((2700, 3000), (2100, 3000))
    pruned = dense.copy()
    pruned[3000 + 2100 : 3000 + 2250] = 1
    groups = np.repeat([0, 1], 3000)
    y = np.ones_like(dense)
    cert = certify(
        "accuracy_gap",
        y,
        pruned,
        groups=groups,
        n_groups=2,
        confidence=0.95,
        y_pred_dense=dense,
        dense_factor=1.0,
    )
    # Same-group terms alone would bound the pair (1, 0) by UB(delta_1) - LB(delta_0) >= 0.05, the
    # improvement itself. With cross-group terms (V(d) >= r_0(d) - r_1(d)) that pair is ~ -0.3 and
    # the bound is the pair (0, 1): UB(delta_0) - LB(delta_1) = u + u - LB(150 of 3000).
    a = 0.05 / 16
    u = 1 - a ** (1 / 3000)
    assert cert.bound == pytest.approx(2 * u - _lb(150, 3000, a), abs=1e-12)
    assert cert.bound < -0.03 and cert.certified  # certified even with slack 0


def test_dense_factor_adds_the_dense_term() -> None:
    rng = np.random.default_rng(1)
    groups = np.repeat([0, 1], 300)
    y = np.ones(600, dtype=np.int64)
    dense = (rng.random(600) < np.where(groups == 0, 0.95, 0.6)).astype(np.int64)
    pruned = np.where(rng.random(600) < 0.03, 1 - dense, dense)
    kw = {"groups": groups, "n_groups": 2, "confidence": 0.9, "y_pred_dense": dense}
    base = certify("accuracy_gap", y, pruned, dense_factor=1.0, **kw).bound
    # f < 1: + (1 - f) UB(V(d)), the absolute bound at level alpha / (8 S G) = (alpha / 4) / (2 S G)
    upper_dense = certify("accuracy_gap", y, dense, groups=groups, n_groups=2, confidence=0.975, tolerance=1)
    half = certify("accuracy_gap", y, pruned, dense_factor=0.5, slack=0.01, **kw)
    assert half.bound == pytest.approx(base + 0.5 * upper_dense.bound, abs=1e-12)
    # f > 1: - (f - 1) LB(V(d)), LB(V(d)) = max(0, max_g LB(r_g(d)) - min_g UB(r_g(d)))
    k, n = np.bincount(groups, weights=dense), np.bincount(groups)
    a = 0.1 / 16
    lower_dense = clopper_pearson_lower(k, n, a).max() - clopper_pearson_upper(k, n, a).min()
    assert lower_dense > 0.2
    more = certify("accuracy_gap", y, pruned, dense_factor=1.5, **kw)
    assert more.bound == pytest.approx(base - 0.5 * lower_dense, abs=1e-12)
    assert "1.5 x the dense model's" in more.describe() or not more.certified


def test_excess_degradation_by_hand() -> None:
    # group 0 (20): dense 18 correct, pruned loses 2 of them; group 1 (30): dense 20 correct,
    # pruned fixes 3 more. Degraded (dense right, pruned wrong): 2/20, 0/30; improved: 0/20, 3/30.
    dense = _labels((18, 20), (20, 30))
    pruned = _labels((16, 20), (23, 30))
    groups = np.repeat([0, 1], [20, 30])
    y = np.ones_like(dense)
    a = 0.05 / (2 * 2 + 2)  # M = 2 G + 2: UB(Q+_g), LB(Q-_g) per group, LB(Q+), UB(Q-) overall
    up_group = max(_ub(2, 20, a) - _lb(0, 20, a), _ub(0, 30, a) - _lb(3, 30, a))
    lower_total = _lb(2, 50, a) - _ub(3, 50, a)
    cert = certify(
        "excess_degradation",
        y,
        pruned,
        groups=groups,
        n_groups=2,
        confidence=0.95,
        tolerance=0.3,
        y_pred_dense=dense,
    )
    assert cert.bound == pytest.approx(up_group - lower_total, abs=1e-12)
    psi = excess_degradations(y, pruned, groups=groups, y_pred_dense=dense)
    np.testing.assert_allclose(psi, [0.1 - (-0.02), -0.1 - (-0.02)])
    assert cert.bound > psi.max()
    assert (cert.kind, cert.threshold, cert.certified) == ("paired", 0.3, cert.bound <= 0.3)
    assert cert.smallest_certifiable == pytest.approx(_ub(0, 20, a) + _ub(0, 50, a), abs=1e-12)


# ---------------------------------------------------------------- scale, sizes, text


def test_scale_one_is_the_plain_call_and_scale_four_is_the_data_four_times() -> None:
    rng = np.random.default_rng(2)
    groups = rng.integers(0, 3, 600)
    y = rng.integers(0, 2, 600)
    pred = np.where(rng.random(600) < 0.8, y, 1 - y)
    kw = {"n_groups": 3, "confidence": 0.9, "tolerance": 0.2}
    plain = certify("equalized_odds", y, pred, groups=groups, **kw)
    assert certify("equalized_odds", y, pred, groups=groups, scale=1.0, **kw) == plain
    scaled = certify("equalized_odds", y, pred, groups=groups, scale=4.0, **kw)
    tiled = certify("equalized_odds", np.tile(y, 4), np.tile(pred, 4), groups=np.tile(groups, 4), **kw)
    assert equalized_odds_difference(y, pred, groups=groups) < scaled.bound < plain.bound
    assert scaled.bound == pytest.approx(tiled.bound, abs=1e-12)
    assert scaled.cell_sizes == tiled.cell_sizes and scaled.n_samples == 2400


def test_cell_sizes_by_hand() -> None:
    y = np.array([1, 0, 0, 1, 1, 0])
    groups = np.array([0, 0, 1, 1, 1, 2])
    assert cell_sizes("accuracy_gap", y, groups, 3) == ((2, 3, 1),)
    assert cell_sizes("equalized_odds", y, groups, 3) == ((1, 1, 1), (1, 2, 0))


def _certificate(**changes: object) -> Certificate:
    fields = {
        "metric": "accuracy_gap",
        "kind": "absolute",
        "confidence": 0.95,
        "bound": 0.0312,
        "threshold": 0.05,
        "certified": True,
        "n_samples": 1204,
        "cell_sizes": ((1078, 126),),
        "smallest_certifiable": 0.0214,
    }
    return Certificate(**{**fields, **changes})  # type: ignore[arg-type]


def test_describe_and_to_row() -> None:
    names = ["Majority", "Others"]
    assert _certificate().describe(names) == (
        "accuracy gap <= 0.05 with 95% confidence, on 1,204 certification samples "
        "(smallest group: Others, 126)"
    )
    paired = _certificate(kind="paired", threshold=0.02)
    assert paired.describe(names).startswith("accuracy gap <= the dense model's + 0.020 with 95% confidence")
    failed = _certificate(bound=0.081, threshold=0.02, certified=False, smallest_certifiable=0.047)
    assert "NOT certified" in failed.describe(names)
    assert (
        "bound 0.081 > 0.02; the smallest threshold these group sizes can certify is 0.047"
        in failed.describe()
    )
    eo = _certificate(metric="equalized_odds", cell_sizes=((600, 70), (400, 56)))
    assert "(smallest group: group 1 at y=1, 56)" in eo.describe()
    assert _certificate().to_row() == {
        "certified": True,
        "violation_bound": 0.0312,
        "certify_threshold": 0.05,
        "certify_kind": "absolute",
        "certify_dense_factor": 1.0,
        "certify_confidence": 0.95,
        "certify_samples": 1204,
        "certify_min_cell": 126,
        "certify_smallest": 0.0214,
        "certify_samples_needed": -1,
    }
    assert "would need" not in failed.describe()
    short = _certificate(certified=False, bound=0.081, threshold=0.02, samples_needed=3690)
    assert short.describe().endswith("126; certifying 0.02 would need about 3,690 in these proportions)")
    assert short.to_row()["certify_samples_needed"] == 3690


@pytest.mark.parametrize(
    ("metric", "paired"),
    [("accuracy_gap", True), ("equalized_odds", True), ("accuracy_gap", False), ("excess_degradation", True)],
)
def test_samples_needed_is_the_size_at_which_an_ideal_model_certifies(metric: str, paired: bool) -> None:
    rng = np.random.default_rng(3)
    n = 2000
    groups = np.repeat(np.arange(4), 500)
    y = rng.integers(0, 2, n)
    dense = np.where(np.arange(n) % 500 < 425, y, 1 - y)  # 85% right in every group
    ideal = dense  # equal to the dense model; for the absolute claim: equal accuracy in every group
    kwargs = {"y_pred_dense": dense, "dense_factor": 1.0, "slack": 0.02} if paired else {"tolerance": 0.02}
    if metric == "excess_degradation":
        kwargs = {"y_pred_dense": dense, "tolerance": 0.005}
    cert = certify(metric, y, ideal, groups=groups, n_groups=4, confidence=0.95, **kwargs)
    assert not cert.certified and cert.samples_needed is not None and cert.samples_needed > n
    x = cert.samples_needed / n
    at = certify(metric, y, ideal, groups=groups, n_groups=4, confidence=0.95, scale=x, **kwargs)
    below = certify(metric, y, ideal, groups=groups, n_groups=4, confidence=0.95, scale=x / 1.03, **kwargs)
    assert at.certified and at.bound <= at.threshold
    assert not below.certified  # within the 1% bisection step plus the rounding up
    assert at.samples_needed is None


def test_samples_needed_is_none_when_no_size_would_certify() -> None:
    rng = np.random.default_rng(4)
    groups = np.repeat([0, 1], 500)
    y = rng.integers(0, 2, 1000)
    dense = np.where(groups == 0, y, np.where(rng.random(1000) < 0.7, y, 1 - y))  # a 0.15 gap
    half = certify(
        "accuracy_gap",
        y,
        dense,
        groups=groups,
        n_groups=2,
        confidence=0.95,
        y_pred_dense=dense,
        dense_factor=0.5,
        slack=0.02,
    )  # V(d) - 0.5 V(d) = 0.5 V(d) ~ 0.07 > 0.02 for every size
    assert not half.certified and half.samples_needed is None
    assert "a model equal to the dense one would be bounded at" in half.describe()
    assert "smallest threshold these group sizes" not in half.describe()


# ---------------------------------------------------------------- bad inputs

Y = np.ones(60, dtype=np.int64)
G = np.repeat([0, 1], 30)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"confidence": 0.5}, r"fairness.certify .* must be in \(0.5, 1\); received 0.5"),
        ({"confidence": 1.0}, r"must be in \(0.5, 1\); received 1.0"),
        ({"metric": "worst_group_accuracy"}, r"supports the metrics \['accuracy_gap'.*received 'worst_group"),
        ({"dense_factor": 1.0}, r"paired certificate \(dense_factor\) needs y_pred_dense"),
        ({"metric": "excess_degradation"}, r"excess_degradation needs y_pred_dense"),
        ({"tolerance": None}, r"needs a tolerance \(absolute\) or a dense_factor \(paired\)"),
        ({"min_cell": 31}, r"group 0 has 30 certification samples; expected at least min_cell=31"),
        (
            {"scale": 0.5},
            r"group 0 has 15 certification samples \(x scale 0.5\); expected at least min_cell=20",
        ),
        ({"scale": 0.0}, r"scale must be positive"),
        ({"slack": -0.1, "dense_factor": 1.0, "y_pred_dense": Y}, r"slack must be >= 0; received -0.1"),
        ({"dense_factor": -1.0, "y_pred_dense": Y}, r"dense_factor must be >= 0; received -1.0"),
        ({"metric": "demographic_parity", "y_pred": Y * 2}, r"demographic_parity needs binary labels"),
    ],
)
def test_bad_inputs_raise_a_value_error_naming_the_problem(kwargs: dict[str, object], match: str) -> None:
    args = {"metric": "accuracy_gap", "y_true": Y, "y_pred": Y, "confidence": 0.9, "tolerance": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        certify(groups=G, n_groups=2, **args)  # type: ignore[arg-type]


def test_a_small_cell_of_equalized_odds_names_its_stratum() -> None:
    y = np.concatenate([np.ones(30), np.zeros(30), np.ones(5), np.zeros(30)]).astype(np.int64)
    groups = np.repeat([0, 1], [60, 35])
    with pytest.raises(ValueError, match=r"group 1 at y=1 has 5 certification samples; expected at least"):
        certify("equalized_odds", y, y, groups=groups, n_groups=2, confidence=0.9, tolerance=0.1)
    with pytest.raises(ValueError, match=r"group 2 at y=0 has 0 certification samples"):
        certify("equalized_odds", y, y, groups=groups, n_groups=3, confidence=0.9, tolerance=0.1)


def test_certifiable_metrics() -> None:
    assert CERTIFIABLE_METRICS == (
        "accuracy_gap",
        "demographic_parity",
        "equalized_odds",
        "excess_degradation",
    )


# ---------------------------------------------------------------- coverage simulations


def _certification_rate(
    metric: str,
    sizes: list[list[int]],
    dense: list[list[float]],
    up: float | list[list[float]],
    down: float | list[list[float]],
    *,
    draws: int,
    seed: int,
    **kw: object,
) -> float:
    """Fraction of ``draws`` synthetic certification sets on which ``certify`` fires.

    Cell ``(s, g)`` (stratum ``y = s`` for equalized_odds) holds ``sizes[s][g]`` samples whose
    dense value (correct, or predicted 1) is 1 with probability ``dense[s][g]``; the pruned value
    differs from it upwards (0 -> 1) with probability ``up`` and downwards with probability
    ``down``, so ``r(p) = r(d) + up - down``. One uniform per sample drives both models.
    """
    shape = np.shape(sizes)  # (S, G)
    counts = np.ravel(sizes)
    groups = np.repeat(np.tile(np.arange(shape[1]), shape[0]), counts)
    strata = np.repeat(np.repeat(np.arange(shape[0]), shape[1]), counts)
    y = strata if metric == "equalized_odds" else np.ones_like(groups)
    rate, rise, fall = (np.repeat(np.broadcast_to(v, shape).ravel(), counts) for v in (dense, up, down))
    rng = np.random.default_rng(seed)
    fired = 0
    for _ in range(draws):
        u = rng.random(counts.sum())
        dense_value = u < rate
        pruned_value = (dense_value & (u >= fall)) | (u >= 1 - rise)
        fired += certify(
            metric, y, pruned_value, groups=groups, n_groups=shape[1], y_pred_dense=dense_value, **kw
        ).certified
    return fired / draws


def _at_most_alpha(rate: float, alpha: float, draws: int) -> bool:
    return rate <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / draws)


# metric, sizes, tolerance, rates with true V = tau, rates with V = tau + 0.01, rates with V << tau
ABSOLUTE_CASES = [
    (
        "accuracy_gap",
        [[400, 800, 1600]],
        0.10,
        [[0.80, 0.90, 0.85]],
        [[0.79, 0.90, 0.85]],
        [[0.85, 0.86, 0.855]],
    ),
    (  # least favourable: UB(group 0) = 1 for sure, so one failed lower bound certifies
        "accuracy_gap",
        [[2000, 300]],
        0.10,
        [[1.0, 0.90]],
        [[1.0, 0.89]],
        [[1.0, 0.99]],
    ),
    (
        "demographic_parity",
        [[400, 800, 1600]],
        0.15,
        [[0.30, 0.45, 0.375]],
        [[0.29, 0.45, 0.375]],
        [[0.35, 0.36, 0.355]],
    ),
    (  # rows y = 0 (FPR gap 0.05), y = 1 (TPR gap = tau)
        "equalized_odds",
        [[600, 1200], [600, 1200]],
        0.10,
        [[0.10, 0.15], [0.70, 0.80]],
        [[0.10, 0.15], [0.69, 0.80]],
        [[0.10, 0.11], [0.80, 0.81]],
    ),
]


@pytest.mark.parametrize("case", ABSOLUTE_CASES, ids=lambda c: f"{c[0]}-{len(c[1][0])}groups")
def test_absolute_certificate_fires_at_most_alpha_when_the_true_violation_reaches_tau(case: tuple) -> None:
    metric, sizes, tau, boundary, above, _ = case
    for seed, (rates, draws) in enumerate(((boundary, 2000), (above, 1000))):
        rate = _certification_rate(
            metric, sizes, rates, 0.0, 0.0, draws=draws, seed=seed, confidence=0.9, tolerance=tau
        )
        assert _at_most_alpha(rate, 0.1, draws), (rates, rate)


@pytest.mark.parametrize("case", ABSOLUTE_CASES, ids=lambda c: f"{c[0]}-{len(c[1][0])}groups")
def test_absolute_certificate_fires_for_a_model_well_inside_tau(case: tuple) -> None:
    metric, sizes, tau, _, _, inside = case
    rate = _certification_rate(
        metric, sizes, inside, 0.0, 0.0, draws=300, seed=7, confidence=0.9, tolerance=tau
    )
    assert rate >= 0.7  # observed 0.81 to 1.0 (see the report); a far looser bound fails this


# metric, sizes, dense rates, (up, down) flips with true V(p) - V(d) = eps = 0.03, then 0.04
PAIRED_CASES = [
    (  # dense 0.90 / 0.85 (V 0.05); pruned group 1 at 0.82 (V 0.08), group 0 churns 1% each way
        "accuracy_gap",
        [[3000, 2000]],
        [[0.90, 0.85]],
        ([[0.01, 0.005]], [[0.01, 0.035]]),
        ([[0.01, 0.005]], [[0.01, 0.045]]),
    ),
    (  # dense TPR 0.80 / 0.70 (V 0.10), FPR 0.10 / 0.12; pruned TPR of group 1 at 0.67
        "equalized_odds",
        [[1500, 1000], [1500, 1000]],
        [[0.10, 0.12], [0.80, 0.70]],
        ([[0.01, 0.01], [0.01, 0.005]], [[0.01, 0.01], [0.01, 0.035]]),
        ([[0.01, 0.01], [0.01, 0.005]], [[0.01, 0.01], [0.01, 0.045]]),
    ),
]


@pytest.mark.parametrize("case", PAIRED_CASES, ids=lambda c: c[0])
def test_paired_certificate_fires_at_most_alpha_when_the_true_excess_reaches_eps(case: tuple) -> None:
    metric, sizes, dense, boundary, above = case
    for seed, ((up, down), draws) in enumerate(((boundary, 2000), (above, 1000))):
        rate = _certification_rate(
            metric,
            sizes,
            dense,
            up,
            down,
            draws=draws,
            seed=seed,
            confidence=0.9,
            dense_factor=1.0,
            slack=0.03,
        )
        assert _at_most_alpha(rate, 0.1, draws), (down, rate)


@pytest.mark.parametrize("case", PAIRED_CASES, ids=lambda c: c[0])
def test_paired_certificate_fires_for_a_pruned_model_as_fair_as_dense(case: tuple) -> None:
    metric, sizes, dense, _, _ = case  # 0.5% churn each way in every cell: V(p) = V(d)
    rate = _certification_rate(
        metric, sizes, dense, 0.005, 0.005, draws=300, seed=7, confidence=0.9, dense_factor=1.0, slack=0.03
    )
    assert rate >= 0.7  # observed 0.81 to 1.0 (see the report); a far looser bound fails this


def test_certify_on_ten_thousand_samples_is_fast() -> None:
    rng = np.random.default_rng(3)
    groups, y = rng.integers(0, 4, 10_000), rng.integers(0, 2, 10_000)
    dense = np.where(rng.random(10_000) < 0.85, y, 1 - y)
    pruned = np.where(rng.random(10_000) < 0.05, 1 - dense, dense)
    kw = {"groups": groups, "n_groups": 4, "confidence": 0.95, "y_pred_dense": dense, "dense_factor": 1.0}
    times = []
    for _ in range(10):
        start = time.perf_counter()
        certify("equalized_odds", y, pruned, **kw)  # the slowest: 2 strata, paired
        times.append(time.perf_counter() - start)
    assert statistics.median(times) < 0.05
