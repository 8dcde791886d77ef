"""Weight averaging (``train.average``): the average by hand, and the loop validating and
returning the averaged weights."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from fairprune.averaging import WeightAverage
from fairprune.config import config_from_dict
from fairprune.data.base import Splits
from fairprune.engine import Task, TrainConfig, run_loop


def test_the_average_is_the_exponential_moving_average_by_hand():
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(0.0)
        model.bias.fill_(0.0)
    average = WeightAverage(model, decay=0.5)
    expected = 0.0
    for value in (4.0, 8.0, -2.0):
        with torch.no_grad():
            model.weight.fill_(value)
        average.update()
        expected = 0.5 * expected + 0.5 * value
    assert average.average[0].tolist() == [[expected, expected]] and expected == pytest.approx(1.5)
    with average.swapped():
        assert model.weight.tolist() == [[1.5, 1.5]]
    assert model.weight.tolist() == [[-2.0, -2.0]]  # the trained values are back
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\)"):
        WeightAverage(model, decay=1.0)


def test_a_loop_validates_and_returns_the_averaged_weights(planted_splits: Splits):
    """A step that sets every weight to the step number: after 4 steps with decay 0.5 the average
    is 0.5^4 w0 + 0.5^4 * 1 + 0.5^3 * 2 + 0.5^2 * 3 + 0.5 * 4 (w0 = 0), and that is what the one
    check at step 4 sees and the loop returns."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(25, 2))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.zero_()
    steps = iter(range(1, 5))

    def step_fn(next_batch):  # noqa: ANN001, ANN202
        value = float(next(steps))
        with torch.no_grad():
            model[0].weight.fill_(value)
        return 0.0, 1

    task = Task(planted_splits, None, TrainConfig(eval_every=4, average=0.5), 0)
    plain = copy.deepcopy(model)
    result = run_loop(model, task, 4, step_fn, constraint=None, desc="t")
    expected = 0.5**4 * 1 + 0.5**3 * 2 + 0.5**2 * 3 + 0.5 * 4
    assert model[0].weight.unique().tolist() == [pytest.approx(expected)]
    assert len(result.history) == 1
    with torch.no_grad():
        plain[0].weight.fill_(expected)
    pred = plain(planted_splits.val.x).argmax(-1)
    accuracy = float((pred == planted_splits.val.y).float().mean())
    assert result.history[0]["val_accuracy"] == pytest.approx(accuracy)


def test_average_is_a_checked_train_setting():
    assert config_from_dict({"train": {"average": 0.98}}).train.average == 0.98
    with pytest.raises(ValueError, match="train.average"):
        config_from_dict({"train": {"average": 1.0}})
    assert TrainConfig().average == 0.0
