"""Group fairness: exact metrics for reports, differentiable surrogates for training.

``METRICS`` and ``SURROGATES`` share their registry keys, so what training constrains is what the
report measures.
"""

from fairprune.fairness.certificate import CERTIFIABLE_METRICS, MIN_CELL, Certificate, cell_sizes, certify
from fairprune.fairness.constraints import Constraint
from fairprune.fairness.controller import CONTROLLERS, MultiplierController
from fairprune.fairness.metrics import (
    METRIC_COLUMNS,
    METRICS,
    PER_GROUP_METRICS,
    accuracy_gap,
    degradation,
    degradation_gap,
    demographic_parity_difference,
    equalized_odds_difference,
    excess_degradation,
    excess_degradations,
    fairness_report,
    group_accuracies,
    group_sizes,
    worst_group_accuracy,
)
from fairprune.fairness.objective import FairnessObjective
from fairprune.fairness.surrogates import (
    SURROGATES,
    gap_over_present,
    group_sums_counts,
    margins,
    positive_scores,
    soft_accuracy_gap,
    soft_correctness,
    soft_demographic_parity,
    soft_equalized_odds,
    soft_excess_degradations,
)

__all__ = [
    # the constrained objective
    "FairnessObjective",
    "Constraint",
    # the multipliers' controller
    "CONTROLLERS",
    "MultiplierController",
    # certificates (held-out safety test)
    "CERTIFIABLE_METRICS",
    "MIN_CELL",
    "Certificate",
    "cell_sizes",
    "certify",
    # metrics (exact)
    "METRICS",
    "METRIC_COLUMNS",
    "PER_GROUP_METRICS",
    "accuracy_gap",
    "degradation",
    "degradation_gap",
    "demographic_parity_difference",
    "equalized_odds_difference",
    "excess_degradation",
    "excess_degradations",
    "fairness_report",
    "group_accuracies",
    "group_sizes",
    "worst_group_accuracy",
    # surrogates (differentiable)
    "SURROGATES",
    "gap_over_present",
    "group_sums_counts",
    "margins",
    "positive_scores",
    "soft_accuracy_gap",
    "soft_correctness",
    "soft_demographic_parity",
    "soft_equalized_odds",
    "soft_excess_degradations",
]
