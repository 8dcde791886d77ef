"""Contract tests run over every registered pruner."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from fairprune.batches import example_input
from fairprune.data.base import Splits
from fairprune.engine import Task, TrainConfig
from fairprune.fairness.objective import FairnessObjective
from fairprune.masks import capture_effective_grads, effective_weight_grads, get_masks, prunable_parameters
from fairprune.pruners import PRUNERS, build_pruner, imp_schedule, run_pruner
from fairprune.pruners.space import ChannelSpace
from fairprune.structured import expand_channel_masks, group_param_counts

SMALL = {
    "dense": {},
    "random": {"finetune_steps": 4},
    "magnitude": {"finetune_steps": 4},
    "snip": {"finetune_steps": 4, "n_batches": 2},
    "fpgm": {"finetune_steps": 4},
    "imp": {"round_steps": 2},
    "bip": {"steps": 4, "finetune_steps": 2},
    "bifp": {"steps": 4, "finetune_steps": 2},
    "bifp_no_mask_fairness": {"steps": 4, "finetune_steps": 2},
    "bifp_no_weight_fairness": {"steps": 4, "finetune_steps": 2},
    "prune_then_fair": {"finetune_steps": 4},
    "fair_then_prune": {"fair_steps": 2, "finetune_steps": 2},
    "fairgrape": {"finetune_steps": 4, "n_batches": 2, "rounds": 2},
    "ceag": {"finetune_steps": 4},
    "postprocess": {"finetune_steps": 4, "grid_size": 50},
}
CONFIG = TrainConfig(batch_size=64, lr=0.05, eval_every=2)


def test_every_registered_pruner_has_contract_settings():
    assert sorted(SMALL) == sorted(PRUNERS)


def _prune(method: str, dense: nn.Module, splits: Splits, sparsity: float, **extra):
    model = copy.deepcopy(dense)
    task = Task(splits, FairnessObjective("equalized_odds", 0.1), CONFIG, seed=3, dense=dense)
    result = run_pruner(build_pruner(method, **{**SMALL[method], **extra}), model, sparsity, task)
    return model, result


CHANNEL_ONLY = {"fpgm"}


@pytest.mark.parametrize("method", sorted(set(PRUNERS) - CHANNEL_ONLY))
def test_pruner_contract(method, dense, planted_splits):
    sparsity = 0.0 if method == "dense" else 0.8
    model, result = _prune(method, dense, planted_splits, sparsity)
    params = prunable_parameters(model)
    assert sorted(result.masks) == sorted(params)
    total = sum(m.numel() for m in result.masks.values())
    zeros = sum(int((m == 0).sum()) for m in result.masks.values())
    assert zeros == round(sparsity * total)
    for name, mask in result.masks.items():
        assert mask.shape == params[name].shape
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert result.train_iterations >= 0 and result.wall_seconds >= 0
    steps = [row["step"] for row in result.history]
    assert steps == sorted(set(steps))  # one step count across a method's phases
    # masked weights get zero gradient
    x = planted_splits.train.x[:32]
    model.zero_grad()
    nn.functional.cross_entropy(model(x), planted_splits.train.y[:32]).backward()
    for name, p in params.items():
        assert torch.all(p.grad[result.masks[name] == 0] == 0)
    # deterministic under the seed
    again, result2 = _prune(method, dense, planted_splits, sparsity)
    for name in result.masks:
        assert torch.equal(result.masks[name], result2.masks[name])
    torch.testing.assert_close(model(x), again(x))


@pytest.mark.parametrize("method", ["magnitude", "random", "snip", "imp"])
def test_layer_scope_prunes_every_layer_exactly(method, dense, planted_splits):
    _, result = _prune(method, dense, planted_splits, 0.5, scope="layer")
    for mask in result.masks.values():
        assert int((mask == 0).sum()) == round(0.5 * mask.numel())


def test_iteration_accounting(dense, planted_splits):
    assert _prune("magnitude", dense, planted_splits, 0.5)[1].train_iterations == 4
    assert _prune("snip", dense, planted_splits, 0.5)[1].train_iterations == 4 + 2
    assert _prune("imp", dense, planted_splits, 0.5)[1].train_iterations == 2 * len(imp_schedule(0.5, 0.2))
    assert _prune("bifp", dense, planted_splits, 0.5)[1].train_iterations == 2 * 4 + 2
    joint = _prune("bifp", dense, planted_splits, 0.5, schedule="joint")[1]
    assert joint.train_iterations == 4 + 2
    assert _prune("fair_then_prune", dense, planted_splits, 0.5)[1].train_iterations == 4


def test_imp_schedule_follows_the_lottery_ticket_rate():
    assert imp_schedule(0.59, 0.2) == pytest.approx([0.2, 0.36, 0.488, 0.59])
    assert imp_schedule(0.2, 0.2) == [0.2]
    assert imp_schedule(0.0, 0.2) == []


def test_dense_refuses_a_sparsity(dense, planted_splits):
    with pytest.raises(ValueError, match="expected sparsity 0"):
        _prune("dense", dense, planted_splits, 0.5)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2, "0.5"])
def test_sparsity_outside_range_is_an_error(bad, dense, planted_splits):
    with pytest.raises(ValueError, match=r"sparsity must be a number in \[0, 1\)"):
        _prune("magnitude", dense, planted_splits, bad)


def test_unknown_method_and_hyperparameter_are_errors():
    with pytest.raises(ValueError, match="unknown method 'magnitud'.*expected one of"):
        build_pruner("magnitud")
    with pytest.raises(ValueError, match=r"unknown hyperparameter\(s\) \['stepz'\].*'bifp'"):
        build_pruner("bifp", stepz=3)
    with pytest.raises(ValueError, match="joint schedule"):
        build_pruner("bifp", schedule="joint", mask_fairness=0.0)
    with pytest.raises(ValueError, match="mask_init"):
        build_pruner("bifp", mask_init="zeros")


def test_imp_without_training_rewinds_to_the_dense_weights(dense, planted_splits):
    model, result = _prune("imp", dense, planted_splits, 0.59, round_steps=0)
    _, magnitude = _prune("magnitude", dense, planted_splits, 0.59, finetune_steps=0)
    dense_weights = prunable_parameters(dense)
    for name, p in prunable_parameters(model).items():
        assert torch.equal(result.masks[name], magnitude.masks[name])
        torch.testing.assert_close(p, dense_weights[name])


@pytest.mark.parametrize("method", sorted(set(PRUNERS) - {"dense"}))
def test_channel_mode_contract(method, dense, planted_splits):
    """structure='channel': whole hidden units go, the sparsity is within half a channel of the
    target, the masks are exactly the channel expansion, and the slimmed model is equal."""
    model, result = _prune(method, dense, planted_splits, 0.6, structure="channel")
    sel = result.channels
    assert sel is not None and sorted(g.id for g in sel.groups) == ["features.0", "features.2"]
    n = sum(p.numel() for p in prunable_parameters(model).values())
    zeros = sum(int((m == 0).sum()) for m in result.masks.values())
    assert abs(zeros - 0.6 * n) <= max(group_param_counts(sel.groups).values()) / 2
    expanded = expand_channel_masks(model, sel.groups, sel.keep)
    for name, mask in result.masks.items():
        assert torch.equal(mask, expanded[name])
    assert 0 < sel.channel_fraction < 1
    assert sel.channel_fraction == sum(int((~k).sum()) for k in sel.keep.values()) / (16 + 8)
    # biases of removed units are masked too: the removed units output exactly zero
    hidden = model.features[0](planted_splits.test.x[:8])
    assert torch.all(hidden[:, ~sel.keep["features.0"]] == 0)
    small = sel.slim(model)
    model.eval()
    torch.testing.assert_close(
        small(planted_splits.test.x), model(planted_splits.test.x), rtol=1e-5, atol=1e-6
    )
    widths = [m.out_features for m in small.modules() if isinstance(m, nn.Linear)]
    assert widths == [int(sel.keep["features.0"].sum()), int(sel.keep["features.2"].sum()), 2]
    again, result2 = _prune(method, dense, planted_splits, 0.6, structure="channel")
    for gid, keep in sel.keep.items():
        assert torch.equal(keep, result2.channels.keep[gid])


def test_channel_mode_rounds_kept_channels(dense, planted_splits):
    _, result = _prune("magnitude", dense, planted_splits, 0.5, structure="channel", round_to=4)
    assert all(int(k.sum()) % 4 == 0 for k in result.channels.keep.values())


def test_channel_mode_at_least_never_prunes_fewer_weights(dense, planted_splits):
    n = sum(p.numel() for p in prunable_parameters(dense).values())
    for target in (0.3, 0.45, 0.6):
        _, result = _prune("magnitude", dense, planted_splits, target, structure="channel", at_least=True)
        zeros = sum(int((m == 0).sum()) for m in result.masks.values())
        assert 0 <= zeros - target * n <= max(group_param_counts(result.channels.groups).values())


def test_structure_settings_are_checked():
    with pytest.raises(ValueError, match="structure: expected 'unstructured' or 'channel'; got 'filters'"):
        build_pruner("bifp", structure="filters")
    with pytest.raises(ValueError, match="expected scope='global'"):
        build_pruner("magnitude", structure="channel", scope="layer")
    with pytest.raises(ValueError, match="round_to and at_least apply to structure='channel' only"):
        build_pruner("magnitude", round_to=8)
    with pytest.raises(ValueError, match="fpgm prunes filters"):
        build_pruner("fpgm", structure="unstructured")


def test_survivors_first_never_revives_a_removed_channel(dense, planted_splits):
    model = copy.deepcopy(dense)
    space = ChannelSpace(model, example_input(model, planted_splits.train.x))
    space.apply(model, space.magnitude(model), 0.3)
    before = space.selection(model).keep
    favour_removed = {gid: -s for gid, s in space.magnitude(model).items()}  # removed ones score highest
    space.apply(model, space.survivors_first(model, favour_removed), 0.5)
    after = space.selection(model).keep
    for gid in before:
        assert not torch.any(after[gid] & ~before[gid])
    assert sum(int(k.sum()) for k in after.values()) < sum(int(k.sum()) for k in before.values())


def test_channel_gates_give_dropped_channels_a_gradient(dense, planted_splits):
    """Full channel masks zero a dropped channel's gradient (its output and its consumers'
    inputs are both masked); gates on the consumers' inputs only keep the same outputs but let
    d loss / d gate reach the dropped channels, which structured BiFP needs to revive them."""
    x, y = planted_splits.train.x[:256], planted_splits.train.y[:256]
    grads, outputs = {}, {}
    for gate in (False, True):
        model = copy.deepcopy(dense)
        space = ChannelSpace(model, example_input(model, planted_splits.train.x))
        space.apply(model, space.magnitude(model), 0.6, gate=gate)
        keep = space.selection(model).keep
        capture_effective_grads(model, True)
        out = model(x)
        nn.functional.cross_entropy(out, y).backward()
        theta = prunable_parameters(model)
        per_weight = {n: theta[n].detach() * g for n, g in effective_weight_grads(model).items()}
        grads[gate] = space.mask_grads(per_weight)  # straight-through d loss / d m
        outputs[gate] = out.detach()
        if gate:
            space.finalize(model)
            full = expand_channel_masks(model, space.groups, keep)
            assert all(torch.equal(m, full[n]) for n, m in get_masks(model).items())
            torch.testing.assert_close(model(x), outputs[True])
    torch.testing.assert_close(outputs[True], outputs[False])
    # units whose ReLU is active somewhere in the batch (a dead unit has no gradient either way)
    h1 = dense.features[1](dense.features[0](x))
    active = {"features.0": (h1 > 0).any(0), "features.2": (dense.features[:4](x) > 0).any(0)}
    revivable = 0
    for gid, k in keep.items():
        assert torch.all(grads[False][gid][~k] == 0)
        assert torch.all(grads[True][gid][~k & active[gid]].abs() > 1e-6)
        revivable += int((~k & active[gid]).sum())
    assert revivable >= 3
