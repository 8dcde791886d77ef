"""Train and evaluate loops: plain PyTorch, read top to bottom.

One training *iteration* is one forward/backward pass on one batch; every method reports the
iterations it used so that costs can be compared (an alternating bi-level step counts two).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from fairprune.averaging import WeightAverage
from fairprune.batches import model_inputs
from fairprune.config import TrainConfig
from fairprune.data.base import GroupData
from fairprune.distributed import rank, world_size, wrap_ddp
from fairprune.errors import TrainingDivergedError
from fairprune.fairness.constraints import Constraint
from fairprune.fairness.objective import FairnessObjective
from fairprune.inference import predict_gathered, worst_group_accuracy
from fairprune.masks import get_masks
from fairprune.model_io import Features, eval_logits, forward_logits
from fairprune.samplers import StratifiedBatchSampler, cells_of, loader_batches, stratified_epoch
from fairprune.selection import CheckpointSelector, is_trivial
from fairprune.task import Task, stratified_subset

__all__ = [
    "TrainConfig",
    "Task",
    "LoopResult",
    "stratified_batches",
    "training_batches",
    "run_loop",
    "train_weights",
    "make_optimizer",
    "lr_schedulers",
    "CheckpointSelector",
    "clipped_step",
    "train_inputs",
    "prepare_model",
    "autocast_context",
    "batch_loss",
    "distillation",
    "stratified_subset",
    "is_trivial",
    "selector_for",
]

logger = logging.getLogger(__name__)


def train_inputs(batch: GroupData, task: Task) -> tuple[Features, Tensor, Tensor]:
    """``(x, y, groups)`` of a training batch on the task's device (augmented if configured;
    channels-last images if configured)."""
    device = task.train.device
    x = model_inputs(batch.x, device, augment=task.train.augment)
    if task.train.channels_last and isinstance(x, Tensor) and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, batch.y.to(device), batch.groups.to(device)


def prepare_model(model: nn.Module, config: TrainConfig) -> nn.Module:
    """``model`` on the config's device (channels-last if configured), in train mode (in place)."""
    model.to(config.device).train()
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def autocast_context(config: TrainConfig) -> contextlib.AbstractContextManager[Any]:
    """The precision context of a training forward pass (``train.autocast``)."""
    if config.autocast == "bf16":
        return torch.autocast(torch.device(config.device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def batch_loss(
    model: nn.Module,
    batch: GroupData,
    task: Task,
    constraint: Constraint | None,
    *,
    fairness_weight: float = 1.0,
) -> Tensor:
    """The training objective on one batch: ``CE + fairness_weight * c * Phi`` (``c``: the
    penalty strength or the multiplier; no fairness term without a constraint), plus
    ``train.distill`` times :func:`distillation` toward the task's dense model when set."""
    x, y, g = train_inputs(batch, task)
    with autocast_context(task.train):
        logits = forward_logits(model, x)
        loss = nn.functional.cross_entropy(logits, y)  # float32 under autocast
        if constraint is not None:
            loss = loss + constraint.term(logits, y, g, weight=fairness_weight)
        if task.train.distill > 0 and task.dense is not None:
            teacher = _teacher_logits(task.dense, x, logits.device)
            loss = loss + task.train.distill * distillation(logits, teacher, task.train.distill_temperature)
    return loss


def _teacher_logits(dense: nn.Module, x: Features, device: torch.device) -> Tensor:
    """The dense model's logits on a training batch, without gradients, on the batch's device
    (a dense model reloaded from disk lives on the CPU until its first use here)."""
    param = next(dense.parameters(), None)
    if param is not None and param.device != device:
        dense.to(device)
    return eval_logits(dense, x)


def distillation(logits: Tensor, teacher: Tensor, temperature: float = 1.0) -> Tensor:
    """``T^2 KL(softmax(teacher / T) || softmax(logits / T))``, averaged over the batch.

    Pulls a pruned model's predictions toward the dense model's: fewer samples on which the two
    disagree ("churn"), which is what the paired certificate of ``tolerance = "dense"`` pays
    for (:mod:`fairprune.fairness.certificate`). ``T^2`` keeps the gradient's scale across
    temperatures (Hinton et al., 2015).
    """
    t = float(temperature)
    dtype = torch.promote_types(logits.dtype, torch.float32)  # float32 under autocast
    log_student = nn.functional.log_softmax(logits.to(dtype) / t, dim=-1)
    log_teacher = nn.functional.log_softmax(teacher.to(dtype) / t, dim=-1)
    kl = nn.functional.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True)
    return t * t * kl


@dataclass
class LoopResult:
    """What a training loop did: iterations used, logged history, whether tau was met."""

    iterations: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    feasible: bool | None = None
    selection: str | None = None  # which state was restored, and why


def stratified_batches(
    data: GroupData, batch_size: int, generator: torch.Generator, n_groups: int, *, shard: bool = False
) -> Iterator[GroupData]:
    """Endless batches in which every (target, group) cell appears in proportion (±1).

    Each epoch shuffles every cell and spreads its samples evenly over the epoch's order, so a
    batch misses a group only when the group has fewer samples than there are batches (see
    :mod:`fairprune.samplers`). With ``shard`` under ``torchrun``, ``batch_size`` is the global
    batch and this rank gets its shard of each (without: every rank gets the whole batch).
    """
    cells = cells_of(data.y, data.groups, n_groups)  # (N,)
    ranks, world = (rank(), world_size()) if shard else (0, 1)
    while True:
        epoch = stratified_epoch(cells, batch_size, generator, rank=ranks, world_size=world)
        for index in epoch:
            yield data.subset(index)


def training_batches(task: Task) -> Iterator[GroupData]:
    """The endless stratified training batches of a loop (this rank's shards under ``torchrun``),
    drawn with the task's seed: indexed in memory, or through a ``DataLoader`` with
    ``train.workers`` worker processes (the same batches)."""
    cfg, train, n_groups = task.train, task.splits.train, task.splits.n_groups
    if cfg.workers == 0:
        generator = torch.Generator().manual_seed(task.seed)
        return stratified_batches(train, cfg.batch_size, generator, n_groups, shard=True)
    sampler = StratifiedBatchSampler(
        train.y,
        train.groups,
        cfg.batch_size,
        n_groups=n_groups,
        seed=task.seed,
        rank=rank(),
        world_size=world_size(),
    )
    cuda = torch.device(cfg.device).type == "cuda"
    return loader_batches(train, sampler, workers=cfg.workers, pin_memory=cuda)


def make_optimizer(params: Any, config: TrainConfig, lr: float | None = None) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params, lr=config.lr if lr is None else lr, momentum=0.9, weight_decay=config.weight_decay
    )


