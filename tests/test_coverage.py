"""Coverage: which weights are prunable (and chosen with ``prunable=``), what is left dense, tied
weights counted and masked once, and no layer removed whole by global top-k."""

from __future__ import annotations

import copy
import logging

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import fairprune
from fairprune.masks import apply_masks, bake_masks, get_masks, prunable_parameters, topk_masks
from fairprune.prunable import coverage, select_prunable, tied_parameters
from fairprune.pruners import BiFPSparsifier
from fairprune.topk import TopK

FAST = {"progress": False, "certify": 0}


class Mixed(nn.Module):
    """One of each kind: Embedding, MultiheadAttention, LSTM, LayerNorm, Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)  # 80
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)  # in_proj 192 + 24, out_proj 64 + 8
        self.rnn = nn.GRU(8, 4, batch_first=True)  # ih 96, hh 48, biases 12 + 12
        self.norm = nn.LayerNorm(4)  # 4 + 4
        self.head = nn.Linear(4, 2)  # 8 + 2

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids)
        h, _ = self.attn(h, h, h)
        h, _ = self.rnn(h)
        return self.head(self.norm(h[:, -1]))


def test_coverage_names_every_parameter_once_with_exact_counts():
    cover = coverage(Mixed())
    assert cover.prunable == {
        "attn.in_proj_weight": 192,
        "attn.out_proj.weight": 64,
        "rnn.weight_ih_l0": 96,
        "rnn.weight_hh_l0": 48,
        "head.weight": 8,
    }
    assert cover.dense["embed.weight"] == "Embedding.weight"
    assert cover.dense["attn.in_proj_bias"] == "MultiheadAttention.in_proj_bias"
    assert cover.dense["norm.weight"] == "LayerNorm.weight"
    assert (cover.n_prunable, cover.n_parameters) == (408, 408 + 80 + 24 + 8 + 24 + 8 + 2)
    assert "5 prunable weights, 408 of 554 parameters (73.6%)" in cover.describe()


def test_prunable_chooses_by_type_name_pattern_or_predicate():
    model = Mixed()
    assert "embed.weight" in select_prunable(model, [nn.Linear, nn.Embedding])
    assert list(prunable_parameters(model)) == ["embed.weight", "attn.out_proj.weight", "head.weight"]
    assert select_prunable(model, ["rnn.*"]) == ["rnn.weight_ih_l0", "rnn.weight_hh_l0"]
    assert select_prunable(model, lambda name, p: p.numel() > 90) == [
        "attn.in_proj_weight",
        "rnn.weight_ih_l0",
    ]
    assert len(select_prunable(model, None)) == 5  # back to the default: all but embeddings
    assert "embed.weight" in coverage(model).dense


@pytest.mark.parametrize(
    ("choice", "error", "message"),
    [
        (["nothing.*"], ValueError, r"prunable: the name 'nothing\.\*' matches no prunable weight"),
        ([nn.LayerNorm], ValueError, r"prunable: the type LayerNorm matches no prunable weight"),
        ("head.weight", TypeError, r"prunable must be a list of parameter names or patterns"),
        ([3], TypeError, r"prunable= lists names \(str\) or layer types"),
        (lambda name, p: False, ValueError, r"chose no weight of Mixed"),
    ],
)
def test_a_bad_prunable_choice_is_one_line_naming_what_was_expected(choice, error, message):
    x = torch.randint(0, 10, (8, 3))
    data = (x, torch.arange(8) % 2, torch.arange(8) % 2)
    with pytest.raises(error, match=message):
        fairprune.prune(Mixed(), data, data, prunable=choice, **FAST)


def test_masked_equals_manual_and_baked_for_attention_and_recurrent_weights():
    torch.manual_seed(0)
    model, ids = Mixed(), torch.randint(0, 10, (5, 4))
    manual = copy.deepcopy(model)
    masks = topk_masks({n: p.abs() for n, p in prunable_parameters(model).items()}, 0.6)
    with torch.no_grad():
        for name, mask in masks.items():
            manual.get_parameter(name).mul_(mask)
    apply_masks(model, masks)
    masked = model(ids)
    masked.sum().backward()  # a pass with a graph, then a deep copy: the RNN keeps no graph
    assert torch.allclose(masked, manual(ids), atol=0, rtol=0)
    assert (
        int(model.rnn.parametrizations.weight_hh_l0.original.grad[masks["rnn.weight_hh_l0"] == 0].abs().sum())
        == 0
    )
    baked = bake_masks(copy.deepcopy(model))
    assert not any(parametrize.is_parametrized(m) for m in baked.modules())
    assert torch.equal(baked(ids), masked.detach())
    assert sum(int((m == 0).sum()) for m in masks.values()) == round(0.6 * 408) == 245


class Tied(nn.Module):
    """Two Linears sharing one weight; a decoder tied to the embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)
        self.b.weight = self.a.weight
        self.decoder = nn.Linear(8, 20, bias=False)
        self.decoder.weight = self.emb.weight
        self.out = nn.Linear(20, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.b(torch.relu(self.a(self.emb(ids))))
        return self.out(self.decoder(h).mean(1))


def test_a_tied_weight_is_one_mask_counted_once_baked_once_and_stays_tied():
    torch.manual_seed(0)
    model, ids = Tied(), torch.randint(0, 20, (6, 3))
    assert tied_parameters(model) == {
        "emb.weight": ["emb.weight", "decoder.weight"],
        "a.weight": ["a.weight", "b.weight"],
    }
    params = prunable_parameters(model)
    assert list(params) == ["emb.weight", "a.weight", "out.weight"]  # the decoder's use makes emb prunable
    masks = topk_masks({n: p.abs() for n, p in params.items()}, 0.5)
    apply_masks(model, masks)
    assert model.a.parametrizations.weight[0] is model.b.parametrizations.weight[0]  # one mask
    masked = model(ids)
    assert sum(int((m == 0).sum()) for m in get_masks(model).values()) == round(0.5 * (160 + 64 + 40))
    baked = bake_masks(model)
    assert torch.equal(baked(ids), masked)
    assert baked.a.weight is baked.b.weight and baked.decoder.weight is baked.emb.weight
    assert torch.equal(baked.a.weight == 0, masks["a.weight"] == 0)


def test_prune_keeps_ties_and_refuses_channel_pruning_of_them_before_training():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 20, (200, 3), generator=gen)
    data = (ids, (ids[:, 0] >= 10).long(), torch.arange(200) % 2)
    torch.manual_seed(0)
    result = fairprune.prune(Tied(), data, data, sparsity=0.5, method="magnitude", **FAST)
    assert list(result.masks) == ["emb.weight", "a.weight", "out.weight"]
    assert result.model.a.weight is result.model.b.weight
    assert result.model.decoder.weight is result.model.emb.weight
    assert result.coverage.tied["a.weight"] == ["a.weight", "b.weight"]
    with pytest.raises(
        ValueError, match=r"structure='channel' cannot prune tied weights \['emb.weight', 'decoder"
    ):
        fairprune.prune(Tied(), data, data, sparsity=0.5, method="magnitude", structure="channel", **FAST)


