import pytest
import torch
from torch import nn

from fairprune.masks import (
    apply_masks,
    bake_masks,
    capture_effective_grads,
    check_sparsity,
    effective_weight_grads,
    get_masks,
    prunable_parameters,
    sparsity,
    topk_masks,
)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5))


def test_prunable_parameters_are_conv_and_linear_weights_by_full_name():
    params = prunable_parameters(_net())
    assert sorted(params) == ["0.weight", "3.weight"]
    assert params["0.weight"].shape == (3, 2, 3, 3)


def test_no_prunable_parameters_is_an_error():
    with pytest.raises(ValueError, match="no prunable parameters"):
        prunable_parameters(nn.ReLU())


@pytest.mark.parametrize("target", [0.0, 0.3, 0.5, 0.9, 0.99])
def test_global_topk_prunes_exactly_round_target_n(target):
    scores = {"a": torch.rand(7, 13), "b": torch.rand(101)}
    masks = topk_masks(scores, target)
    n = 7 * 13 + 101
    assert sum(int((m == 0).sum()) for m in masks.values()) == round(target * n)
    assert all(set(m.unique().tolist()) <= {0.0, 1.0} for m in masks.values())
    check_sparsity(masks, target)


def test_global_topk_keeps_the_largest_scores():
    scores = {"a": torch.tensor([0.1, 0.9, 0.5]), "b": torch.tensor([0.3, 0.7])}
    masks = topk_masks(scores, 0.4)  # prune 2 of 5: 0.1 and 0.3
    assert masks["a"].tolist() == [0.0, 1.0, 1.0]
    assert masks["b"].tolist() == [0.0, 1.0]


def test_topk_with_ties_still_exact():
    masks = topk_masks({"a": torch.ones(10)}, 0.35)
    assert int((masks["a"] == 0).sum()) == 4  # round(3.5) = 4 (banker's rounding gives 4)


def test_layer_scope_prunes_each_tensor():
    scores = {"a": torch.rand(100), "b": torch.rand(10) + 10}
    masks = topk_masks(scores, 0.5, scope="layer")
    assert int(masks["a"].sum()) == 50 and int(masks["b"].sum()) == 5
    check_sparsity(masks, 0.5, scope="layer")
    with pytest.raises(ValueError, match="prune"):
        check_sparsity(topk_masks(scores, 0.5), 0.5, scope="layer")


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_sparsity_outside_unit_interval_is_rejected(bad):
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
        topk_masks({"a": torch.rand(3)}, bad)


def test_masked_forward_equals_manual_product_and_masked_weights_get_zero_grad():
    net = _net()
    x = torch.randn(4, 2, 6, 6)
    masks = topk_masks({k: v.abs() for k, v in prunable_parameters(net).items()}, 0.6)
    reference = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(48, 5))
    reference.load_state_dict(net.state_dict())
    with torch.no_grad():
        reference[0].weight.mul_(masks["0.weight"])
        reference[3].weight.mul_(masks["3.weight"])
    apply_masks(net, masks)
    out = net(x)
    torch.testing.assert_close(out, reference(x))
    out.sum().backward()
    for name, p in prunable_parameters(net).items():
        assert p.grad is not None
        assert torch.all(p.grad[masks[name] == 0] == 0)
        assert p.grad[masks[name] == 1].abs().sum() > 0
    assert sparsity(get_masks(net)) == pytest.approx(round(0.6 * (54 + 240)) / (54 + 240))


def test_apply_masks_updates_in_place_and_state_dict_round_trips():
    net = _net()
    apply_masks(net, topk_masks({k: v.abs() for k, v in prunable_parameters(net).items()}, 0.5))
    new = topk_masks({k: torch.rand_like(v) for k, v in prunable_parameters(net).items()}, 0.8)
    apply_masks(net, new)
    assert torch.equal(get_masks(net)["3.weight"], new["3.weight"])
    other = _net()
    apply_masks(other, {k: torch.ones_like(v) for k, v in prunable_parameters(other).items()})
    other.load_state_dict(net.state_dict())
    x = torch.randn(2, 2, 6, 6)
    torch.testing.assert_close(other(x), net(x))


def test_bake_removes_parametrizations_and_keeps_outputs():
    net = _net()
    masks = topk_masks({k: v.abs() for k, v in prunable_parameters(net).items()}, 0.7)
    apply_masks(net, masks)
    x = torch.randn(3, 2, 6, 6)
    before = net(x)
    bake_masks(net)
    assert not hasattr(net[0], "parametrizations")
    torch.testing.assert_close(net(x), before)
    assert int((net[3].weight == 0).sum()) >= int((masks["3.weight"] == 0).sum())


def test_apply_masks_rejects_unknown_names_and_shapes():
    net = _net()
    with pytest.raises(ValueError, match="unknown parameters"):
        apply_masks(net, {"9.weight": torch.ones(1)})
    with pytest.raises(ValueError, match="shape"):
        apply_masks(net, {"3.weight": torch.ones(2, 2)})


def test_effective_grads_are_recorded_also_where_masked():
    net = nn.Sequential(nn.Linear(3, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 2.0, 3.0]]))
    apply_masks(net, {"0.weight": torch.tensor([[1.0, 0.0, 1.0]])})
    capture_effective_grads(net, True)
    x = torch.tensor([[1.0, 2.0, 3.0]])
    (net(x) ** 2).sum().backward()
    # y = 1*1 + 3*3 = 10; d(y^2)/dw_eff = 2*y*x = [20, 40, 60]
    g = effective_weight_grads(net)["0.weight"]
    torch.testing.assert_close(g, torch.tensor([[20.0, 40.0, 60.0]]))
    torch.testing.assert_close(prunable_parameters(net)["0.weight"].grad, torch.tensor([[20.0, 0.0, 60.0]]))
    capture_effective_grads(net, False)
    with pytest.raises(ValueError, match="no recorded gradient"):
        effective_weight_grads(net)


def test_baking_a_deep_copy_leaves_the_original_working():
    import copy

    net = _net()
    apply_masks(net, topk_masks({k: v.abs() for k, v in prunable_parameters(net).items()}, 0.5))
    x = torch.randn(2, 2, 6, 6)
    before = net(x)
    baked = bake_masks(copy.deepcopy(net))
    torch.testing.assert_close(baked(x), before)
    torch.testing.assert_close(net(x), before)  # the original keeps its masks
    assert hasattr(net[0], "parametrizations") and not hasattr(baked[0], "parametrizations")