def clipped_step(optimizer: torch.optim.Optimizer, config: TrainConfig) -> None:
    """``optimizer.step()`` after clipping the gradient norm to ``config.grad_clip``."""
    if config.grad_clip > 0:
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
    optimizer.step()


def lr_schedulers(
    optimizers: Sequence[torch.optim.Optimizer],
    config: TrainConfig,
    steps: int,
    span: tuple[int, int] | None = None,
) -> list[torch.optim.lr_scheduler.LRScheduler]:
    """The learning-rate schedulers of a loop of ``steps`` steps over ``optimizers``, each to be
    stepped once after every step: none for ``train.lr_schedule = "constant"``; for
    ``"cosine"``, the loop's step ``i`` (from 0) runs at ``0.5 (1 + cos(pi (start + i) / total))``
    times each optimizer's set rate, where ``span = (start, total)`` places the loop within a
    schedule over several loops (the phases of one method; default ``(0, steps)``: the loop
    alone, from the full rate to close to 0)."""
    if config.lr_schedule == "constant":
        return []
    start, total = (0, steps) if span is None else span
    if start < 0 or start + steps > total:
        raise ValueError(f"a loop of {steps} steps from step {start} does not fit a schedule of {total}")

    def cosine(i: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(start + i, total) / total))

    return [torch.optim.lr_scheduler.LambdaLR(optimizer, cosine) for optimizer in optimizers]


