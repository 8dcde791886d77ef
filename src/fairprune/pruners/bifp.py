"""BiFP: bi-level fair pruning (Dai et al., arXiv 2312.10181), on BiP's update (Zhang et al.,
NeurIPS 2022).

Upper level: real mask scores ``s``; the forward pass uses ``m = TopK(s, k)``. Lower level: the
weights ``theta`` under ``m``. Each level's loss is ``CE + lambda_level * c * Phi`` with ``Phi``
the fairness surrogate and ``c`` the penalty weight or the Lagrange multiplier.

Mask gradient (straight-through top-k plus BiP's implicit-gradient correction, with the
lower level regularised by ``gamma/2 ||theta||^2`` and the loss Hessian in ``theta`` dropped)::

    g = d loss / d(m * theta)          # one backward pass, recorded on the mask parametrization
    grad_s = theta * g - (1 / gamma) * m * g * g

Structured (``structure="channel"``): one score per channel. During the bi-level phase the mask
is a channel *gate* on the consumers' input slices (:meth:`ChannelSpace.apply` with ``gate=True``:
the same outputs as full channel masks, but a dropped channel is still computed, so its straight-
through gradient is not zero); the score gradient is the per-weight expression summed over those
slices (:meth:`ChannelSpace.mask_grads`). Before fine-tuning the gates become full channel masks
(producers, biases, BatchNorm), as every other structured method uses.

The update itself (scores, their optimiser, the constraint) is
:class:`~fairprune.pruners.bifp_update.BiFPSparsifier`, which a user's own loop drives the same
way; :meth:`BiFP.prune` is the harness's loop around it (batches, validation, checkpoint selection,
fine-tuning).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from torch import Tensor, nn

from fairprune.data.base import GroupData
from fairprune.distributed import wrap_ddp
from fairprune.engine import (
    Task,
    batch_loss,
    clipped_step,
    make_optimizer,
    prepare_model,
    run_loop,
    selector_for,
    train_weights,
)
from fairprune.methods_spec import defaults
from fairprune.pruners.base import Outcome, PrunerBase
from fairprune.pruners.bifp_update import BiFPSparsifier
from fairprune.pruners.importance import SnipImportance

__all__ = ["BiFP"]


@dataclass(frozen=True)
class BiFP(PrunerBase):
    """Bi-level fair pruning.

    Attributes:
        scope, structure, round_to: Where the mask scores live (see
            :class:`~fairprune.pruners.base.PrunerBase`).
        mask_fairness: lambda_m, weight of the fairness term in the upper (mask) level.
        weight_fairness: lambda_w, weight of the fairness term in the lower (weight) level.
        steps: Bi-level steps (an alternating step costs two iterations, a joint step one).
        schedule: ``"alternating"`` (the paper's: lower then upper on separate batches) or
            ``"joint"`` (both gradients from one backward pass; needs lambda_m == lambda_w).
        mask_lr: Adam learning rate on the scores (scores start with unit RMS).
        gamma: Lower-level regularisation in BiP's implicit gradient; larger = smaller correction.
        mask_init: Initial scores: ``"magnitude"`` (|theta|), ``"random"`` (|N(0,1)|),
            ``"uniform"`` (U(0,1)) or ``"snip"`` (|theta * dL/dtheta|).
        finetune_steps: Weight-only fine-tuning with the mask fixed, after the bi-level phase.
            500, as magnitude pruning's (was 100): on the one-call UTKFace case (issue 18,
            ``configs/faces/one_call.py``) 55 scaled steps left BiFP 2.2 points of accuracy and
            1.7 of worst-group accuracy below magnitude pruning; 277 put it 0.3 and 1.2 above.
        dual_step: Step size eta of the multiplier's dual ascent for this method (``None``: the
            experiment's ``fairness.dual_step``; Lagrangian mode only).
    """

    key = "bifp"
    mask_fairness: float = defaults("bifp")["mask_fairness"]
    weight_fairness: float = defaults("bifp")["weight_fairness"]
    steps: int = defaults("bifp")["steps"]
    schedule: str = defaults("bifp")["schedule"]
    mask_lr: float = defaults("bifp")["mask_lr"]
    gamma: float = defaults("bifp")["gamma"]
    mask_init: str = defaults("bifp")["mask_init"]
    finetune_steps: int = defaults("bifp")["finetune_steps"]
    dual_step: float | None = defaults("bifp")["dual_step"]

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.schedule == "joint" and self.mask_fairness != self.weight_fairness:
            raise ValueError(
                "the joint schedule takes both gradients from one loss, so it needs "
                f"mask_fairness == weight_fairness; got {self.mask_fairness} and {self.weight_fairness}"
            )

    def prune(self, model: nn.Module, sparsity: float, task: Task) -> Outcome:
        prepare_model(model, task.train)
        space = self.space(model, task)
        outcome = Outcome(space=space)
        scores = None
        if self.mask_init == "snip":
            snip = SnipImportance()
            scores = snip(model, space, task)
            outcome.train_iterations += snip.passes  # the scoring passes
        fair = task.objective is not None and (self.mask_fairness > 0 or self.weight_fairness > 0)
        objective = task.objective
        if objective is not None and self.dual_step is not None:
            objective = replace(objective, dual_step=self.dual_step)
        sparsifier = BiFPSparsifier(
            sparsity,
            task.constraint(objective) if fair else None,
            mask_lr=self.mask_lr,
            gamma=self.gamma,
            mask_fairness=self.mask_fairness,
            weight_fairness=self.weight_fairness,
        )
        init = "magnitude" if self.mask_init == "snip" else self.mask_init  # snip: scores given
        sparsifier.prepare(model, scores=scores, init=init, seed=task.seed, space=space)
        constraint = sparsifier.constraint
        weight_opt = make_optimizer([p for p in model.parameters() if p.requires_grad], task.train)
        net = wrap_ddp(model)  # masks on first; under torchrun the weights' gradients are averaged

        def loss_of(batch: GroupData) -> Tensor:  # lambda_w, or lambda_m inside the upper closure
            return batch_loss(net, batch, task, constraint, fairness_weight=sparsifier.fairness_weight)

        def alternating(next_batch: Callable[[], GroupData]) -> tuple[float, int]:
            loss_w = loss_of(next_batch())  # lower: weights
            weight_opt.zero_grad(set_to_none=True)
            loss_w.backward()
            clipped_step(weight_opt, task.train)
            loss_m = sparsifier.step(lambda: loss_of(next_batch()))  # upper: scores, second batch
            return float(loss_m.detach()), 2

        def joint(next_batch: Callable[[], GroupData]) -> tuple[float, int]:
            loss = loss_of(next_batch())
            weight_opt.zero_grad(set_to_none=True)
            loss.backward()
            clipped_step(weight_opt, task.train)
            sparsifier.step()
            return float(loss.detach()), 1

        step_fn = alternating if self.schedule == "alternating" else joint
        total = self.steps + self.finetune_steps  # the learning-rate schedule spans both phases
        selector = selector_for(constraint, task.train)
        try:
            loop = run_loop(
                model, task, self.steps, step_fn, constraint=constraint, desc="bifp", selector=selector,
                optimizers=[weight_opt, sparsifier.optimizer], schedule_span=(0, total),
            )  # fmt: skip
        finally:
            sparsifier.finalize()  # stop recording g; gates (of the chosen state) -> channel masks
        outcome.add(loop)
        if self.finetune_steps > 0:
            outcome.add(
                train_weights(
                    model,
                    task,
                    self.finetune_steps,
                    constraint=constraint,  # measured for selection even when lambda_w = 0
                    fairness_weight=self.weight_fairness,
                    desc="bifp finetune",
                    selector=selector,
                    schedule_span=(self.steps, total),  # one schedule over both phases
                )
            )
            space.finalize(model)  # the chosen state may be from the bi-level phase
        return outcome
