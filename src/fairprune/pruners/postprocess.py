"""Post-processing: prune, fine-tune, then group-specific decision thresholds.

What a practitioner would try first: magnitude pruning with plain fine-tuning, then fairlearn's
``ThresholdOptimizer`` (Hardt, Price & Srebro, NeurIPS 2016) fitted on the validation split with
``prefit=True`` under the experiment's constraint. The shipped model then **needs the sensitive
attribute at prediction time** (each group has its own, possibly randomised, threshold); BiFP's
model does not. Binary targets only; fairlearn supports ``equalized_odds`` (exact parity) and
``demographic_parity`` (relaxed to within tau) among fairprune's metrics.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.base import BaseEstimator, ClassifierMixin
from torch import Tensor, nn

from fairprune.fairness.metrics import METRICS
from fairprune.inference import logits_of
from fairprune.methods_spec import defaults
from fairprune.pruners.base import Outcome, ScoreThenFinetune
from fairprune.pruners.importance import MagnitudeImportance
from fairprune.selection import is_trivial
from fairprune.task import Task

__all__ = ["PostProcess", "GroupThresholds", "POSTPROCESS_CONSTRAINTS"]

POSTPROCESS_CONSTRAINTS = {"equalized_odds": "equalized_odds", "demographic_parity": "demographic_parity"}
"""fairprune metric -> fairlearn ``ThresholdOptimizer`` constraint."""


def binary_scores(logits: Tensor) -> np.ndarray:
    """One decision score per sample: the logit of a one-logit model, ``logit_1 - logit_0`` of a
    two-logit one. Raises for more classes (thresholds need a binary target)."""
    if logits.ndim == 1 or logits.shape[-1] == 1:
        return logits.reshape(-1).double().numpy()
    if logits.shape[-1] != 2:
        raise ValueError(
            f"post-processing thresholds need a binary classifier; got {logits.shape[-1]} logits per sample"
        )
    return (logits[:, 1] - logits[:, 0]).double().numpy()


class _Scores(ClassifierMixin, BaseEstimator):
    """The pruned model's scores as a fitted scikit-learn estimator (``X[:, 0]`` is the score)."""

    classes_ = np.array([0, 1])

    def fit(self, X: Any, y: Any) -> _Scores:  # noqa: N803 (scikit-learn's names)
        return self

    def decision_function(self, X: Any) -> np.ndarray:  # noqa: N803
        return np.asarray(X, dtype=float)[:, 0]

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        return (self.decision_function(X) > 0).astype(int)

    def __sklearn_is_fitted__(self) -> bool:
        return True


class GroupThresholds:
    """A fitted ``ThresholdOptimizer`` on a model's scores: ``(logits, groups) -> predictions``.

    Its randomised thresholds draw from a generator seeded with ``seed`` at every call, so the
    same inputs always give the same predictions.
    """

    def __init__(self, optimizer: ThresholdOptimizer, seed: int) -> None:
        self.optimizer, self.seed = optimizer, seed

    def __call__(self, logits: Tensor, groups: Tensor) -> Tensor:
        X = pd.DataFrame({"score": binary_scores(logits)})  # noqa: N806
        pred = self.optimizer.predict(X, sensitive_features=groups.numpy(), random_state=self.seed)
        return torch.as_tensor(np.asarray(pred), dtype=torch.long)


@dataclass(frozen=True)
class PostProcess(ScoreThenFinetune):
    """Magnitude pruning, ``finetune_steps`` of plain fine-tuning, then group thresholds fitted
    on the validation split under the experiment's constraint (fairlearn, ``prefit=True``).

    Attributes:
        finetune_steps: Fine-tuning iterations after pruning.
        grid_size: Threshold grid of ``ThresholdOptimizer``.
    """

    key = "postprocess"
    importance = MagnitudeImportance()
    finetune_steps: int = defaults("postprocess")["finetune_steps"]
    grid_size: int = defaults("postprocess")["grid_size"]
    needs_sensitive_attribute: ClassVar[bool] = True

    def prune(self, model: nn.Module, sparsity: float, task: Task) -> Outcome:
        objective = task.objective
        if objective is None or objective.metric not in POSTPROCESS_CONSTRAINTS:
            metric = None if objective is None else objective.metric
            raise ValueError(
                "post-processing (fairlearn's ThresholdOptimizer) supports the fairness metrics "
                f"{sorted(POSTPROCESS_CONSTRAINTS)}; got {metric!r}"
            )
        outcome = super().prune(model, sparsity, task)
        start = time.perf_counter()
        val = task.splits.val
        logits = logits_of(model, val, device=task.train.device)
        constraint = POSTPROCESS_CONSTRAINTS[objective.metric]
        optimizer = ThresholdOptimizer(
            estimator=_Scores(),
            constraints=constraint,
            objective="accuracy_score",
            grid_size=self.grid_size,
            prefit=True,
            predict_method="decision_function",
            tol=None if constraint == "equalized_odds" else objective.tolerance,
        )
        optimizer.fit(
            pd.DataFrame({"score": binary_scores(logits)}),
            val.y.numpy(),
            sensitive_features=val.groups.numpy(),
        )
        outcome.postprocessor = GroupThresholds(optimizer, task.seed)
        _log_final_state(outcome, model, task, logits, time.perf_counter() - start)
        return outcome


def _log_final_state(
    outcome: Outcome, model: nn.Module, task: Task, val_logits: Tensor, seconds: float
) -> None:
    """Append the post-processed state (on the checked validation samples) to the history, so
    that "iterations to a fair model" sees the model as it is shipped. ``val_logits``: the
    model's logits on the whole validation split (reused when the checks use all of it)."""
    assert outcome.postprocessor is not None and task.objective is not None
    val = task.validation
    logits = val_logits if val is task.splits.val else logits_of(model, val, device=task.train.device)
    pred = outcome.postprocessor(logits, val.groups)
    metric = METRICS[task.objective.metric]
    last = outcome.history[-1] if outcome.history else {}
    outcome.history.append(
        {
            "step": last.get("step", 0.0) + 1,
            "loss": math.nan,
            "val_accuracy": float((pred == val.y).float().mean()),
            "mask_hamming": 0.0,
            "trivial": float(is_trivial(val.y, pred)),
            "violation": float(metric(val.y, pred, groups=val.groups, n_groups=task.splits.n_groups)),
            "multiplier": math.nan,
            "iterations": float(outcome.train_iterations),
            "seconds": last.get("seconds", 0.0) + seconds,
        }
    )