StepFn = Callable[[Callable[[], GroupData]], tuple[float, int]]


def run_loop(
    model: nn.Module,
    task: Task,
    steps: int,
    step_fn: StepFn,
    *,
    constraint: Constraint | None,
    desc: str,
    selector: CheckpointSelector | None = None,
    optimizers: Sequence[torch.optim.Optimizer] = (),
    schedule_span: tuple[int, int] | None = None,
) -> LoopResult:
    """Run ``steps`` calls of ``step_fn``, validating every ``eval_every`` steps (the averaged
    weights, with ``train.average``: :class:`~fairprune.averaging.WeightAverage`). The learning
    rates of ``optimizers`` (those ``step_fn`` steps) follow ``train.lr_schedule`` over the
    ``steps``, or over ``schedule_span`` when the loop is one phase of several
    (:func:`lr_schedulers`).

    ``step_fn(next_batch) -> (loss, iterations)`` does one update. At each validation the
    exact violation feeds the constraint's dual step, a history row is logged (with the
    iterations and seconds spent so far, and the exact violation of the task's objective also
    when the loop is unconstrained, so that every method's "iterations to a fair model" can be
    read off its history), and the state is offered to a :class:`CheckpointSelector`, whose
    choice is restored at the end. Pass one ``selector`` to several loops (phases of one method)
    to choose across all of them.

    Raises:
        TrainingDivergedError: If the loss becomes NaN or infinite (naming the step).
    """
    cfg = task.train
    batches = training_batches(task)
    result = LoopResult()
    if selector is None:
        selector = selector_for(constraint, cfg)
    prev_masks = get_masks(model)
    running = math.nan
    average = WeightAverage(model, cfg.average) if cfg.average > 0 else None
    schedulers = lr_schedulers(optimizers, cfg, steps, schedule_span)
    start = time.perf_counter()
    bar = tqdm(range(1, steps + 1), desc=desc, disable=not task.progress, leave=False)
    for step in bar:
        loss, iters = step_fn(lambda: next(batches))
        result.iterations += iters
        for scheduler in schedulers:
            scheduler.step()
        if average is not None:
            average.update()
        if not math.isfinite(loss):
            raise TrainingDivergedError(
                f"{desc}: training loss became {loss} at step {step} of {steps}; expected a finite "
                "loss (lower the learning rate, fairness.dual_step or fairness.penalty_weight)"
            )
        running = loss if math.isnan(running) else 0.9 * running + 0.1 * loss
        if step % cfg.eval_every == 0 or step == steps:
            with average.swapped() if average is not None else contextlib.nullcontext():
                row, prev_masks, trivial = _validate(model, task, constraint, step, running, prev_masks)
                row.update(iterations=float(result.iterations), seconds=time.perf_counter() - start)
                result.history.append(row)
                violation = row.get("constraint_violation", row["violation"])
                selector.offer(
                    row["val_accuracy"], violation, constraint, model, trivial=trivial,
                    worst=row["val_worst_group_accuracy"], step=step,
                )  # fmt: skip
            bar.set_postfix(loss=f"{running:.3f}", viol=f"{row['violation']:.3f}")
    chosen = selector.choose()
    if chosen is not None:
        model.load_state_dict(chosen.state)
        if constraint is not None:
            result.feasible = chosen.feasible
        result.selection = f"{desc}: {selector.reason}"
        logger.info("%s: returned %s", desc, selector.reason)
    return result


