"""What to keep fair and how strictly: the :class:`FairnessObjective`, a frozen record that the
config, ``fairprune.prune`` and the pruners build and :class:`~fairprune.fairness.constraints.Constraint`
enforces. Its checks are the library's (the config layer says the same in its own words first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fairprune.fairness.bounds import BOUNDED_METRICS
from fairprune.fairness.certificate import CERTIFIABLE_METRICS
from fairprune.fairness.controller import check_controller
from fairprune.fairness.metrics import PER_GROUP_METRICS
from fairprune.fairness.surrogates import SURROGATES

__all__ = ["FairnessObjective", "CONSTRAINT_MODES", "DIRECTIONS", "CORRECTNESS_KINDS", "MARGIN_METRICS"]

CONSTRAINT_MODES = ("penalty", "lagrangian")
DIRECTIONS = ("both", "lift")
CORRECTNESS_KINDS = ("sigmoid", "hinge")
MARGIN_METRICS = ("accuracy_gap", "excess_degradation")
"""The metrics whose surrogate is built from soft correctness (``surrogate`` chooses its kind)."""


@dataclass(frozen=True)
class FairnessObjective:
    """What to keep fair and how strictly.

    Attributes:
        metric: Registry key shared by the exact metric and its surrogate
            (``"equalized_odds"``, ``"demographic_parity"``, ``"accuracy_gap"``).
        tolerance: The user's tau, on the exact metric's scale (already resolved to a number).
        mode: ``"penalty"`` or ``"lagrangian"``.
        penalty_weight: ``lambda`` of ``penalty`` mode (the loss gains ``lambda * Phi``).
        dual_step: The dual step ``eta`` of ``lagrangian`` mode (the multipliers' controller's
            step size). Each mode reads its own setting; the other is ignored.
        temperature: Temperature T of the soft surrogate.
        scale_free: Divide the logits by their batch RMS (centred over classes, detached) before
            the surrogate. Soft rates ``sigmoid(f/T)`` are otherwise equalised for free by shrinking
            every logit towards 0 (all rates -> 1/2), a degenerate direction that drives a heavily
            pruned model to a constant predictor; with the scale detached, only *relative*
            changes between groups lower Phi.
        confidence: 0 (default): the constraint is checked on the measured validation value.
            In [0.5, 1): on its one-sided upper confidence bound at this level
            (:func:`~fairprune.fairness.bounds.violation_upper_bound`), for the dual step and
            for which checkpoints count as within tau — so that tau also holds on unseen data.
        controller: How the multipliers follow the error (``lagrangian``): ``"ascent"`` or
            ``"nupi"`` (see :mod:`fairprune.fairness.controller`). Ascent is the default: on the
            default Adult run no nuPI setting lowered the check-to-check swing of the violation,
            which is as large with the multiplier held at 0 (docs/fairness-and-certificates.md,
            "The multiplier's controller").
        kp: nuPI's proportional gain ``K_P`` (>= 0; 0 is ascent).
        ema_nu: nuPI's smoothing ``nu`` of the error, in [0, 1). The defaults (0.5, 0.9) were the
            nuPI setting that moved the multiplier no further than ascent on that run.
        windup_window: Dual steps ``W`` over which a climbing multiplier with no progress of the
            violation counts as wound up (0: no anti-windup).
        certify: 0: no certificate. In (0.5, 1): the run is certified at this level on a
            held-out certification split (:mod:`fairprune.fairness.certificate`), and the dual step
            and the checkpoint selection read the *predicted* certificate: the same bound on the
            validation data training reads, with the interval widths of the certification
            split's size (``certify_scale``), mapped onto tau's scale as
            ``tau + (bound - threshold)`` (Seldonian candidate selection). When even an ideal
            model could not certify at these sizes they read the measured value instead.
        dense_factor: ``None``: tau is the user's number (an *absolute* certificate,
            ``V(pruned) <= tau``). A number ``f``: tau was set from the dense model
            (``tolerance = "dense"``), certified *paired* on the same samples:
            ``V(pruned) - f * V(dense) <= slack``.
        slack: The excess over ``f * V(dense)`` a paired certificate allows (no finite sample can
            certify an excess of exactly 0).
        certify_scale: Certification-split size over the size of the validation data training
            reads (for the predicted certificate).
        floor: No levelling down: a constrained run never chooses a state whose validation
            accuracy or worst-group accuracy is more than ``floor`` below the run's most
            accurate state (see :class:`~fairprune.selection.CheckpointSelector`); ``None``: off.
        direction: ``"both"``: the surrogate's gap moves both extreme groups (it can fall by
            pulling the best group down). ``"lift"``: only the worst-off side gets a gradient —
            the lowest soft accuracy (accuracy gap), the lowest true-positive and the highest
            false-positive rate (equalized odds) — so the term never pays for pulling a group
            down. Demographic parity has no worst-off side and keeps ``"both"``.
        surrogate: The soft correctness of a sample behind the accuracy-based surrogates
            (``MARGIN_METRICS``; see :func:`~fairprune.fairness.surrogates.soft_correctness`):
            ``"sigmoid"`` of the margin, or the convex ``"hinge"`` bound ``max(0, 1 + z / T)`` (Wu,
            Zhang & Wu, 2019): linear in the margin above ``-T``, so it does not saturate on
            confidently right samples (a wrong one below ``-T`` gets no gradient).
    """

    metric: str = "equalized_odds"
    tolerance: float = 0.0
    mode: str = "lagrangian"
    penalty_weight: float = 5.0
    dual_step: float = 5.0
    temperature: float = 1.0
    scale_free: bool = True
    confidence: float = 0.0
    controller: str = "ascent"
    kp: float = 0.5
    ema_nu: float = 0.9
    windup_window: int = 4
    certify: float = 0.0
    dense_factor: float | None = None
    slack: float = 0.0
    certify_scale: float = 1.0
    floor: float | None = None
    direction: str = "both"
    surrogate: str = "sigmoid"

    def __post_init__(self) -> None:
        check_controller(self.controller, self.kp, self.ema_nu, self.windup_window)
        if self.certify != 0.0:
            if not 0.5 < self.certify < 1.0:
                raise ValueError(f"fairness certify must be 0 (off) or in (0.5, 1); got {self.certify}")
            if self.metric not in CERTIFIABLE_METRICS:
                raise ValueError(
                    f"fairness certify supports the metrics {list(CERTIFIABLE_METRICS)}; got {self.metric!r}"
                )
        if not (math.isfinite(self.slack) and self.slack >= 0 and self.certify_scale > 0):
            raise ValueError(
                f"expected slack >= 0 and certify_scale > 0; got {self.slack}, {self.certify_scale}"
            )
        if self.floor is not None and not (math.isfinite(self.floor) and self.floor >= 0):
            raise ValueError(f"fairness floor must be None (off) or a number >= 0; got {self.floor}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"fairness direction must be one of {DIRECTIONS}; got {self.direction!r}")
        if self.surrogate not in CORRECTNESS_KINDS:
            raise ValueError(f"fairness surrogate must be one of {CORRECTNESS_KINDS}; got {self.surrogate!r}")
        if self.surrogate != "sigmoid" and self.metric not in MARGIN_METRICS:
            raise ValueError(
                f"fairness surrogate {self.surrogate!r} applies to the metrics {list(MARGIN_METRICS)}; "
                f"got {self.metric!r} (use 'sigmoid')"
            )
        if self.confidence != 0.0:
            if not 0.5 <= self.confidence < 1.0:
                raise ValueError(f"fairness confidence must be 0 (off) or in [0.5, 1), got {self.confidence}")
            if self.metric not in BOUNDED_METRICS:
                raise ValueError(
                    f"fairness confidence supports the metrics {list(BOUNDED_METRICS)}; got {self.metric!r}"
                )
        if self.metric not in SURROGATES:
            raise ValueError(f"unknown fairness metric {self.metric!r}; expected one of {sorted(SURROGATES)}")
        if self.mode not in CONSTRAINT_MODES:
            raise ValueError(f"unknown constraint mode {self.mode!r}; expected one of {CONSTRAINT_MODES}")
        if not (math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise ValueError(f"fairness tolerance must be a finite number >= 0, got {self.tolerance}")
        if self.penalty_weight < 0 or self.dual_step < 0 or self.temperature <= 0:
            raise ValueError(
                "expected penalty_weight >= 0, dual_step >= 0 and temperature > 0, got "
                f"{self.penalty_weight}, {self.dual_step}, {self.temperature}"
            )
        if self.per_group and self.mode != "lagrangian":
            raise ValueError(
                f"fairness metric {self.metric!r} has one multiplier per group; expected mode "
                f"'lagrangian', got {self.mode!r}"
            )

    @property
    def per_group(self) -> bool:
        """Whether the metric is constrained group by group (one multiplier per group)."""
        return self.metric in PER_GROUP_METRICS
