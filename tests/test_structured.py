import copy
import json
import math
import time

import pytest
import torch
from torch import nn

from fairprune.export import (
    count_flops,
    count_parameters,
    load_model,
    measure_latency,
    model_footprint,
    paired_latency,
    save_model,
)
from fairprune.masks import apply_masks, bake_masks, get_masks, prunable_parameters, sparsity
from fairprune.models import build_model
from fairprune.structured import (
    ChannelGroup,
    ChannelSlice,
    apply_channel_masks,
    channel_groups,
    expand_channel_masks,
    fpgm_channel_scores,
    group_param_counts,
    l1_channel_scores,
    n_prunable,
    slim,
    structured_topk,
)

X32 = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and a non-zero head, so that eval outputs say something."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
            elif isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / math.sqrt(m.in_features))
    return model.eval()


def _tiny(flatten: bool = False) -> nn.Module:
    torch.manual_seed(0)
    head = [nn.Flatten(), nn.Linear(3 * 6 * 6, 5)] if flatten else [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    body = [nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3), nn.ReLU()]
    if not flatten:
        body += [nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), *head, nn.Linear(4, 5)]
    else:
        body += head
    return _randomise(nn.Sequential(*body))


def _by_id(groups: list[ChannelGroup]) -> dict[str, ChannelGroup]:
    return {g.id: g for g in groups}


# --- channel groups ---------------------------------------------------------------------------


def test_groups_of_a_small_net_and_their_exact_counts():
    groups = _by_id(channel_groups(_tiny(), torch.randn(1, 2, 6, 6)))
    assert sorted(groups) == ["0", "3"]  # the classifier "6" is never a group
    assert (groups["0"].n_channels, groups["3"].n_channels) == (3, 4)
    slices = {(s.name, s.dim): s.prunable for s in groups["0"].slices}
    assert slices == {("0.weight", 0): True, ("0.bias", 0): False, ("1.weight", 0): False,
                      ("1.bias", 0): False, ("3.weight", 1): True}  # fmt: skip
    # per channel: conv 0's filter (2 * 1 * 1) + conv 3's input slice (4 * 3 * 3); conv 3's filter
    # (3 * 3 * 3) + the classifier's input column (5)
    assert group_param_counts(groups.values()) == {"0": 2 + 36, "3": 27 + 5}


def test_channel_groups_leave_the_model_as_it_was():
    model = _tiny().train()
    apply_masks(model, {"0.weight": torch.zeros(3, 2, 1, 1)})
    stats = model[1].running_mean.clone()
    groups = channel_groups(model, torch.randn(4, 2, 6, 6), ignored=["3"])
    assert [g.id for g in groups] == ["0"]  # conv 3's output channels are ignored
    assert model.training and torch.equal(model[1].running_mean, stats)
    assert torch.equal(get_masks(model)["0.weight"], torch.zeros(3, 2, 1, 1))
    with pytest.raises(ValueError, match="unknown modules"):
        channel_groups(model, torch.randn(1, 2, 6, 6), ignored=["nope"])


def test_flatten_spreads_a_channel_over_many_classifier_inputs():
    (group,) = channel_groups(_tiny(flatten=True), torch.randn(1, 2, 6, 6))
    fc_slice = next(s for s in group.slices if s.name == "4.weight")
    assert fc_slice.dim == 1 and len(fc_slice.positions) == 108
    assert torch.bincount(fc_slice.channels).tolist() == [36, 36, 36]
    assert group_param_counts([group]) == {"0": 2 + 36 * 5}


def test_resnet10_groups_tie_residual_adds_and_leave_the_classes_alone():
    model = build_model("resnet10", (3, 32, 32), 4)
    groups = _by_id(channel_groups(model, X32[:1]))
    assert len(groups) == 8  # 4 stages x (block input width tied by the add, inner width)
    for g in groups.values():
        assert ("fc.weight", 0) not in {(s.name, s.dim) for s in g.slices}
    stem = {(s.name, s.dim) for s in groups["conv1"].slices}
    assert {("conv1.weight", 0), ("layer1.0.conv2.weight", 0), ("layer1.0.conv1.weight", 1)} <= stem
    assert {("layer2.0.conv1.weight", 1), ("layer2.0.downsample.0.weight", 1)} <= stem


