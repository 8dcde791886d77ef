"""CEAG (Hashemizadeh et al., "Balancing Act: Constraining Disparate Impact in Sparse Models",
ICLR 2024): prune, then fine-tune under one constraint per group on its *excess* accuracy
degradation, ``psi_g = R_g - R <= epsilon`` (``R_g``: the group's accuracy drop from the dense
model, ``R``: the overall drop).

One Lagrange multiplier per group, updated by dual ascent from the exact ``psi_g`` on the
validation split, while the weights follow the soft-accuracy surrogate (the paper's "proxy
constraints"). This method always constrains ``excess_degradation`` with its own ``epsilon``,
whatever the experiment's fairness metric is (which it is still measured and reported on); to
constrain BiFP or P&F group by group, set the experiment's ``fairness.metric =
"excess_degradation"``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from fairprune.fairness.objective import FairnessObjective
from fairprune.methods_spec import defaults
from fairprune.pruners.base import Outcome, ScoreThenFinetune
from fairprune.pruners.imp import IMP
from fairprune.pruners.importance import MagnitudeImportance, SurvivorsFirst
from fairprune.task import Task

__all__ = ["Ceag"]


@dataclass(frozen=True)
class Ceag(ScoreThenFinetune):
    """Magnitude (or IMP) pruning, then ``finetune_steps`` under per-group CEAG constraints.

    Attributes:
        epsilon: Tolerance on every group's excess accuracy degradation.
        dual_step: Step size eta of the multipliers' dual ascent (``None``: the experiment's
            ``fairness.dual_step``).
        finetune_steps: Constrained fine-tuning iterations.
        pruning: ``"magnitude"`` (one shot) or ``"imp"`` (IMP's rounds with ``round_steps``
            each, then the constrained fine-tuning; the weights IMP pruned stay pruned).
        round_steps: Training iterations per IMP round (``pruning="imp"`` only).
    """

    key = "ceag"
    importance = SurvivorsFirst(MagnitudeImportance())
    fair = True
    epsilon: float = defaults("ceag")["epsilon"]
    dual_step: float | None = defaults("ceag")["dual_step"]
    finetune_steps: int = defaults("ceag")["finetune_steps"]
    pruning: str = defaults("ceag")["pruning"]
    round_steps: int = defaults("ceag")["round_steps"]

    def before_scoring(self, model: nn.Module, sparsity: float, task: Task) -> Outcome:
        """IMP's rounds (``pruning="imp"``), with the same space fields."""
        outcome = Outcome()
        if self.pruning == "imp":
            imp = IMP(
                scope=self.scope,
                structure=self.structure,
                round_to=self.round_to,
                at_least=self.at_least,
                budget=self.budget,
                round_steps=self.round_steps,
            )
            outcome.add(imp.prune(model, sparsity, task))
        return outcome

    def finetune_objective(self, task: Task) -> FairnessObjective:
        """``excess_degradation`` within ``epsilon``, Lagrangian, with the experiment's dual
        step (or this method's), temperature and controller."""
        base = task.objective or FairnessObjective()
        step = base.dual_step if self.dual_step is None else self.dual_step
        return FairnessObjective(
            "excess_degradation", self.epsilon, "lagrangian", dual_step=step, temperature=base.temperature,
            controller=base.controller, kp=base.kp, ema_nu=base.ema_nu, windup_window=base.windup_window,
        )  # fmt: skip
