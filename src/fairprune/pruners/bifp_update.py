"""BiFP's update as an object that any training loop drives (in the manner of ``torch.ao.pruning``).

:class:`BiFPSparsifier` holds what BiFP learns besides the weights — the mask scores, their
optimiser and the fairness constraint (its multiplier) — and nothing of the loop. A loop calls::

    sparsifier.prepare(model)                  # masks on, scores from |theta|, g recorded
    loss = ce + sparsifier.fairness_term(logits, y, groups)
    loss.backward(); optimizer.step()          # the user's weights, optimizer, AMP, DDP
    sparsifier.step()                          # joint: the scores from this backward's g
    sparsifier.step(closure)                   # alternating: the scores from a second batch
    sparsifier.update_multiplier(val_loader)   # the dual step from the exact metric
    sparsifier.squash_mask()                   # a plain model: masks baked in (or slimmed)

The harness's ``bifp`` pruner (:class:`~fairprune.pruners.bifp.BiFP`) is one such loop; a user's
plain PyTorch loop and a DDP loop are others. What every method's loop update shares (the
constraint's dual step, ``fairness_term``, ``squash_mask``) is
:class:`~fairprune.pruners.sparsifier.FairSparsifier`'s. The score update (BiP's, Zhang et al. 2022)::

    g = d loss / d(m * theta)          # recorded on the masks during backward (summed over
                                       # micro-batches; averaged over ranks like DDP's gradients)
    grad_s = theta * g - (1 / gamma) * m * g * g
    s <- Adam(s, grad_s);  m <- TopK(s, k)

It runs at every step, so it is written for its cost: the scores are leaf parameters that share
one flat buffer (the top-k reads them without a copy), the masks are views of one flat buffer
(:class:`~fairprune.masks.MaskSlots`: a new mask is one copy), BiP's expression is a handful of
``torch._foreach_*`` ops over all layers, the scores' Adam runs through torch's functional form,
and the alternating schedule's upper pass asks autograd for ``g`` alone (no weight gradients).
Each of these gives the same numbers as the plain path (``tests/test_hot_path.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, overload

import torch
from torch import Tensor, nn
from torch.optim.adam import adam as functional_adam

from fairprune.distributed import all_reduce_mean_, is_distributed
from fairprune.fairness.constraints import Constraint
from fairprune.masks import MaskSlots, prunable_parameters
from fairprune.methods_spec import check_params
from fairprune.model_io import Features
from fairprune.prunable import Prunable
from fairprune.pruners.space import Scores, Space
from fairprune.pruners.sparsifier import FairSparsifier

__all__ = ["BiFPSparsifier", "SCORE_INITS", "initial_scores"]

SCORE_INITS = ("magnitude", "random", "uniform")


def initial_scores(model: nn.Module, space: Space, init: str, seed: int) -> Scores:
    """Mask scores before training: ``|theta|`` (``"magnitude"``), ``|N(0,1)|`` (``"random"``)
    or ``U(0,1)`` (``"uniform"``), drawn with ``seed``, in ``space`` (per weight or per channel)."""
    if init == "magnitude":
        return space.magnitude(model)
    if init not in SCORE_INITS:
        raise ValueError(f"unknown score init {init!r}; expected one of {SCORE_INITS}")
    generator = torch.Generator().manual_seed(seed)
    return space.random(model, generator, "normal" if init == "random" else "uniform")


class BiFPSparsifier(FairSparsifier):
    """BiFP's mask scores, their Adam optimiser and the fairness constraint, driven by any loop.

    Args:
        sparsity: Fraction of the prunable weights to remove, in [0, 1).
        constraint: The fairness constraint (``None``: plain bi-level pruning, BiP).
        mask_lr: Adam learning rate on the scores (they start with unit RMS).
        gamma: Lower-level regularisation of BiP's implicit gradient (larger: smaller correction).
        mask_fairness: lambda_m, weight of the fairness term in the mask (upper) level.
        weight_fairness: lambda_w, weight of the fairness term in the weight (lower) level.
        structure: ``"unstructured"`` (a score per weight) or ``"channel"`` (a score per channel).
        scope: ``"global"`` or ``"layer"`` top-k (unstructured only).
        prunable: Which weights may be pruned (names or patterns, layer types, or a predicate;
            see :func:`fairprune.prunable.select_prunable`); ``None``: a choice already recorded
            on the model (``fairprune.prune``'s), else every supported weight but embeddings.
            :attr:`coverage` names what is left dense after :meth:`prepare`.
    """

    def __init__(
        self,
        sparsity: float,
        constraint: Constraint | None = None,
        *,
        mask_lr: float = 0.05,
        gamma: float = 1.0,
        mask_fairness: float = 1.0,
        weight_fairness: float = 1.0,
        structure: str = "unstructured",
        scope: str = "global",
        prunable: Prunable = None,
    ) -> None:
        super().__init__(sparsity, constraint, structure=structure, scope=scope, prunable=prunable)
        given = {"gamma": gamma, "mask_lr": mask_lr, "structure": structure, "scope": scope}
        check_params("bifp", {**given, "mask_fairness": mask_fairness, "weight_fairness": weight_fairness})
        self.mask_lr, self.gamma = mask_lr, gamma
        self.mask_fairness, self.weight_fairness = mask_fairness, weight_fairness
        self.steps = 0
        self._upper = False  # inside an alternating step's closure

    def prepare(
        self,
        model: nn.Module,
        *,
        scores: Scores | None = None,
        init: str = "magnitude",
        seed: int = 0,
        space: Space | None = None,
        example_input: Features | None = None,
    ) -> None:
        """Put the masks on ``model`` (before wrapping it in DDP) and start recording ``g``.

        Args:
            model: The classifier (or its DDP wrapper), on the device it trains on.
            scores: Initial scores (default: from ``init``); scaled to unit RMS either way.
            init: ``"magnitude"``, ``"random"`` or ``"uniform"`` (see :func:`initial_scores`).
            seed: Seed of a random ``init``.
            space: Where the scores live (default: from ``structure`` and ``scope``).
            example_input: One input batch (a tensor, or a dict / tuple of tensors), to trace the
                channel groups and check the slimmed model (``structure="channel"``).
        """
        module = self._attach(model, space, example_input)
        space = self.space
        if scores is None:
            scores = initial_scores(module, space, init, seed)
        # unit RMS over all scores: keeps the global ranking, makes mask_lr scale-free
        rms = torch.sqrt(torch.cat([s.reshape(-1).float() ** 2 for s in scores.values()]).mean())
        device = (
            next(module.parameters()).device if space.structure == "unstructured" else torch.device("cpu")
        )
        if space.structure == "unstructured":  # in the masks' order: top-k reads them uncopied
            scores = {n: scores[n] for n in prunable_parameters(module) if n in scores}
        # every score a slice of one flat buffer (leaf parameters all the same)
        flat = torch.cat([s.reshape(-1).float() for s in scores.values()]) / rms.clamp_min(1e-12)
        parts = flat.to(device).split([s.numel() for s in scores.values()])
        self.scores = {
            n: nn.Parameter(part.view(s.shape)) for (n, s), part in zip(scores.items(), parts, strict=True)
        }
        # fused (CPU, CUDA): one kernel for the whole update of all score tensors (torch's CPU
        # default steps one tensor at a time); the same scores, bit for bit, on the default run.
        # Measured on the Adult MLP: joint step 1.91 -> 1.75 x an SGD step.
        params = list(self.scores.values())
        fused = all(p.device.type in ("cpu", "cuda") for p in params)
        self.optimizer = torch.optim.Adam(
            params, lr=self.mask_lr, fused=fused, foreach=None if fused else True
        )
        space.apply(module, dict(self.scores), self.sparsity, gate=True)
        self._slots = MaskSlots(module)  # the hot path: theta, m and g as flat vectors
        self._slots.capture(True)

    @property
    def fairness_weight(self) -> float:
        """lambda of the level being trained: lambda_m inside :meth:`step`'s closure, else lambda_w."""
        return self.mask_fairness if self._upper else self.weight_fairness

    @overload
    def step(self, closure: None = None) -> None: ...

    @overload
    def step(self, closure: Callable[[], Tensor]) -> Tensor: ...

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """Update the mask scores and re-threshold the masks; call after the weights' step.

        Without ``closure`` (the joint schedule): from the ``g`` of the backward passes since the
        last step (needs ``mask_fairness == weight_fairness``: one loss serves both levels).
        With ``closure`` (the paper's alternating schedule): ``closure()`` returns the upper
        loss on a second batch (built with :meth:`fairness_term`, now lambda_m); this runs its
        backward, updates the scores from its ``g`` alone, and clears the weights' gradients it
        left. Returns the closure's loss.
        """
        model, loss = self.model, None  # (raises unless prepared)
        if closure is not None:
            # drop g of the weights' pass; keep the effective weights to ask autograd for g alone
            self._slots.capture(True, keep_outputs=True)
            self._upper = True
            try:
                loss = closure()
            except BaseException:
                self._slots.capture(True)  # keep no effective weights after a failed closure
                raise
            finally:
                self._upper = False
            outputs = self._slots.outputs()
            if is_distributed() or not outputs:  # DDP's reducer runs in backward: every rank must
                loss.backward()
            else:  # g only: no gradients of the weights, biases or BatchNorm, which are dropped
                torch.autograd.grad(loss, outputs, allow_unused=True)
        elif self.mask_fairness != self.weight_fairness:
            raise ValueError(
                "a joint step (no closure) takes the scores' gradient from the weights' loss, which "
                f"needs mask_fairness == weight_fairness; got {self.mask_fairness} and "
                f"{self.weight_fairness}. Pass a closure on a second batch (the alternating schedule)"
            )
        self._update_scores()
        if closure is not None:
            model.zero_grad(set_to_none=True)  # the upper pass's weight gradients are not a step
        return loss

    def _update_scores(self) -> None:
        slots = self._slots
        g = slots.grads()
        all_reduce_mean_(g)  # under DDP: the global batch's g on every rank
        # a NaN or inf anywhere makes its tensor's L1 norm non-finite: one foreach reduction and
        # one host sync per step (an overflowing norm is checked entry by entry)
        finite = bool(torch.stack(torch._foreach_norm(g, 1)).isfinite().all())
        if not (finite or all(bool(torch.isfinite(t).all()) for t in g)):
            raise ValueError(
                "the recorded mask gradient is not finite; expected finite gradients (with a "
                "float16 GradScaler, scaled gradients are not supported: use bfloat16 autocast)"
            )
        # theta * g - m * g * g / gamma, one foreach op per term over all layers
        correction = torch._foreach_mul(slots.masks(), g)
        torch._foreach_mul_(correction, g)
        if self.gamma != 1.0:
            torch._foreach_div_(correction, self.gamma)
        per_weight = torch._foreach_mul([w.detach() for w in slots.weights], g)
        torch._foreach_sub_(per_weight, correction)
        grads = self.space.mask_grads(dict(zip(slots.names, per_weight, strict=True)))
        for name, grad in grads.items():
            score = self.scores[name]
            score.grad = grad.to(device=score.device, dtype=score.dtype)
        if not _functional_adam_step(self.optimizer):
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        slots.capture(True)  # clears g for the next step
        self.space.apply(self.model, dict(self.scores), self.sparsity, gate=True, slots=slots)
        self.steps += 1

    def finalize(self) -> None:
        """Stop recording ``g`` and turn channel gates into full channel masks (masks stay on)."""
        self._slots.capture(False)
        super().finalize()

    def state_dict(self) -> dict[str, Any]:
        """Scores, their optimiser's state, the constraint's multipliers and the step count."""
        return {
            "scores": {n: s.detach().clone() for n, s in self.scores.items()},
            "optimizer": self.optimizer.state_dict(),
            "constraint": self._constraint_state(),
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` into a prepared sparsifier (and re-threshold the masks)."""
        if set(state["scores"]) != set(self.scores):
            raise ValueError(
                f"sparsifier state has scores for {sorted(state['scores'])}; expected {sorted(self.scores)}"
            )
        self._load_constraint_state(state["constraint"])  # first: it checks before changing anything
        with torch.no_grad():
            for name, score in self.scores.items():
                score.copy_(state["scores"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])
        self.space.apply(self.model, dict(self.scores), self.sparsity, gate=True)


@torch.no_grad()
def _functional_adam_step(optimizer: torch.optim.Optimizer) -> bool:
    """One step of a plain :class:`torch.optim.Adam` through its functional form, on the state
    it holds: the same update (the same kernel) without ``Optimizer.step``'s hooks, profiler
    records and compiler guards, which cost about twice the fused kernel itself on 100k scores
    (measured on this project's Adult MLP). Returns ``False``, doing nothing, for any other
    optimizer or before the state exists (the first step): then ``optimizer.step()`` runs."""
    if type(optimizer) is not torch.optim.Adam or len(optimizer.param_groups) != 1:
        return False
    group = optimizer.param_groups[0]
    params = [p for p in group["params"] if p.grad is not None]
    states = [optimizer.state.get(p) or {} for p in params]
    if not params or any("exp_avg" not in s for s in states) or group["amsgrad"]:
        return False
    if any(torch.is_complex(p) for p in params) or group["differentiable"]:
        return False
    beta1, beta2 = group["betas"]
    functional_adam(
        params,
        [p.grad for p in params],
        [s["exp_avg"] for s in states],
        [s["exp_avg_sq"] for s in states],
        [],
        [s["step"] for s in states],
        foreach=group["foreach"],
        capturable=group["capturable"],
        fused=group["fused"],
        decoupled_weight_decay=group.get("decoupled_weight_decay", False),
        amsgrad=False,
        beta1=beta1,
        beta2=beta2,
        lr=group["lr"],
        weight_decay=group["weight_decay"],
        eps=group["eps"],
        maximize=group["maximize"],
    )
    return True