def test_mobilenet_depthwise_conv_shares_its_expansion_group():
    model = build_model("mobilenet_v2", (3, 32, 32), 4, width_mult=0.5)
    groups = channel_groups(model, X32[:1])
    names = [{s.name for s in g.slices} for g in groups]
    assert any({"features.2.conv.0.0.weight", "features.2.conv.1.0.weight"} <= n for n in names)


def test_vit_offers_heads_and_mlp_hidden_widths():
    model = build_model("vit_small", (3, 32, 32), 4, hidden_dim=32, mlp_dim=48, num_layers=2, num_heads=2)
    groups = _by_id(channel_groups(model, X32[:1]))
    layers = [f"encoder.layers.encoder_layer_{i}" for i in range(2)]
    assert sorted(groups) == sorted([f"{n}.mlp.0" for n in layers] + [f"{n}.self_attention" for n in layers])
    assert [(groups[f"{n}.mlp.0"].kind, groups[f"{n}.mlp.0"].n_channels) for n in layers] == [
        ("channels", 48)
    ] * 2
    assert [
        (groups[f"{n}.self_attention"].kind, groups[f"{n}.self_attention"].n_channels) for n in layers
    ] == [("heads", 2)] * 2


# --- top-k, scores ----------------------------------------------------------------------------


def _hand_groups() -> list[ChannelGroup]:
    def piece(name: str, shape: tuple[int, ...], dim: int) -> ChannelSlice:
        n = shape[dim]
        return ChannelSlice(name, dim, torch.arange(n), torch.arange(n), shape, True)

    return [
        ChannelGroup("a", 3, (piece("w1", (3, 4), 0),)),  # 4 weights per channel
        ChannelGroup("b", 2, (piece("w2", (2, 5), 0),)),  # 5 weights per channel
    ]


def test_structured_topk_drops_lowest_scores_to_the_nearest_channel():
    scores = {"a": torch.tensor([0.1, 0.5, 0.9]), "b": torch.tensor([0.2, 0.3])}
    # 22 weights, target 0.4 -> 8.8: drop a0 (4), then b0 (9 is nearer 8.8 than 4); b1 is b's last
    keep = structured_topk(scores, _hand_groups(), 0.4, n_prunable=22)
    assert keep["a"].tolist() == [False, True, True]
    assert keep["b"].tolist() == [False, True]
    # target 0.25 -> 5.5: 4 is nearer than 9, so only a0 goes
    keep = structured_topk(scores, _hand_groups(), 0.25, n_prunable=22)
    assert keep["a"].tolist() == [False, True, True] and keep["b"].tolist() == [True, True]


def test_structured_topk_counts_a_tensor_shared_by_two_groups_exactly():
    # w (3, 2): group "out" owns dim 0, group "in" owns dim 1
    out_ = ChannelSlice("w", 0, torch.arange(3), torch.arange(3), (3, 2), True)
    in_ = ChannelSlice("w", 1, torch.arange(2), torch.arange(2), (3, 2), True)
    groups = [ChannelGroup("out", 3, (out_,)), ChannelGroup("in", 2, (in_,))]
    scores = {"out": torch.tensor([0.0, 5.0, 6.0]), "in": torch.tensor([1.0, 7.0])}
    # dropping row 0 removes 2 weights, then column 0 only 2 more (not 3): 4 of 6
    keep = structured_topk(scores, groups, 4 / 6, n_prunable=6)
    assert keep["out"].tolist() == [False, True, True] and keep["in"].tolist() == [False, True]


def test_structured_topk_round_to_keeps_multiples():
    group = ChannelGroup("a", 5, (ChannelSlice("w", 0, torch.arange(5), torch.arange(5), (5, 1), True),))
    scores = {"a": torch.tensor([5.0, 1.0, 4.0, 2.0, 3.0])}
    # units: the 5 mod 2 = 1 weakest channel {1}, then {3, 4} (mean 2.5); {2, 0} always stays
    keep = structured_topk(scores, [group], 0.6, n_prunable=5, round_to=2)
    assert keep["a"].tolist() == [True, False, True, False, False]
    keep = structured_topk(scores, [group], 0.2, n_prunable=5, round_to=2)
    assert keep["a"].tolist() == [True, False, True, True, True]
    with pytest.raises(ValueError, match="out of reach"):
        structured_topk(scores, [group], 0.8, n_prunable=5, round_to=2)
    assert structured_topk(scores, [group], 0.0, n_prunable=5, round_to=8)["a"].all()


