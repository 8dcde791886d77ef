"""The shipped format from the Python API: bit packing, the sparse safetensors layout, export_model
for built-in and custom modules, and a slimmed ResNet10 through ONNX and onnxruntime."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from fairprune.export import (
    ExportedModel,
    evaluate_exported,
    export_model,
    load_exported,
    load_weights,
    onnx_outputs,
    save_weights,
)
from fairprune.export._weights import pack_bits, unpack_bits
from fairprune.masks import apply_masks, bake_masks, topk_masks
from fairprune.models import build_model
from fairprune.structured import channel_groups, l1_channel_scores, n_prunable, slim, structured_topk


def test_pack_bits_puts_the_first_flag_in_the_top_bit():
    flags = torch.tensor([1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1], dtype=torch.bool)
    packed = pack_bits(flags)
    assert packed.tolist() == [0b10000001, 0b10100000] and packed.dtype == torch.uint8
    assert torch.equal(unpack_bits(packed, 11), flags)


def test_sparse_layout_round_trips_exactly_and_stores_only_what_is_smaller(tmp_path):
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(64, 50, generator=gen) * (torch.rand(64, 50, generator=gen) < 0.2)
    rare = torch.zeros(40, 50)
    rare.view(-1)[torch.tensor([3, 1999, 700])] = torch.tensor([1.5, -2.0, 0.25])
    state = {
        "w": weight,  # 20% dense: bitmask + values
        "rare": rare,  # 3 of 2000 kept: 8 bytes per kept entry beat a 250-byte bitmask
        "b": torch.randn(64, generator=gen),  # no zeros: stored as it is
        "zeros": torch.zeros(3, 5),  # nothing kept: no indices, no values
        "steps": torch.tensor(7),  # an integer buffer
    }
    save_weights(tmp_path / "s.safetensors", state, "sparse")
    loaded = load_weights(tmp_path / "s.safetensors")
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    header_len = int.from_bytes((tmp_path / "s.safetensors").read_bytes()[:8], "little")
    header = json.loads((tmp_path / "s.safetensors").read_bytes()[8 : 8 + header_len])
    assert sorted(k for k in header if k != "__metadata__") == [
        "b",
        "rare:indices",
        "rare:values",
        "steps",
        "w:bitmask",
        "w:values",
        "zeros:indices",
        "zeros:values",
    ]
    assert header["rare:indices"]["dtype"] == "I32" and header["rare:values"]["shape"] == [3]
    nnz = int(torch.count_nonzero(weight))
    assert header["w:values"]["shape"] == [nnz] and header["w:bitmask"]["shape"] == [math.ceil(3200 / 8)]
    with pytest.raises(ValueError, match="layout must be one of"):
        save_weights(tmp_path / "x.safetensors", state, "csr")


def test_a_file_without_fairprune_metadata_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(ValueError, match="not a fairprune weight file"):
        load_weights(tmp_path / "plain.safetensors")


def _masked_mlp() -> nn.Module:
    torch.manual_seed(0)
    model = build_model("mlp", (6,), 3, hidden=[32])
    apply_masks(
        model, topk_masks({k: p.abs() for k, p in model.named_parameters() if k.endswith("weight")}, 0.75)
    )
    return model


def test_export_model_of_a_masked_module_bakes_it_and_reloads_from_the_card(tmp_path):
    model = _masked_mlp()
    architecture = {"name": "mlp", "input_shape": [6], "n_classes": 3, "params": {"hidden": [32]}}
    x = torch.randn(5, 6)
    export_model(
        model, tmp_path / "m", architecture=architecture, example_input=x, about={"pruning": {"method": "x"}}
    )
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert list(card["files"]) == ["model.sparse.safetensors"]  # auto: 75% zeros packs smaller
    assert card["footprint"]["sparsity"] == 0.75 and card["pruning"] == {"method": "x"}
    assert "metrics" not in card and card["model"]["input"]["dtype"] == "float32"
    reloaded = load_exported(tmp_path / "m")
    with torch.no_grad():
        torch.testing.assert_close(reloaded.model(x), bake_masks(model).eval()(x), rtol=0, atol=0)


class _Custom(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * 2.0


def test_a_custom_architecture_needs_a_module_to_reload_and_runs_in_onnxruntime(tmp_path):
    torch.manual_seed(1)
    model = _Custom().eval()
    x = torch.randn(4, 4)
    export_model(model, tmp_path / "c", example_input=x, onnx=True)
    with pytest.raises(ValueError, match="names no built-in architecture.*pass model="):
        load_exported(tmp_path / "c")
    reloaded = load_exported(tmp_path / "c", model=_Custom())
    fresh = torch.randn(9, 4)  # another batch size: the batch dimension is dynamic
    with torch.no_grad():
        expected = model(fresh)
        torch.testing.assert_close(reloaded.model(fresh), expected, rtol=0, atol=0)
    assert float((onnx_outputs(tmp_path / "c" / "model.onnx", fresh) - expected).abs().max()) <= 1e-4


def test_export_model_rejects_bad_arguments(tmp_path):
    model = _Custom()
    with pytest.raises(ValueError, match="weights must be one of"):
        export_model(model, tmp_path / "a", weights="zip")
    with pytest.raises(ValueError, match=r"may not set the computed card sections \['metrics'\]"):
        export_model(model, tmp_path / "b", about={"metrics": {}})
    with pytest.raises(ValueError, match="onnx=True needs data= or example_input="):
        export_model(model, tmp_path / "c", onnx=True)
    with pytest.raises(ValueError, match="unknown model 'resnet9'"):
        export_model(
            model, tmp_path / "d", architecture={"name": "resnet9", "input_shape": [4], "n_classes": 2}
        )


def _randomised_resnet10() -> nn.Module:
    """Non-trivial BatchNorm statistics, so that eval outputs say something."""
    model = build_model("resnet10", (3, 32, 32), 2)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return model.eval()


def test_a_slimmed_resnet10_matches_in_onnxruntime_and_reloads_from_its_card(tmp_path):
    model = _randomised_resnet10()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    groups = channel_groups(model, x[:1])
    keep = structured_topk(l1_channel_scores(model, groups), groups, 0.5, n_prunable=n_prunable(model))
    slimmed = slim(model, groups, keep, x[:1]).eval()
    architecture = {"name": "resnet10", "input_shape": [3, 32, 32], "n_classes": 2, "params": {}}
    export_model(slimmed, tmp_path / "r", dense=model, architecture=architecture, example_input=x, onnx=True)
    card = json.loads((tmp_path / "r" / "card.json").read_text())
    assert list(card["files"]) == ["model.safetensors", "model.onnx"]
    assert card["files"]["model.onnx"]["max_abs_diff_vs_pytorch"] <= 1e-4
    assert card["footprint"]["params"] < 0.6 * card["footprint"]["dense_params"]
    assert card["footprint"]["flops"] < card["footprint"]["dense_flops"]
    foot = card["footprint"]  # timed as the sweep times its footprint columns: in turns
    assert foot["latency_ratio"] == pytest.approx(foot["latency_ms"] / foot["latency_dense_ms"])
    fresh = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = slimmed(fresh)
        reloaded = load_exported(tmp_path / "r").model(fresh)
    torch.testing.assert_close(reloaded, expected, rtol=0, atol=0)
    assert float((onnx_outputs(tmp_path / "r" / "model.onnx", fresh) - expected).abs().max()) <= 1e-4


def test_evaluate_exported_needs_a_card_with_the_split(planted_splits, tmp_path):
    exported = ExportedModel(nn.Linear(25, 2), {"model": {"input_shape": [25]}, "metrics": {}})
    with pytest.raises(ValueError, match="holds no metrics of the 'train' split"):
        evaluate_exported(exported, planted_splits, split="train")
    with pytest.raises(ValueError, match=r"inputs have shape \[25\], the card's model takes \[7\]"):
        evaluate_exported(ExportedModel(nn.Linear(7, 2), {"model": {"input_shape": [7]}}), planted_splits)


def test_an_onnx_file_that_disagrees_with_the_weights_fails_the_evaluation(planted_splits, tmp_path):
    architecture = {"name": "mlp", "input_shape": [25], "n_classes": 2, "params": {"hidden": [8]}}
    ships = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model("mlp", (25,), 2, hidden=[8])
        ships.append(
            export_model(
                model, tmp_path / f"m{seed}", data=planted_splits, architecture=architecture, onnx=True
            )
        )
    card = json.loads((ships[0] / "card.json").read_text())
    (ships[0] / "model.onnx").write_bytes((ships[1] / "model.onnx").read_bytes())  # the other model's graph
    card["files"]["model.onnx"]["sha256"] = json.loads((ships[1] / "card.json").read_text())["files"][
        "model.onnx"
    ]["sha256"]
    (ships[0] / "card.json").write_text(json.dumps(card))
    result = evaluate_exported(load_exported(ships[0]), planted_splits, directory=ships[0])
    assert result.table["ok"].all() and not result.passed
    assert len(result.failures) == 1 and result.failures[0].startswith("model.onnx differs from PyTorch by")
    assert evaluate_exported(load_exported(ships[1]), planted_splits, directory=ships[1]).passed
