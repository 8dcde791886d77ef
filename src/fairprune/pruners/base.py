"""The pruner interface and the helpers every method shares.

A pruner is a frozen dataclass whose fields are its hyperparameters, with one method,
``prune(model, sparsity, task) -> Outcome``: it leaves ``model`` masked (and trained, where the
method trains) and says what it used. :func:`run_pruner` times it and checks the sparsity.
:class:`ScoreThenFinetune` is the pruner of the methods that score once (an importance from
:mod:`fairprune.pruners.importance`), mask the lowest scores and fine-tune.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from typing import ClassVar, Protocol

import torch
from torch import nn

from fairprune.batches import example_input
from fairprune.engine import LoopResult, Task, train_weights
from fairprune.fairness.objective import FairnessObjective
from fairprune.inference import Postprocessor
from fairprune.masks import Masks, get_masks
from fairprune.methods_spec import SPACE_DEFAULTS, check_params
from fairprune.pruners.importance import Importance
from fairprune.pruners.space import ChannelSelection, ChannelSpace, Scores, Space, WeightSpace
from fairprune.pruners.sparsifier import ScoreSparsifier

__all__ = [
    "PrunerBase",
    "Pruner",
    "Outcome",
    "PruneResult",
    "run_pruner",
    "check_sparsity_arg",
    "prune_and_finetune",
    "ScoreThenFinetune",
]


@dataclass
class Outcome:
    """What a pruner did: training iterations, logged history, whether tau was met on val, and
    the space its masks live in (``None``: unstructured, global)."""

    train_iterations: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    feasible: bool | None = None
    space: Space | None = None
    postprocessor: Postprocessor | None = None  # group thresholds applied to the model's logits
    selection: str | None = None  # which state the last loop restored, and why

    def add(self, phase: LoopResult | Outcome, *, sparsity: float | None = None) -> Outcome:
        """Append a training phase; its history's steps, iterations and seconds continue this
        outcome's counts (iterations: all spent so far, scoring passes included). ``sparsity``:
        the phase trained below the method's target (IMP's early rounds, fair_then_prune's dense
        phase) at this sparsity; its rows record it, so that they never count as a pruned model
        (:func:`fairprune.sweep.cost.first_fair_checkpoint`)."""
        iterations = phase.iterations if isinstance(phase, LoopResult) else phase.train_iterations
        last = self.history[-1] if self.history else {}
        offsets = {
            "step": last.get("step", 0.0),
            "iterations": float(self.train_iterations),
            "seconds": last.get("seconds", 0.0),
        }
        self.train_iterations += iterations
        tag = {} if sparsity is None else {"sparsity": float(sparsity)}
        self.history.extend(
            {**row, **{k: row[k] + offset for k, offset in offsets.items() if k in row}, **tag}
            for row in phase.history
        )
        if phase.feasible is not None:
            self.feasible = phase.feasible
        if phase.selection is not None:
            self.selection = phase.selection
        if isinstance(phase, Outcome) and phase.space is not None:
            self.space = phase.space
        return self


class Pruner(Protocol):
    @property
    def scope(self) -> str: ...

    @property
    def structure(self) -> str: ...

    def prune(self, model: nn.Module, sparsity: float, task: Task) -> Outcome: ...


@dataclass
class PruneResult:
    """The masks a pruner produced, with its cost (iterations and wall time), for a
    structured pruner the channels it kept, and for a post-processing one the group thresholds
    its predictions go through (the model then needs the sensitive attribute to predict)."""

    masks: Masks
    train_iterations: int
    wall_seconds: float
    history: list[dict[str, float]]
    feasible: bool | None
    channels: ChannelSelection | None = None
    postprocessor: Postprocessor | None = None
    selection: str | None = None  # which state was restored, and why (None: the method does not select)


def check_sparsity_arg(sparsity: float) -> None:
    if not (isinstance(sparsity, (int, float)) and 0.0 <= float(sparsity) < 1.0):
        raise ValueError(f"sparsity must be a number in [0, 1), got {sparsity!r}")


def run_pruner(pruner: Pruner, model: nn.Module, sparsity: float, task: Task) -> PruneResult:
    """Prune ``model`` in place with ``pruner``; time it and check the achieved sparsity
    (exact for unstructured masks, to the nearest channel for structured ones)."""
    check_sparsity_arg(sparsity)
    torch.manual_seed(task.seed)
    start = time.perf_counter()
    outcome = pruner.prune(model, sparsity, task)
    wall = time.perf_counter() - start
    space = outcome.space or WeightSpace(pruner.scope)
    space.check(model, sparsity)
    return PruneResult(
        get_masks(model),
        outcome.train_iterations,
        wall,
        outcome.history,
        outcome.feasible,
        space.selection(model),
        outcome.postprocessor,
        outcome.selection,
    )


def prune_and_finetune(
    model: nn.Module,
    space: Space,
    scores: Scores,
    sparsity: float,
    task: Task,
    *,
    finetune_steps: int,
    fair: bool,
    desc: str,
    objective: FairnessObjective | None = None,
) -> Outcome:
    """Mask the lowest scores in ``space``, then fine-tune the weights (with the fairness term
    if ``fair``: the task's objective, or ``objective`` when given): the loop update a user's
    loop drives (:class:`~fairprune.pruners.sparsifier.ScoreSparsifier`), driven by the
    harness's loop."""
    constraint = task.constraint(objective) if fair and finetune_steps > 0 else None
    sparsifier = ScoreSparsifier(sparsity, constraint)
    sparsifier.prepare(model, scores=scores, space=space)
    outcome = Outcome(space=space)
    if finetune_steps > 0:
        outcome.add(train_weights(model, task, finetune_steps, constraint=sparsifier.constraint, desc=desc))
    return outcome


@dataclass(frozen=True)
class PrunerBase:
    """The fields every pruner shares: where its scores live.

    Attributes:
        scope: Unstructured top-k over all weights (``"global"``) or per layer (``"layer"``).
        structure: ``"unstructured"`` (one score per weight) or ``"channel"`` (one score per
            output channel of each dependency group; the model can be slimmed afterwards).
        round_to: Channel mode only: kept channels per group are a multiple of this.
        at_least: Channel mode only: never remove fewer weights than the target (default: the
            channel count nearest to it).
        budget: Channel mode only: what ``sparsity`` is a fraction of: ``"params"`` (the
            prunable weights) or ``"flops"`` (the prunable layers' FLOPs, each channel counted
            with the output size of its layers).
    """

    key: ClassVar[str | None] = None  # its registry key: fields, defaults and ranges declared there

    scope: str = SPACE_DEFAULTS["scope"]
    structure: str = SPACE_DEFAULTS["structure"]
    round_to: int = SPACE_DEFAULTS["round_to"]
    at_least: bool = SPACE_DEFAULTS["at_least"]
    budget: str = SPACE_DEFAULTS["budget"]

    def __post_init__(self) -> None:
        """Each field against its declared type and range (the registry's; a pruner outside the
        registry, ``key = None``: the shared fields), then the rules that tie fields together."""
        shared = SPACE_DEFAULTS if self.key is None else {f.name: None for f in fields(self)}
        check_params(self.key, {name: getattr(self, name) for name in shared})
        if self.structure == "channel" and self.scope != "global":
            raise ValueError("structure='channel' ranks channels globally; expected scope='global'")
        if (self.round_to > 1 or self.at_least) and self.structure != "channel":
            raise ValueError("round_to and at_least apply to structure='channel' only")
        if self.budget != "params" and self.structure != "channel":
            raise ValueError(
                "budget='flops' applies to structure='channel' only (a weight's FLOPs are "
                "not saved by an unstructured mask on dense kernels)"
            )

    def space(self, model: nn.Module, task: Task) -> Space:
        if self.structure == "channel":
            x = task.splits.train.x
            return ChannelSpace(
                model,
                example_input(model, x),
                self.round_to,
                self.at_least,
                self.budget,
                check_batch=example_input(model, x, 16),
            )
        return WeightSpace(self.scope)


@dataclass(frozen=True)
class ScoreThenFinetune(PrunerBase, ABC):
    """Score once, keep the top, fine-tune: the pruner of every method that differs from the
    others only by its criterion and its fine-tuning.

    :meth:`prune` builds the space, runs :meth:`before_scoring` (a phase some methods train
    first), scores the space's units with :attr:`importance`, masks the lowest and fine-tunes for
    ``finetune_steps`` (:func:`prune_and_finetune`; under the fairness constraint when ``fair``,
    on :meth:`finetune_objective`), and counts the importance's scoring passes as iterations.

    A method is then a declaration: its registry ``key``, its ``importance`` (a class attribute,
    or a property where it depends on a field), ``fair``, and its fields, ``finetune_steps``
    among them::

        @dataclass(frozen=True)
        class Magnitude(ScoreThenFinetune):
            key = "magnitude"
            importance = MagnitudeImportance()
            finetune_steps: int = defaults("magnitude")["finetune_steps"]
    """

    fair: ClassVar[bool] = False  # fine-tune with the fairness term

    @property
    @abstractmethod
    def importance(self) -> Importance:
        """The criterion the units are ranked by."""

    @property
    @abstractmethod
    def finetune_steps(self) -> int:
        """Fine-tuning iterations after masking (each method declares it as a field)."""

    def before_scoring(self, model: nn.Module, sparsity: float, task: Task) -> Outcome | None:
        """A phase run after the space is built and before the units are scored (its outcome
        comes first in the method's); none by default."""
        return None

    def finetune_objective(self, task: Task) -> FairnessObjective | None:
        """What the fair fine-tuning constrains (``None``: the task's objective)."""
        return None

    def prune(self, model: nn.Module, sparsity: float, task: Task) -> Outcome:
        space = self.space(model, task)
        before = self.before_scoring(model, sparsity, task)
        importance = self.importance
        outcome = prune_and_finetune(
            model,
            space,
            importance(model, space, task),
            sparsity,
            task,
            finetune_steps=self.finetune_steps,
            fair=self.fair,
            desc=self.key or type(self).__name__,
            objective=self.finetune_objective(task),
        )
        if before is not None:
            outcome = before.add(outcome)
        # the scoring passes count in the total only, after the history's rows (as SNIP's always
        # have; FairGRAPE and BiFP's SNIP init count theirs before their first row)
        outcome.train_iterations += importance.passes
        return outcome