def test_structured_topk_rejects_bad_inputs():
    scores = {"a": torch.rand(3), "b": torch.rand(2)}
    with pytest.raises(ValueError, match="out of reach"):
        structured_topk(scores, _hand_groups(), 0.9, n_prunable=22)
    with pytest.raises(ValueError, match="shape"):
        structured_topk({"a": torch.rand(4)}, _hand_groups(), 0.5, n_prunable=22)
    with pytest.raises(ValueError, match="unknown groups"):
        structured_topk({"c": torch.rand(3)}, _hand_groups(), 0.5, n_prunable=22)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        structured_topk(scores, _hand_groups(), 1.0, n_prunable=22)


def test_l1_and_fpgm_scores_on_a_hand_built_conv():
    model = nn.Sequential(nn.Conv2d(1, 3, (1, 2), bias=False), nn.ReLU(), nn.Conv2d(3, 1, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, -8.0]]).reshape(3, 1, 1, 2))
        model[2].weight.copy_(torch.tensor([1.0, -2.0, 0.5]).reshape(1, 3, 1, 1))
    groups = channel_groups(model, torch.randn(1, 1, 3, 3))
    assert [g.id for g in groups] == ["0"]
    # L1: the filter's |w| plus the consumer's input column
    assert l1_channel_scores(model, groups, normalize=False)["0"].tolist() == [1.0, 9.0, 14.5]
    normalized = l1_channel_scores(model, groups)["0"]  # divided by the mean, 24.5 / 3
    assert torch.allclose(normalized, torch.tensor([1.0, 9.0, 14.5]) / (24.5 / 3))
    # FPGM: sum of distances to the other filters; |f0-f1| = 5, |f0-f2| = 10, |f1-f2| = sqrt(9+144)
    d12 = math.sqrt(153)
    expected = torch.tensor([15.0, 5.0 + d12, 10.0 + d12])
    assert torch.allclose(fpgm_channel_scores(model, groups, normalize=False)["0"], expected)
    assert torch.allclose(fpgm_channel_scores(model, groups)["0"], expected / expected.mean())


# --- masked == slimmed ------------------------------------------------------------------------

CASES = [("resnet10", {}), ("mobilenet_v2", {"width_mult": 0.5})]  # resnet18: same blocks as resnet10


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def grouped(request):
    name, params = request.param
    torch.manual_seed(0)
    model = _randomise(build_model(name, (3, 32, 32), 5, **params))
    return model, channel_groups(model, X32[:1])


@pytest.mark.parametrize("target", [0.5, 0.7])
def test_masked_model_equals_slimmed_model(grouped, target):
    model, groups = grouped
    gen = torch.Generator().manual_seed(int(target * 10))
    scores = {g.id: torch.rand(g.n_channels, generator=gen) for g in groups}  # random channel keep
    n = n_prunable(model)
    keep = structured_topk(scores, groups, target, n_prunable=n)
    masks = expand_channel_masks(model, groups, keep)

    # sparsity: within half of the largest per-channel count (the channel crossing the target)
    bound = max(group_param_counts(groups).values()) / 2
    assert abs(sparsity(masks) - target) * n <= bound

    masked = copy.deepcopy(model)
    apply_masks(masked, masks)
    slimmed = slim(masked, groups, keep, X32[:1]).eval()
    with torch.no_grad():  # slim() left `masked` (a deep copy of a parametrized model) working
        expected, got = masked(X32), slimmed(X32)
    assert got.shape == (3, 5)  # all classes kept
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4 * float(expected.abs().max()))
    # the slim model holds exactly the weights the masks keep
    assert n_prunable(slimmed) == n - sum(int((m == 0).sum()) for m in masks.values())
    assert count_parameters(slimmed) < count_parameters(model)
    assert not any(hasattr(m, "parametrizations") for m in slimmed.modules())


def test_round_to_keeps_hardware_friendly_widths_near_the_target(grouped):
    model, groups = grouped
    n = n_prunable(model)
    keep = structured_topk(l1_channel_scores(model, groups), groups, 0.7, n_prunable=n, round_to=8)
    assert all(int(k.sum()) % 8 == 0 or bool(k.all()) for k in keep.values())
    achieved = sparsity(expand_channel_masks(model, groups, keep))
    assert abs(achieved - 0.7) * n <= 8 * max(group_param_counts(groups).values()) / 2


