"""End to end on generated images with a planted bias: unstructured and structured BiFP meet
the tolerance where magnitude pruning and FPGM do not, and structured BiFP's slimmed model is
the masked one.

The images are 1x5x5 uint8 (the planted-bias design of ``conftest.planted_bias_frame`` drawn as
pixels): the majority's label is the brightness of rows 0-1, the minority's that of rows 2-3,
row 4 shows the group. A CNN with one hidden 5x5 conv (32 channels) serves both groups; pruned
hard and fine-tuned without a fairness term it serves the majority only.

Measured on data seeds 0, 1, 2 (the tests use seed 0): unstructured, 90%, 20% minority, tau 0.1:
magnitude val EO 0.164 / 0.285 / 0.305, BiFP 0.069 / 0.076 / 0.018 with higher test accuracy.
Channels, 2 of 32 kept, 10% minority, tau 0.15: FPGM (and structured magnitude, which keeps the
same channels) val EO 0.198 / 0.868 / 0.169, test 0.336 / 0.842 / 0.230; structured BiFP val
0.041 / 0.134 / 0.023, test 0.168 / 0.049 / 0.132, test accuracy within 2 points of FPGM's.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from fairprune.data.base import Splits
from fairprune.data.synthetic import planted_bias_images
from fairprune.engine import Task, TrainConfig, train_weights
from fairprune.export import count_parameters
from fairprune.fairness.objective import FairnessObjective
from fairprune.inference import evaluate
from fairprune.models.tiny import OneConvNet
from fairprune.pruners import build_pruner, run_pruner

TAU = 0.1


@pytest.fixture(scope="module")
def planted() -> tuple[Splits, nn.Module, Task]:
    splits = planted_bias_images(6000, seed=0)
    config = TrainConfig(batch_size=128, lr=0.05, eval_every=20)
    torch.manual_seed(0)
    dense = OneConvNet()
    train_weights(dense, Task(splits, None, config, 0), 800)
    # dual step 1: at these sparsities the first violation is 0.7; the default step (5) makes the
    # first multiplier large enough to kill every ReLU of a 3-channel net
    task = Task(splits, FairnessObjective("equalized_odds", TAU, dual_step=1.0), config, seed=0)
    return splits, dense, task


def _run(planted, method: str, sparsity: float, **params):
    splits, dense, task = planted
    model = copy.deepcopy(dense)
    result = run_pruner(build_pruner(method, **params), model, sparsity, task)
    return model, result, evaluate(model, splits.val, 2), evaluate(model, splits.test, 2)


def test_unstructured_bifp_meets_tau_where_magnitude_does_not(planted):
    # equal budgets: BiFP 400 alternating steps (800 iterations) + 100, magnitude 900
    _, _, mag_val, mag_test = _run(planted, "magnitude", 0.9, finetune_steps=900)
    _, result, val, test = _run(planted, "bifp", 0.9, steps=400, finetune_steps=100)
    assert result.train_iterations == 900
    assert mag_val["equalized_odds_difference"] > TAU + 0.05  # measured 0.164 (seeds 1, 2: 0.285, 0.305)
    assert mag_test["equalized_odds_difference"] > TAU + 0.05  # 0.251
    assert result.feasible and val["equalized_odds_difference"] <= TAU  # 0.069
    assert test["equalized_odds_difference"] <= TAU  # 0.038
    assert test["accuracy"] >= mag_test["accuracy"] - 0.02  # 0.895 against 0.859


def test_structured_bifp_meets_tau_and_its_slim_model_is_the_masked_one(planted):
    splits = planted[0]
    model, result, val, test = _run(planted, "bifp", 0.9, structure="channel", steps=400, finetune_steps=100)
    keep = result.channels.keep["conv"]
    assert int(keep.sum()) == 3  # 0.9 of 32 * (25 + 2) weights, to the channel
    assert result.feasible and val["equalized_odds_difference"] <= TAU  # 0.074
    assert test["equalized_odds_difference"] <= TAU and test["accuracy"] >= 0.85  # 0.034, 0.901
    slim = result.channels.slim(model).eval()
    assert slim.conv.out_channels == 3 and slim.fc.in_features == 3
    assert count_parameters(slim) == 3 * 25 + 3 + 2 * 3 + 3 * 2 + 2
    model.eval()
    x = splits.test.x.float() / 127.5 - 1.0
    torch.testing.assert_close(slim(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def planted_rare() -> tuple[Splits, nn.Module, Task]:
    splits = planted_bias_images(6000, seed=0, minority=0.1)
    config = TrainConfig(batch_size=128, lr=0.05, eval_every=20)
    torch.manual_seed(0)
    dense = OneConvNet()
    train_weights(dense, Task(splits, None, config, 0), 800)
    # 2 hidden channels: with dual steps of 1 or more the weight-level term collapses the net
    # to chance on 2 of 3 seeds (measured); 0.2 keeps it learning
    task = Task(splits, FairnessObjective("equalized_odds", 0.15, dual_step=0.2), config, seed=0)
    return splits, dense, task


def test_structured_bifp_meets_tau_where_fpgm_and_channel_magnitude_do_not(planted_rare):
    tau = 0.15
    _, result, val, test = _run(
        planted_rare, "bifp", 0.93, structure="channel", steps=400, finetune_steps=100
    )
    assert int(result.channels.keep["conv"].sum()) == 2
    assert result.feasible and val["equalized_odds_difference"] <= tau  # 0.041
    for method, params in [("fpgm", {}), ("magnitude", {"structure": "channel"})]:
        _, base, base_val, base_test = _run(planted_rare, method, 0.93, finetune_steps=900, **params)
        assert int(base.channels.keep["conv"].sum()) == 2
        assert base_val["equalized_odds_difference"] > tau + 0.03  # 0.198
        assert (
            test["equalized_odds_difference"] < base_test["equalized_odds_difference"] - 0.1
        )  # 0.168 vs 0.336
        assert test["accuracy"] >= base_test["accuracy"] - 0.02  # 0.893 vs 0.909