def test_the_sparsifier_takes_prunable_and_reports_coverage():
    model = Mixed()
    sparsifier = BiFPSparsifier(0.5, prunable=["head.weight", "attn.*"])
    sparsifier.prepare(model)
    assert sorted(get_masks(model)) == ["attn.in_proj_weight", "attn.out_proj.weight", "head.weight"]
    assert sparsifier.coverage is not None and "rnn.weight_hh_l0" in sparsifier.coverage.dense
    assert sum(int((m == 0).sum()) for m in get_masks(model).values()) == round(0.5 * (192 + 64 + 8))


def test_global_topk_leaves_every_layer_a_weight_and_the_classifier_one_per_row(caplog):
    # "small" and "head" hold the lowest scores: plain top-k at 0.9 removes both whole
    scores = {"big": torch.rand(40, 25) + 1.0, "small": torch.rand(4, 5), "head": torch.rand(3, 4)}
    plain = topk_masks(scores, 0.9, floor=False)
    assert int(plain["small"].sum()) == 0 and int(plain["head"].sum()) == 0
    with caplog.at_level(logging.INFO, logger="fairprune.topk"):
        masks = topk_masks(scores, 0.9)
    assert "would remove ['small', 'head'] whole: kept its floor" in caplog.text
    assert [int(masks[n].sum()) for n in scores] == [103 - 4, 1, 3]  # 103 kept in all, still exact
    assert torch.equal(masks["small"].flatten().argmax(), scores["small"].flatten().argmax())
    kept_big = scores["big"][masks["big"] > 0]
    assert float(kept_big.min()) >= float(scores["big"][plain["big"] > 0].sort().values[4])  # lowest 4 gone
    with pytest.raises(ValueError, match=r"sparsity 0.99 keeps 11 weights, fewer than the 14 that leave"):
        TopK().masks({"a": torch.rand(3, 2), "b": torch.rand(1000) + 1, "head": torch.rand(12, 4)}, 0.99)


def test_a_masked_transformer_encoder_equals_the_manual_product_on_its_eval_fast_path():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, batch_first=True)
    model, x = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False), torch.randn(3, 5, 16)
    masks = topk_masks({n: p.abs() for n, p in prunable_parameters(model).items()}, 0.7)
    assert "layers.1.self_attn.in_proj_weight" in masks
    manual = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, mask in masks.items():
            manual.get_parameter(name).mul_(mask)
    apply_masks(model, masks)
    with torch.no_grad():  # eval + no_grad: torch's fused attention path reads the masked weights
        assert torch.equal(model.eval()(x), manual(x))


def test_prune_with_embeddings_chosen_prunes_them_to_the_exact_target():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 10, (160, 4), generator=gen)
    data = (ids, (ids[:, 0] >= 5).long(), torch.arange(160) % 2)
    torch.manual_seed(0)
    result = fairprune.prune(
        Mixed(), data, data, sparsity=0.75, method="magnitude", prunable=[nn.Embedding, nn.Linear], **FAST
    )
    assert list(result.masks) == ["embed.weight", "attn.out_proj.weight", "head.weight"]
    zeros = sum(int((m == 0).sum()) for m in result.masks.values())
    assert zeros == round(0.75 * (80 + 64 + 8)) == 114
    assert result.achieved_sparsity_all == 114 / 554
    assert "attn.in_proj_weight" in result.coverage.dense
    assert int((result.model.embed.weight == 0).sum()) >= int((result.masks["embed.weight"] == 0).sum())


@pytest.mark.parametrize("method", ["bifp", "magnitude", "prune_then_fair"])
def test_prune_keeps_the_users_choice_of_weights_for_every_method(method):
    """``prunable=`` reaches the method's own update: BiFP's sparsifier once reset it to the
    default, masking every Linear although one was chosen."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 6, generator=gen)
    data = (x, (x[:, 0] > 0).long(), (x[:, 1] > 0).long())
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
    result = fairprune.prune(
        model,
        data,
        data,
        sparsity=0.5,
        method=method,
        prunable=["2.weight"],
        config={"eval_every": 5},
        **FAST,
    )
    assert list(result.masks) == ["2.weight"]
    assert int((result.masks["2.weight"] == 0).sum()) == 64
    assert set(result.coverage.dense) >= {"0.weight", "4.weight"}