def test_bias_and_batchnorm_masks_zero_dropped_channels_and_keep_outputs(grouped):
    model, groups = grouped
    keep = {g.id: torch.arange(g.n_channels) % 3 != 0 for g in groups}
    masked = copy.deepcopy(model)
    weight_masks = apply_channel_masks(masked, groups, keep)
    assert weight_masks.keys() == prunable_parameters(model).keys()
    assert all(torch.equal(get_masks(masked)[k], v) for k, v in weight_masks.items())
    bn = next(m for m in masked.modules() if isinstance(m, nn.BatchNorm2d))
    assert bn.bias[0] == 0 and bn.weight[0] == 0 and bn.bias.shape == bn.parametrizations.bias.original.shape
    slimmed = slim(masked, groups, keep, X32[:1]).eval()
    with torch.no_grad():
        expected = masked(X32)
        torch.testing.assert_close(slimmed(X32), expected, rtol=0, atol=1e-4 * float(expected.abs().max()))
    plain = copy.deepcopy(model)
    apply_masks(plain, expand_channel_masks(model, groups, keep))
    with torch.no_grad():
        torch.testing.assert_close(plain(X32), expected, rtol=0, atol=1e-4 * float(expected.abs().max()))
    assert not any(hasattr(m, "parametrizations") for m in bake_masks(masked).modules())


def test_masked_equals_slimmed_in_train_mode_too():
    torch.manual_seed(1)
    model = _randomise(build_model("resnet10", (3, 32, 32), 5))
    groups = channel_groups(model, X32[:1])
    keep = {g.id: torch.arange(g.n_channels) % 2 == 0 for g in groups}
    masked = copy.deepcopy(model)
    apply_masks(masked, expand_channel_masks(model, groups, keep))
    slimmed = slim(masked, groups, keep, X32[:1])
    masked.train()
    slimmed.train()
    torch.testing.assert_close(slimmed(X32), masked(X32), rtol=0, atol=1e-4)


def test_vit_mlp_masks_equal_slimmed():
    torch.manual_seed(0)
    model = _randomise(
        build_model("vit_small", (3, 32, 32), 4, hidden_dim=32, mlp_dim=48, num_layers=2, num_heads=2)
    )
    groups = channel_groups(model, X32[:1])
    keep = structured_topk(l1_channel_scores(model, groups), groups, 0.3, n_prunable=n_prunable(model))
    masked = copy.deepcopy(model)
    apply_masks(masked, expand_channel_masks(model, groups, keep))
    slimmed = slim(masked, groups, keep, X32[:1]).eval()
    with torch.no_grad():
        expected = masked(X32)
        torch.testing.assert_close(slimmed(X32), expected, rtol=0, atol=1e-4 * float(expected.abs().max()))