def selector_for(constraint: Constraint | None, config: TrainConfig) -> CheckpointSelector:
    """The checkpoint selector of a loop under ``constraint``: the config's band, and the
    objective's levelling-down ``floor``."""
    floor = None if constraint is None else constraint.objective.floor
    return CheckpointSelector(constrained=constraint is not None, band=config.selection_band, floor=floor)


def _validate(
    model: nn.Module,
    task: Task,
    constraint: Constraint | None,
    step: int,
    loss: float,
    prev_masks: dict[str, Tensor],
) -> tuple[dict[str, float], dict[str, Tensor], bool]:
    """A history row for the current state, the current masks (for the next comparison), and
    whether the state is trivial (see :func:`is_trivial`)."""
    val = task.validation
    pred = predict_gathered(model, val, device=task.train.device)
    accuracy = float((pred == val.y).float().mean())
    masks = get_masks(model)
    total = sum(m.numel() for m in masks.values())
    changed = sum(int((masks[k] != prev_masks[k]).sum()) for k in masks)
    row = {
        "step": float(step),
        "loss": loss,
        "val_accuracy": accuracy,
        "val_worst_group_accuracy": worst_group_accuracy(val.y, pred, val.groups, task.splits.n_groups),
        "mask_hamming": changed / total,
    }
    trivial = is_trivial(val.y, pred)
    row["trivial"] = float(trivial)
    dense_pred = task.dense_validation_pred
    violations = None
    if constraint is None:
        row["multiplier"] = math.nan
    else:
        violations = constraint.update(val.y, pred, val.groups, y_pred_dense=dense_pred)
        row.update(constraint.state())
    # the task's metric, measured for every loop (enforced only by a constraint on it), so that
    # "iterations to a fair model" can be read off any method's history
    objective = task.objective
    same = (
        constraint is not None
        and objective is not None
        and constraint.objective.metric == objective.metric
        and constraint.objective.confidence == 0.0  # else the row's violation is the plain metric
        and constraint.objective.certify == 0.0
    )
    if violations is not None and same:
        row["violation"] = float(violations.max())
        return row, masks, trivial
    row["violation"] = _measured_violation(objective, val, pred, dense_pred, task.splits.n_groups)
    if violations is not None:
        row["constraint_violation"] = float(violations.max())  # what the selector compares with its tau
    return row, masks, trivial


def _measured_violation(
    objective: FairnessObjective | None,
    val: GroupData,
    pred: Tensor,
    dense_pred: Tensor | None,
    n_groups: int,
) -> float:
    """The exact metric of ``objective`` (NaN without one, or for a per-group metric without
    the dense model's predictions)."""
    if objective is None or (objective.per_group and dense_pred is None):
        return math.nan
    return Constraint(objective, n_groups).violation(val.y, pred, val.groups, y_pred_dense=dense_pred)


def train_weights(
    model: nn.Module,
    task: Task,
    steps: int,
    *,
    constraint: Constraint | None = None,
    lr: float | None = None,
    desc: str = "train",
    selector: CheckpointSelector | None = None,
    fairness_weight: float = 1.0,
    schedule_span: tuple[int, int] | None = None,
) -> LoopResult:
    """Train the weights (masks fixed) on ``CE + fairness_weight * [fairness term]`` for ``steps``
    iterations. With a ``constraint`` its violation is measured at every validation (for the
    dual step and checkpoint selection) also when ``fairness_weight`` is 0. ``schedule_span``:
    see :func:`run_loop`."""
    prepare_model(model, task.train)
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], task.train, lr)
    net = wrap_ddp(model)  # under torchrun: the weights' gradients averaged over the ranks

    def step_fn(next_batch: Callable[[], GroupData]) -> tuple[float, int]:
        loss = batch_loss(net, next_batch(), task, constraint, fairness_weight=fairness_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clipped_step(optimizer, task.train)
        return float(loss.detach()), 1

    return run_loop(
        model, task, steps, step_fn, constraint=constraint, desc=desc, selector=selector,
        optimizers=[optimizer], schedule_span=schedule_span,
    )  # fmt: skip
