"""The learning-rate schedule of every training loop (``train.lr_schedule``)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from fairprune.budgets import train_config_for
from fairprune.config import config_from_dict
from fairprune.data.base import Splits
from fairprune.engine import Task, TrainConfig, lr_schedulers, run_loop
from fairprune.masks import get_masks, sparsity
from fairprune.pruners import build_pruner
from fairprune.pruners.base import run_pruner


def _rates_seen(schedule: str, steps: int) -> tuple[list[float], list[float]]:
    """The learning rates of two optimizers at each of ``steps`` steps of a loop over them."""
    a = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=0.2)
    b = torch.optim.Adam([nn.Parameter(torch.zeros(2))], lr=0.01)
    seen_a, seen_b = [], []
    config = TrainConfig(lr_schedule=schedule)
    schedulers = lr_schedulers([a, b], config, steps)
    for _ in range(steps):
        seen_a.append(a.param_groups[0]["lr"])
        seen_b.append(b.param_groups[0]["lr"])
        a.step()
        b.step()
        for scheduler in schedulers:
            scheduler.step()
    return seen_a, seen_b


def test_cosine_anneals_every_optimizer_by_hand():
    steps = 8
    seen_a, seen_b = _rates_seen("cosine", steps)
    for i in range(steps):
        factor = 0.5 * (1 + math.cos(math.pi * i / steps))
        assert seen_a[i] == pytest.approx(0.2 * factor, rel=1e-12)
        assert seen_b[i] == pytest.approx(0.01 * factor, rel=1e-12)
    assert seen_a[0] == 0.2 and seen_a[-1] == pytest.approx(0.2 * 0.0380602, rel=1e-5)


def test_a_span_places_a_loop_within_one_schedule_over_several():
    """Two phases of 3 and 5 steps on one schedule of 8 see the rates of one 8-step loop."""
    whole, _ = _rates_seen("cosine", 8)
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(2))], lr=0.2)
    config = TrainConfig(lr_schedule="cosine")
    seen = []
    for start, steps in ((0, 3), (3, 5)):
        optimizer.param_groups[0].pop("initial_lr", None)  # a new phase: a new scheduler
        optimizer.param_groups[0]["lr"] = 0.2
        (scheduler,) = lr_schedulers([optimizer], config, steps, (start, 8))
        for _ in range(steps):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
    assert seen == pytest.approx(whole, rel=1e-12)
    with pytest.raises(ValueError, match="does not fit a schedule of 8"):
        lr_schedulers([optimizer], config, 6, (3, 8))


def test_constant_leaves_the_rates_alone():
    seen_a, seen_b = _rates_seen("constant", 5)
    assert seen_a == [0.2] * 5 and seen_b == [0.01] * 5
    assert lr_schedulers([torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)], TrainConfig(), 5) == []


def test_run_loop_anneals_the_rates_of_the_optimizers_it_is_given(planted_splits: Splits):
    model = nn.Linear(25, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    task = Task(planted_splits, None, TrainConfig(eval_every=5, lr_schedule="cosine"), 0)
    seen = []

    def step_fn(next_batch):
        seen.append(optimizer.param_groups[0]["lr"])
        next_batch()
        optimizer.step()
        return 0.0, 1

    run_loop(model, task, 10, step_fn, constraint=None, desc="t", optimizers=[optimizer])
    assert seen == pytest.approx([0.1 * 0.5 * (1 + math.cos(math.pi * i / 10)) for i in range(10)])


def test_cosine_settles_the_weights_at_the_end_of_a_loop(planted_splits: Splits, dense: nn.Module):
    """The point of the schedule: over the last steps of a loop the weights move far less than at
    a constant rate (measured on this MLP: about 4% of the constant-rate movement)."""
    moved = {}
    for schedule in ("constant", "cosine"):
        model = copy.deepcopy(dense)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        snapshots = []

        def step_fn(next_batch, model=model, optimizer=optimizer, snapshots=snapshots):
            batch = next_batch()
            loss = nn.functional.cross_entropy(model(batch.x), batch.y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            snapshots.append(torch.cat([p.detach().flatten().clone() for p in model.parameters()]))
            return float(loss.detach()), 1

        task = Task(
            planted_splits, None, TrainConfig(batch_size=64, eval_every=1000, lr_schedule=schedule), 0
        )
        run_loop(model, task, 200, step_fn, constraint=None, desc="t", optimizers=[optimizer])
        moved[schedule] = float((snapshots[-1] - snapshots[159]).norm())
    assert moved["cosine"] < 0.2 * moved["constant"], moved


def test_bifp_runs_under_the_cosine_schedule_and_reaches_its_sparsity(
    planted_splits: Splits, dense: nn.Module
):
    model = copy.deepcopy(dense)
    task = Task(planted_splits, None, TrainConfig(batch_size=64, eval_every=20, lr_schedule="cosine"), 0)
    run_pruner(build_pruner("bifp", steps=40, finetune_steps=20), model, 0.5, task)
    masks = get_masks(model)
    assert masks and sparsity(masks) == pytest.approx(0.5, abs=1 / sum(m.numel() for m in masks.values()))


def test_lr_schedule_is_a_checked_train_setting():
    assert config_from_dict({"train": {"lr_schedule": "cosine"}}).train.lr_schedule == "cosine"
    assert TrainConfig().lr_schedule == "constant"  # the default run is unchanged
    with pytest.raises(ValueError, match="train.lr_schedule"):
        config_from_dict({"train": {"lr_schedule": "linear"}})


def test_the_one_call_takes_the_schedule_as_a_training_setting(planted_splits: Splits):
    data = {"train": planted_splits.train, "val": planted_splits.val}
    assert train_config_for({"lr_schedule": "cosine"}, data, "cpu").lr_schedule == "cosine"
    assert train_config_for(None, data, "cpu").lr_schedule == "constant"
    with pytest.raises(ValueError, match="lr_schedule"):
        train_config_for({"lr_schedule": "step"}, data, "cpu")