def test_keep_must_be_bool_with_one_channel_per_group():
    model = _tiny()
    groups = channel_groups(model, torch.randn(1, 2, 6, 6))
    with pytest.raises(ValueError, match="at least one True"):
        expand_channel_masks(model, groups, {"0": torch.zeros(3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="bool"):
        slim(model, groups, {"0": torch.ones(3)}, torch.randn(1, 2, 6, 6))


# --- export -----------------------------------------------------------------------------------


def test_flops_of_a_linear_layer_are_two_in_out_batch():
    assert count_flops(nn.Linear(7, 3), torch.randn(5, 7)) == 2 * 7 * 3 * 5


def test_latency_is_a_positive_float_and_restores_train_mode():
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).train()
    latency = measure_latency(model, torch.randn(8, 4), repeats=3, warmup=1)
    assert isinstance(latency, float) and latency > 0
    assert model.training and model[1].num_batches_tracked == 0
    with pytest.raises(ValueError, match=r"need repeats >= 1 and warmup >= 0, got repeats=0, warmup=1"):
        measure_latency(model, torch.randn(8, 4), repeats=0, warmup=1)


class _Sleeper(nn.Module):
    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        time.sleep(self.seconds)
        return x


def test_paired_latency_times_the_two_models_in_turns_and_gives_their_ratio():
    dense, shipped = _Sleeper(0.004), _Sleeper(0.001)
    timed = paired_latency(dense, shipped, torch.randn(2, 3), repeats=6)
    assert set(timed) == {"latency_ms", "latency_dense_ms", "latency_ratio"}
    assert timed["latency_ratio"] == pytest.approx(timed["latency_ms"] / timed["latency_dense_ms"])
    assert 3.9 < timed["latency_dense_ms"] < 8 and 0.9 < timed["latency_ms"] < 4
    assert timed["latency_ratio"] < 0.6
    assert dense.calls == shipped.calls == 2 * (3 + 3)  # two turns of 3 warm-up + 3 timed passes


def test_model_footprint_by_hand():
    """The one footprint of a sweep's columns and a card: a 7 -> 3 Linear with 9 of its 21
    weights zeroed beside a 7 -> 5 dense one."""
    shipped, dense = nn.Linear(7, 3), nn.Linear(7, 5)
    with torch.no_grad():
        shipped.weight.view(-1)[:9] = 0.0
    assert model_footprint(shipped) == {"params": 24, "nonzero_params": 15}
    foot = model_footprint(shipped, dense, torch.randn(4, 7), latency=False)
    assert foot == {"params": 24, "nonzero_params": 15, "dense_params": 40, "flops": 42, "dense_flops": 70}
    timed = model_footprint(shipped, dense, torch.randn(4, 7), repeats=2)
    assert {"latency_ms", "latency_dense_ms", "latency_ratio"} <= set(timed)
    assert "latency_dense_ms" not in model_footprint(shipped, None, torch.randn(4, 7), repeats=2)


def test_onnx_latency_times_the_exported_model(tmp_path):
    pytest.importorskip("onnxruntime")
    from fairprune.export import measure_onnx_latency, write_onnx

    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    path = tmp_path / "m.onnx"
    write_onnx(model, path, torch.randn(8, 4))
    latency = measure_onnx_latency(path, torch.randn(8, 4), repeats=3, warmup=1)
    assert isinstance(latency, float) and latency > 0
    with pytest.raises(ValueError, match=r"need repeats >= 1 and warmup >= 0, got repeats=1, warmup=-1"):
        measure_onnx_latency(path, torch.randn(8, 4), repeats=1, warmup=-1)


def test_count_parameters_nonzero_sees_masks():
    model = nn.Linear(4, 2)
    apply_masks(model, {"weight": torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0]])})
    with torch.no_grad():
        model.bias.fill_(1.0)
    assert count_parameters(model) == 10 and count_parameters(model, nonzero=True) == 4


def test_save_and_load_a_slimmed_model_round_trips(tmp_path):
    spec = {"name": "resnet10", "input_shape": [3, 32, 32], "n_classes": 5, "params": {}}
    model = _randomise(build_model(spec["name"], (3, 32, 32), 5))
    groups = channel_groups(model, X32[:1])
    keep = structured_topk(l1_channel_scores(model, groups), groups, 0.5, n_prunable=n_prunable(model))
    slimmed = slim(model, groups, keep, X32[:1]).eval()
    masks = get_masks(slimmed)
    card = {"model": spec, "sparsity": 0.5, "target": "Blond_Hair"}
    save_model(tmp_path / "run", slimmed, masks, card)
    loaded, loaded_masks, loaded_card = load_model(tmp_path / "run")
    assert loaded_card == card
    assert loaded_masks.keys() == masks.keys()
    assert count_parameters(loaded) == count_parameters(slimmed)
    with torch.no_grad():
        torch.testing.assert_close(loaded(X32), slimmed(X32))
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["card.json", "masks.pt", "model.pt"]
    assert json.loads((tmp_path / "run" / "card.json").read_text())["target"] == "Blond_Hair"


def test_save_rejects_a_card_that_is_not_json(tmp_path):
    with pytest.raises(ValueError, match="JSON"):
        save_model(tmp_path / "x", nn.Linear(2, 2), {}, {"bad": {1, 2}})
    assert not (tmp_path / "x" / "card.json").exists()


def test_the_one_slim_check_refuses_nan_outputs_and_measures_the_difference():
    """``fairprune.structured.check_slim`` is what the one call and the sweep's footprint run
    before shipping a slimmed model: a NaN difference is a mismatch (it once passed ``diff >
    bound`` in a second copy of this check), and an agreeing model returns its largest difference."""
    from fairprune.errors import SlimMismatchError
    from fairprune.structured import check_slim

    masked = nn.Linear(3, 2)
    same = copy.deepcopy(masked)
    x = torch.randn(4, 3)
    assert check_slim(masked, same, x) == 0.0
    broken = copy.deepcopy(masked)
    with torch.no_grad():
        broken.bias.fill_(float("nan"))
    with pytest.raises(SlimMismatchError, match="differs from the masked one by nan"):
        check_slim(masked, broken, x)
