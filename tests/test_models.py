import pytest
import torch
from torch import nn

from fairprune.models import MODELS, build_model

IMAGE_MODELS = sorted(set(MODELS) - {"mlp"})


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_every_image_model_gives_logits_and_backpropagates_at_32_px(name):
    torch.manual_seed(0)
    model = build_model(name, (3, 32, 32), 7)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)
    nn.functional.cross_entropy(out, torch.tensor([0, 6])).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(bool(g.abs().sum() > 0) for g in grads[-2:])  # the classifier learns


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_every_image_model_gives_logits_at_64_px(name):
    model = build_model(name, (3, 64, 64), 7).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)


def test_image_models_are_registered():
    assert {"resnet10", "resnet18", "resnet50", "mobilenet_v2", "vit_small"} <= set(MODELS)


@pytest.mark.parametrize("name", ["resnet10", "mobilenet_v2", "vit_small"])
def test_one_channel_input(name):
    model = build_model(name, (1, 32, 32), 3).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)


def test_resnet_stem_is_cifar_style_below_128_px_and_torchvision_from_128():
    small = build_model("resnet10", (3, 64, 64), 2)
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, nn.Identity)
    large = build_model("resnet10", (3, 128, 128), 2)
    assert large.conv1.kernel_size == (7, 7) and large.conv1.stride == (2, 2)
    assert isinstance(large.maxpool, nn.MaxPool2d)
    forced = build_model("resnet10", (3, 32, 32), 2, small_input=False)
    assert forced.conv1.kernel_size == (7, 7)


def test_resnet10_is_one_basic_block_per_stage():
    model = build_model("resnet10", (3, 32, 32), 2)
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [1, 1, 1, 1]


def test_mobilenet_stem_stride_follows_resolution():
    assert build_model("mobilenet_v2", (3, 32, 32), 2).features[0][0].stride == (1, 1)
    assert build_model("mobilenet_v2", (3, 128, 128), 2).features[0][0].stride == (2, 2)


@pytest.mark.parametrize(("side", "patch"), [(32, 4), (64, 8), (224, 16), (48, 6)])
def test_vit_patch_size_gives_about_64_tokens(side, patch):
    assert build_model("vit_small", (3, side, side), 2).patch_size == patch


def test_vit_rejects_non_square_and_bad_patch():
    with pytest.raises(ValueError, match="square"):
        build_model("vit_small", (3, 32, 64), 2)
    with pytest.raises(ValueError, match="divisor"):
        build_model("vit_small", (3, 32, 32), 2, patch_size=5)


def test_bad_input_shape_and_unknown_parameter_are_errors():
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        build_model("resnet18", (32, 32), 2)
    with pytest.raises(ValueError, match="bad parameters"):
        build_model("resnet18", (3, 32, 32), 2, depth=8)


@pytest.mark.parametrize("name", ["resnet10", "resnet50"])
def test_resnet_width_scales_every_stage(name):
    import torch

    narrow = build_model(name, (3, 32, 32), 2, width=16)
    wide = build_model(name, (3, 32, 32), 2)
    assert narrow.conv1.out_channels == 16 and narrow.layer4[0].conv1.out_channels == 128
    expansion = 4 if name == "resnet50" else 1
    assert narrow.fc.in_features == 128 * expansion
    assert narrow(torch.zeros(2, 3, 32, 32)).shape == (2, 2)
    n_narrow = sum(p.numel() for p in narrow.parameters())
    n_wide = sum(p.numel() for p in wide.parameters())
    assert 1 / 20 < n_narrow / n_wide < 1 / 12  # conv weights scale with width**2 (1/16)
    with pytest.raises(ValueError, match="width"):
        build_model(name, (3, 32, 32), 2, width=0)
