"""How steadily a constrained run's validation history settles: the oscillation of its violation
and the travel of its Lagrange multiplier (reads history rows, never trains)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["oscillation"]


def oscillation(
    history: pd.DataFrame | Sequence[Mapping[str, float]], *, tail: float = 0.5
) -> dict[str, float]:
    """Oscillation measures of one run's history (its rows in check order).

    With ``v_t`` the validation violation and ``mu_t`` the multiplier at check ``t = 1..n``, and
    ``T`` the last ``ceil(tail * n)`` checks:

    - ``violation_std``: ``sqrt(mean_{t in T} (v_t - mean_T v)^2)`` (population std over ``T``);
    - ``violation_range``: ``max_T v - min_T v``;
    - ``multiplier_tv``: total variation ``sum_{t=2..n} |mu_t - mu_{t-1}|`` over the whole run;
    - ``multiplier_max``: ``max_t mu_t``;
    - ``windup_checks``: the last row's ``windup_checks`` (NaN when not logged).

    A measure whose column is missing or NaN somewhere (``multiplier`` in penalty mode) is NaN.

    Args:
        history: A run's history rows (``violation``, ``multiplier``, ...), e.g. a run record's
            ``history`` or :func:`fairprune.reporting.report.load_histories`' frame.
        tail: Fraction of the checks, from the end, that the violation's measures read, in (0, 1].

    Raises:
        ValueError: If ``tail`` is outside (0, 1] or the history has no rows.
    """
    if not 0.0 < tail <= 1.0:
        raise ValueError(f"tail must be in (0, 1]; got {tail}")
    frame = history if isinstance(history, pd.DataFrame) else pd.DataFrame.from_records(list(history))
    if frame.empty:
        raise ValueError("expected a history with at least one row; got none")
    n = len(frame)
    late = _column(frame, "violation")[n - math.ceil(tail * n) :]
    mu = _column(frame, "multiplier")
    windup = _column(frame, "windup_checks")
    return {
        "violation_std": float(np.std(late)),
        "violation_range": float(np.max(late) - np.min(late)),
        "multiplier_tv": float(np.abs(np.diff(mu)).sum()),
        "multiplier_max": float(np.max(mu)),
        "windup_checks": float(windup[-1]),
    }


def _column(frame: pd.DataFrame, name: str) -> np.ndarray:
    """``frame[name]`` as float64 (all NaN when absent)."""
    if name not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
