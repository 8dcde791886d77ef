"""The results schema: every column name of a run record and ``results.csv``, in one place.

No torch here: the sweep writes these columns, and the footprint, the statistics, the plots, the
command line's table and the report text read them. Per-group columns carry the group's *name*
(``group_accuracy_Female``, ``group_size_Female``); sweeps recorded before that carry the id
(``group_accuracy_0``) and are read the same way. The per-group spellings all live here: the
metrics' ids (``group_accuracy_0``, :func:`name_groups` names them), the model card's nested
form (``{"group_accuracy": {"Female": ...}}``, :func:`nest_groups`) and its flat one for tables
(``group_accuracy[Female]``, :func:`flat_groups`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "BINARY_METRICS",
    "CERTIFICATE_COLUMNS",
    "CONSTRAINED_COLUMNS",
    "CONTEXT_COLUMNS",
    "COST_COLUMNS",
    "DEFAULT_METRICS",
    "FAIRNESS_COLUMNS",
    "FOOTPRINT_COLUMNS",
    "FOOTPRINT_HEADERS",
    "GROUP_ACCURACY",
    "GROUP_SIZE",
    "OUTCOME_COLUMNS",
    "RECORD_KEYS",
    "RESULT_COLUMNS",
    "group_names_in",
    "name_groups",
]

CONSTRAINED_COLUMNS: dict[str, str] = {
    "accuracy_gap": "accuracy_gap",
    "demographic_parity": "demographic_parity_difference",
    "equalized_odds": "equalized_odds_difference",
    "worst_group_accuracy": "worst_group_accuracy",
    "excess_degradation": "excess_degradation",
}
"""Results column of each fairness key (``fairness.metric`` of a config); equal to
``fairness.metrics.METRIC_COLUMNS`` (checked by a test)."""

BINARY_METRICS = frozenset({"demographic_parity", "equalized_odds"})
"""Fairness keys defined for a binary target only (positive class 1)."""

FAIRNESS_COLUMNS: tuple[str, ...] = (
    "accuracy_gap",
    "degradation_gap",
    "demographic_parity_difference",
    "equalized_odds_difference",
    "excess_degradation",
    "worst_group_accuracy",
)
"""The fairness columns of a results table (DESIGN §2)."""

DEFAULT_METRICS: tuple[str, ...] = ("accuracy", *FAIRNESS_COLUMNS)
"""Metrics summarised and compared by default."""

OUTCOME_COLUMNS: tuple[str, ...] = ("fair", "fair_test", "certified", "iterations_to_fair")
"""Summarised in reports beside the metrics (fractions of runs within tau on validation and on
test, iterations to a fair model), not compared pairwise."""

CONTEXT_COLUMNS: tuple[str, ...] = ("dataset", "target", "sensitive_attribute", "model", "fairness")
"""Columns that, when they vary, split a report into separately plotted cells."""

FOOTPRINT_COLUMNS: tuple[str, ...] = (
    "channel_fraction",
    "params",
    "params_ratio",
    "flops",
    "flops_ratio",
    "latency_ms",
    "latency_dense_ms",
    "latency_ratio",
    "slim_max_abs_diff",
)
"""What the shipped model of a run costs, next to the dense one (``fairprune.sweep.footprint``)."""

FOOTPRINT_HEADERS: dict[str, str] = {
    "achieved_sparsity": "sparsity achieved",
    "channel_fraction": "channels removed",
    "params_ratio": "params / dense",
    "flops_ratio": "FLOPs / dense",
    "latency_ratio": "latency / dense",
}
"""Footprint columns shown in ``report.md``, with their headers."""

CERTIFICATE_COLUMNS: tuple[str, ...] = (
    "certified",
    "violation_bound",
    "certify_threshold",
    "certify_kind",
    "certify_dense_factor",
    "certify_confidence",
    "certify_samples",
    "certify_min_cell",
    "certify_smallest",
    "certify_samples_needed",
    "claim_test",
    "claim_holds_test",
    "degradation_bound",
    "certificate",
)
"""A run's fairness certificate on the held-out certification split
(``fairness.certificate.Certificate.to_row``), what it bounds measured on the test split
(``claim_test``) and whether that held (``claim_holds_test``), the per-group claim beside it
(``degradation_bound``: an upper bound at the same level of how much more accuracy the worst-hit
group lost than the average, ``certification.degradation_bound``, whose value on the test split
is the row's ``excess_degradation``), and the certificate in words."""

COST_COLUMNS: tuple[str, ...] = ("fair_test", "reference_accuracy", "iterations_to_fair", "seconds_to_fair")
"""Read off the run histories when results are collected (``fairprune.sweep.cost``)."""

RESULT_COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys(  # fair_test is a cost column too: once, after fair
        (
            "run_id",
            "dataset",
            "target",
            "sensitive_attribute",
            "model",
            "method",
            "label",
            "structure",
            "sparsity",
            "seed",
            "fairness",
            "tolerance",
            "tolerance_setting",
            "accuracy",
            "accuracy_gap",
            "degradation_gap",
            "excess_degradation",
            "demographic_parity_difference",
            "equalized_odds_difference",
            "worst_group_accuracy",
            "val_accuracy",
            "val_violation",
            "fair",
            "fair_test",
            "trivial",
            "needs_sensitive_attribute",
            *CERTIFICATE_COLUMNS,
            "achieved_sparsity",
            *FOOTPRINT_COLUMNS,
            "train_iterations",
            "wall_seconds",
            *COST_COLUMNS,
        )
    )
)
"""Columns of ``results.csv`` in order; per-group columns follow them."""

