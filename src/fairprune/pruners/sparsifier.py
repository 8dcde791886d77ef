"""A method's update as an object that any training loop drives (in the manner of ``torch.ao.pruning``).

Every method that prunes inside a training loop offers the same calls, so a user's plain PyTorch
loop (or a DDP one) and the harness's loop drive it alike::

    sparsifier.prepare(model)                  # masks on (before any DDP wrapping)
    loss = ce + sparsifier.fairness_term(logits, y, groups)
    loss.backward(); optimizer.step()          # the user's weights, optimizer, AMP, DDP
    sparsifier.step()                          # what the method learns besides the weights
    sparsifier.update_multiplier(val_loader)   # the constraint's dual step from the exact metric
    model = sparsifier.squash_mask()           # a plain model: masks baked in (or slimmed)

:class:`FairSparsifier` holds what they share — the target sparsity, the fairness constraint (its
multipliers and their controller: :meth:`~fairprune.fairness.Constraint.update`), the masked
model and how it becomes a plain module. :class:`ScoreSparsifier` is the update of the methods
that score once and fine-tune (magnitude, random, FPGM, or any scores a user computed; with a
constraint: prune-then-fair's fine-tuning); BiFP's is
:class:`~fairprune.pruners.bifp_update.BiFPSparsifier`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fairprune.batches import model_inputs
from fairprune.data.base import GroupData
from fairprune.distributed import all_gather_cat, unwrap
from fairprune.fairness.constraints import Constraint
from fairprune.inference import classes_of
from fairprune.masks import bake_masks
from fairprune.methods_spec import check_params
from fairprune.model_io import Features, forward_logits
from fairprune.prunable import SELECTION_ATTRIBUTE, Coverage, Prunable, coverage, select_prunable
from fairprune.pruners.importance import FpgmImportance, Importance, MagnitudeImportance, RandomImportance
from fairprune.pruners.space import ChannelSpace, Scores, Space, WeightSpace

__all__ = ["FairSparsifier", "ScoreSparsifier", "LOOP_IMPORTANCES"]

# the criteria a user's loop can score with: read off the weights, no training batches
LOOP_IMPORTANCES = ("magnitude", "random", "fpgm")


class FairSparsifier:
    """What every method's loop update shares: the sparsity, the constraint and the masked model.

    Args:
        sparsity: Fraction of the prunable weights to remove, in [0, 1).
        constraint: The fairness constraint (``None``: pruning without one).
        structure: ``"unstructured"`` (a unit per weight) or ``"channel"`` (a unit per channel).
        scope: ``"global"`` or ``"layer"`` top-k (unstructured only).
        prunable: Which weights may be pruned (see :func:`fairprune.prunable.select_prunable`);
            ``None``: a choice already recorded on the model (``fairprune.prune``'s), else every
            supported weight but embeddings. :attr:`coverage` names what is left dense.
    """

    def __init__(
        self,
        sparsity: float,
        constraint: Constraint | None = None,
        *,
        structure: str = "unstructured",
        scope: str = "global",
        prunable: Prunable = None,
    ) -> None:
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1); received {sparsity}")
        check_params(None, {"structure": structure, "scope": scope})  # the registry's declaration
        self.sparsity, self.constraint = sparsity, constraint
        self.structure, self.scope, self.prunable = structure, scope, prunable
        self.coverage: Coverage | None = None
        self._model: nn.Module | None = None
        self._space: Space | None = None

    def _attach(self, model: nn.Module, space: Space | None, example_input: Features | None) -> nn.Module:
        """Record the prunable weights and the space on the unwrapped ``model``; return it."""
        module = unwrap(model)
        if self.prunable is not None or SELECTION_ATTRIBUTE not in module.__dict__:
            select_prunable(module, self.prunable)  # else: keep the choice recorded on the model
        self.coverage = coverage(module)
        if space is None and self.structure == "channel":
            if example_input is None:
                raise ValueError("structure='channel' needs example_input= (one input batch, for tracing)")
            space = ChannelSpace(module, example_input)
        elif space is None:
            space = WeightSpace(self.scope)
        self._space, self._model = space, module
        return module

    @property
    def model(self) -> nn.Module:
        """The prepared model (unwrapped from DDP)."""
        if self._model is None:
            raise RuntimeError(f"call {type(self).__name__}.prepare(model) first")
        return self._model

    @property
    def space(self) -> Space:
        """Where the prepared model's masks live (per weight, or per channel group)."""
        if self._space is None:
            raise RuntimeError(f"call {type(self).__name__}.prepare(model) first")
        return self._space

    @property
    def fairness_weight(self) -> float:
        """lambda, the weight of the fairness term in the loss being trained."""
        return 1.0

    def fairness_term(self, logits: Tensor, y: Tensor, groups: Tensor) -> Tensor:
        """The fairness term to add to the loss: ``lambda * c * Phi`` (``c``: the penalty weight
        or the multiplier), float32; under ``torchrun``, Phi of the global batch. A zero without a
        constraint."""
        if self.constraint is None:
            return logits.float().sum() * 0.0
        return self.constraint.term(logits, y, groups, weight=self.fairness_weight)

    @torch.no_grad()
    def update_multiplier(
        self, loader: Iterable[Any] | GroupData, *, y_pred_dense: Tensor | None = None
    ) -> float:
        """The dual step of the constraint from the exact metric of the model's predictions on
        ``loader`` (batches ``(x, y, groups)``, or one in-memory split; under ``torchrun``, each
        rank's shard, gathered).

        Returns:
            The exact violation (NaN without a constraint, which then is a no-op).
        """
        model = self.model
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        parts: list[tuple[Tensor, Tensor, Tensor]] = []
        batches = [(loader.x, loader.y, loader.groups)] if isinstance(loader, GroupData) else loader
        for batch in batches:
            if not (isinstance(batch, (tuple, list)) and len(batch) == 3):
                raise ValueError(
                    "update_multiplier expects batches (x, y, groups) from its loader (or a GroupData "
                    f"split); received a {type(batch).__name__}"
                )
            x, y, groups = batch
            logits = forward_logits(model, model_inputs(x, str(device))).float().cpu()
            pred = classes_of(logits)
            parts.append((torch.as_tensor(y).long().cpu(), pred, torch.as_tensor(groups).long().cpu()))
        model.train(was_training)
        if not parts:
            raise ValueError("update_multiplier received an empty loader; expected (x, y, groups) batches")
        y, pred, groups = (all_gather_cat(torch.cat(p)) for p in zip(*parts, strict=True))
        if self.constraint is None:
            return float("nan")
        return float(np.max(self.constraint.update(y, pred, groups, y_pred_dense=y_pred_dense)))

    def finalize(self) -> None:
        """Turn channel gates into full channel masks (masks stay on)."""
        self.space.finalize(self.model)

    def squash_mask(self, *, slim: bool = False) -> nn.Module:
        """The pruned model as a plain ``nn.Module``: masks baked into the weights (in place), or
        for ``structure="channel"`` with ``slim``, a new smaller model without the removed channels."""
        self.finalize()
        if slim:
            selection = self.space.selection(self.model)
            if selection is None:
                raise ValueError("slim=True needs structure='channel'; unstructured masks are baked in")
            return selection.slim(self.model)
        return bake_masks(self.model)

    def _constraint_state(self) -> dict[str, Any] | None:
        return None if self.constraint is None else self.constraint.state_dict()

    def _load_constraint_state(self, state: dict[str, Any] | None) -> None:
        if (state is None) != (self.constraint is None):
            raise ValueError("sparsifier state and this sparsifier disagree on having a constraint")
        if self.constraint is not None and state is not None:
            self.constraint.load_state_dict(state)


class ScoreSparsifier(FairSparsifier):
    """Score once, mask the lowest, fine-tune under the constraint: the loop update of magnitude,
    random and FPGM pruning (and of their fair fine-tuning, as in prune-then-fair), and of any
    scores a user computed. The harness's score-then-fine-tune methods
    (:class:`~fairprune.pruners.base.ScoreThenFinetune`) prepare this same object.

    Args:
        sparsity: Fraction of the prunable weights to remove, in [0, 1).
        constraint: The fairness constraint of the fine-tuning (``None``: plain fine-tuning).
        importance: ``"magnitude"``, ``"random"`` (drawn from ``prepare``'s ``seed``) or
            ``"fpgm"`` (channels only): criteria read off the weights. For a criterion that reads
            training batches (SNIP, FairGRAPE) pass its scores to :meth:`prepare`.
        fairness_weight: lambda, the weight of the fairness term in the fine-tuning loss.
        structure: As for :class:`FairSparsifier`.
        scope: As for :class:`FairSparsifier`.
        prunable: As for :class:`FairSparsifier`.
    """

    def __init__(
        self,
        sparsity: float,
        constraint: Constraint | None = None,
        *,
        importance: str = "magnitude",
        fairness_weight: float = 1.0,
        structure: str = "unstructured",
        scope: str = "global",
        prunable: Prunable = None,
    ) -> None:
        super().__init__(sparsity, constraint, structure=structure, scope=scope, prunable=prunable)
        if importance not in LOOP_IMPORTANCES:
            raise ValueError(f"unknown importance {importance!r}; expected one of {LOOP_IMPORTANCES}")
        if importance == "fpgm" and structure != "channel":
            raise ValueError("importance='fpgm' ranks filters; expected structure='channel'")
        if fairness_weight < 0:
            raise ValueError(f"fairness_weight must be >= 0; received {fairness_weight}")
        self.importance, self._weight = importance, float(fairness_weight)

    @property
    def fairness_weight(self) -> float:
        return self._weight

    def prepare(
        self,
        model: nn.Module,
        *,
        scores: Scores | None = None,
        seed: int = 0,
        space: Space | None = None,
        example_input: Features | None = None,
    ) -> None:
        """Score the units of ``model`` (or take ``scores``) and put the masks on (before any
        DDP wrapping); they stay fixed while the loop fine-tunes the weights.

        Args:
            model: The classifier (or its DDP wrapper), on the device it trains on.
            scores: Scores per unit of the space (highest kept), instead of :attr:`importance`'s.
            seed: Seed of ``importance="random"``.
            space: Where the units live (default: from ``structure`` and ``scope``).
            example_input: One input batch, to trace the channel groups (``structure="channel"``).
        """
        module = self._attach(model, space, example_input)
        if scores is None:
            scores = self._criterion(seed)(module, self.space, None)
        self.space.apply(module, scores, self.sparsity)

    def _criterion(self, seed: int) -> Importance:
        if self.importance == "random":
            return RandomImportance(seed=seed)
        return FpgmImportance() if self.importance == "fpgm" else MagnitudeImportance()

    def step(self) -> None:
        """Nothing to learn besides the weights: the masks stay as :meth:`prepare` set them (the
        call is here so that one loop drives every method's update)."""
        _ = self.model  # (raises unless prepared)

    def state_dict(self) -> dict[str, Any]:
        """The constraint's multipliers with their controller's state (the masks are in the
        model's own state)."""
        return {"constraint": self._constraint_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` into a prepared sparsifier."""
        self._load_constraint_state(state["constraint"])
