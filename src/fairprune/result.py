"""What :func:`fairprune.prune` returns: :class:`PruningResult`.

Its own module (torch and pandas only) so that both the API and the export can name it without
importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from torch import nn

from fairprune.fairness.certificate import Certificate
from fairprune.fairness.metrics import METRIC_COLUMNS
from fairprune.masks import Masks
from fairprune.prunable import Coverage
from fairprune.schema import GROUP_SIZE

__all__ = ["PruningResult"]

_SHOWN_GROUPS = 8


@dataclass(repr=False)
class PruningResult:
    """What :func:`fairprune.prune` returns.

    Attributes:
        model: The pruned model, a plain ``nn.Module``: masks baked in (unstructured) or channels
            physically removed (``structure="channel"``); on the input model's device and in its
            train/eval mode.
        metrics: ``metrics[split][which][metric]`` for each split given (``"train"``, ``"val"``,
            ``"test"``) and ``which`` in ``"dense"`` (the input model) and ``"pruned"``: accuracy,
            ``accuracy_gap``, ``worst_group_accuracy``, for binary tasks
            ``demographic_parity_difference`` and ``equalized_odds_difference``, for the pruned
            model ``degradation_gap`` and ``excess_degradation``, and per group by name
            ``group_accuracy_<name>`` and ``group_size_<name>``.
        masks: The binary mask of every prunable weight, by the input model's parameter names.
        method: The pruning method (a key of ``fairprune.pruners.PRUNERS``).
        structure: ``"unstructured"`` or ``"channel"``.
        sparsity: The target sparsity.
        achieved_sparsity: Fraction of the prunable weights removed.
        achieved_sparsity_all: Fraction of all the model's parameter entries removed (biases,
            normalisation and every weight left dense count as kept; tied tensors once).
        coverage: What was prunable and what was left dense, by name (see
            :class:`fairprune.prunable.Coverage`).
        fairness: The constrained metric (``None``: unconstrained).
        tolerance: The tolerance tau it was held to on validation (resolved from ``"dense"``).
        feasible: Whether the chosen state met tau on validation (``None``: unconstrained method).
        train_iterations: Forward/backward passes the method used.
        wall_seconds: Seconds the method took (data conversion and final evaluation excluded).
        history: The method's validation log (one row per check).
        group_names: Name of each group id.
        channel_fraction: Fraction of the prunable channels removed (``structure="channel"``).
        certificate: The fairness certificate on the part of ``val`` held out from training
            (``None``: unconstrained, or ``certify=0``); ``certificate.describe(group_names)``
            says it in words, ``certificate.certified`` whether it holds.
        selection: Which training state was returned, and why (``None``: the method does not
            choose among states).
        degradation_bound: Beside the certificate, on the same samples at the same level: an
            upper bound of how much more accuracy the worst-hit group lost to pruning than the
            average (``excess_degradation``; ``None`` without a certificate).
    """

    model: nn.Module
    metrics: dict[str, dict[str, dict[str, float]]]
    masks: Masks
    method: str
    structure: str
    sparsity: float
    achieved_sparsity: float
    fairness: str | None
    tolerance: float | None
    feasible: bool | None
    train_iterations: int
    wall_seconds: float
    history: list[dict[str, float]] = field(repr=False)
    group_names: tuple[str, ...]
    channel_fraction: float | None = None
    certificate: Certificate | None = None
    selection: str | None = None
    achieved_sparsity_all: float | None = None
    degradation_bound: float | None = None
    coverage: Coverage | None = field(default=None, repr=False)

    def metrics_frame(self) -> pd.DataFrame:
        """:attr:`metrics` as a table: one row per (split, model), one column per metric."""
        rows = {(s, w): m for s, per in self.metrics.items() for w, m in per.items()}
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis(["split", "model"])

    def __repr__(self) -> str:
        """The method, the sparsity, tau and its outcome, the groups with their sizes and the
        headline metrics of each split (the model and the masks are attributes)."""
        if self.fairness is None:
            outcome = "unconstrained"
        else:
            met = {True: "met", False: "not met", None: "not checked"}[self.feasible]
            outcome = f"{self.fairness} <= {self.tolerance:.4g} on val: {met}"
        head = (
            f"PruningResult({self.method}, {self.structure}, sparsity {self.sparsity:g} "
            f"(achieved {self.achieved_sparsity:.4f}{self._over_all()}), {outcome}, "
            f"{self.train_iterations} iterations, "
            f"{self.wall_seconds:.1f} s"
        )
        lines = [head, f"  groups{self._group_sizes()}"]
        if self.coverage is not None:
            lines.append(f"  coverage: {self.coverage.describe(shown=3)}")
        if self.certificate is not None:
            lines.append(f"  certificate: {self.certificate.describe(self.group_names)}")
        if self.degradation_bound is not None and self.certificate is not None:
            level = f"{100 * self.certificate.confidence:g}%"
            lines.append(
                f"  per group: no group lost more than {self.degradation_bound:.3f} accuracy beyond the "
                f"average loss, with {level} confidence on the same samples"
            )
        if self.selection is not None:
            lines.append(f"  returned: {self.selection}")
        lines += [f"  {split}: {self._split_line(per)}" for split, per in self.metrics.items()]
        return "\n".join(lines) + ")"

    def _over_all(self) -> str:
        if self.achieved_sparsity_all is None:
            return ""
        return f" of prunable weights, {self.achieved_sparsity_all:.4f} of all parameters"

    def _group_sizes(self) -> str:
        split = next((s for s in ("val", "test", "train") if s in self.metrics), None)
        sizes = self.metrics[split]["pruned"] if split else {}
        shown = [f"{name} {int(sizes.get(GROUP_SIZE + name, 0))}" for name in self.group_names]
        more = f", ... ({len(shown) - _SHOWN_GROUPS} more)" if len(shown) > _SHOWN_GROUPS else ""
        return f" ({split} sizes): " + ", ".join(shown[:_SHOWN_GROUPS]) + more

    def _split_line(self, per: dict[str, dict[str, float]]) -> str:
        constrained = METRIC_COLUMNS.get(self.fairness or "accuracy_gap", "accuracy_gap")
        names = ["accuracy", constrained, "worst_group_accuracy"]
        pruned, dense = per.get("pruned", {}), per.get("dense", {})
        shown = [n for n in dict.fromkeys(names) if n in pruned]
        return ", ".join(f"{n} {pruned[n]:.4f} (dense {dense.get(n, float('nan')):.4f})" for n in shown)