RECORD_KEYS: tuple[str, ...] = ("run_id", "config", "result", "history", "selection")
"""Keys of a run record ``runs/<run_id>.json``; ``result`` is one row of ``results.csv``;
``selection`` says which state the run returned and why (absent in older records)."""

FLAG_COLUMNS: tuple[str, ...] = ("fair", "certified", "trivial")
"""Yes/no columns the terminal table shows as ``yes`` / ``-`` (so that the exceptions stand out)."""


def is_yes(value: Any) -> bool:
    """A yes/no value as read back from ``results.csv``: ``True``, ``"True"``, ``1`` (a missing
    value is no)."""
    return str(value).lower() in ("true", "1", "1.0")


GROUP_ACCURACY = "group_accuracy_"
"""Prefix of a group's test accuracy column, followed by the group's name."""
GROUP_SIZE = "group_size_"
"""Prefix of a group's test sample count column, followed by the group's name."""
GROUPED = {GROUP_ACCURACY: "group_accuracy", GROUP_SIZE: "group_size"}
"""Each per-group prefix and the key of its nested form in a model card."""


def group_key(prefix: str, group: int | str) -> str:
    """The column of ``group`` (an id or a name) under a per-group ``prefix``."""
    return f"{prefix}{group}"


def split_group_key(key: str) -> tuple[str, str] | None:
    """``(prefix, group)`` of a per-group column (``None`` for any other key)."""
    prefix = next((p for p in GROUPED if key.startswith(p)), None)
    return None if prefix is None else (prefix, key[len(prefix) :])


def name_groups(row: Mapping[str, Any], group_names: Sequence[str]) -> dict[str, Any]:
    """``row`` with its per-group columns keyed by group name instead of id.

    ``group_accuracy_<id>`` becomes ``group_accuracy_<group_names[id]>`` (the same for
    ``group_size_``); every other key is kept.

    Raises:
        ValueError: If two groups have one name, or a per-group id is not below
            ``len(group_names)``.
    """
    if len(set(group_names)) != len(group_names):
        raise ValueError(f"group names must be distinct; got {list(group_names)}")
    out: dict[str, Any] = {}
    for key, value in row.items():
        split = split_group_key(key)
        if split is not None and split[1].isdigit():
            prefix, suffix = split
            if int(suffix) >= len(group_names):
                raise ValueError(f"{key!r} names group {suffix}; expected ids below {len(group_names)}")
            key = group_key(prefix, group_names[int(suffix)])
        out[key] = value
    return out


def nest_groups(row: Mapping[str, Any]) -> dict[str, Any]:
    """A model card's metrics from a row whose per-group keys carry names: every other value as a
    float, then ``{"group_accuracy": {"Female": ...}, "group_size": {"Female": n}}``."""
    out: dict[str, Any] = {}
    grouped: dict[str, dict[str, float | int]] = {name: {} for name in GROUPED.values()}
    for key, value in row.items():
        split = split_group_key(key)
        if split is None:
            out[key] = float(value)
        else:
            prefix, group = split
            grouped[GROUPED[prefix]][group] = int(value) if prefix == GROUP_SIZE else float(value)
    return {**out, **grouped}


def flat_groups(metrics: Mapping[str, Any]) -> dict[str, float]:
    """A model card's metrics as one flat mapping, ``group_accuracy[Female]`` for the nested ones."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, Mapping):
            out.update({f"{key}[{name}]": float(v) for name, v in value.items()})
        else:
            out[key] = float(value)
    return out


def group_names_in(columns: Iterable[str]) -> list[str]:
    """The group names of the ``group_accuracy_<name>`` columns, in column order (ids as
    strings for sweeps recorded before groups were named)."""
    return [split[1] for c in columns if (split := split_group_key(c)) and split[0] == GROUP_ACCURACY]
