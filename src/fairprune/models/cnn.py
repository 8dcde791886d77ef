"""Image classifiers: torchvision ResNets, MobileNetV2 and a small ViT, never pretrained.

Every builder takes ``(input_shape, n_classes, **params)`` with ``input_shape = (C, H, W)`` and
works from 32 px up. torchvision's networks downsample by 32 in all, which leaves a 32 px image
with a 1x1 feature map after the third stage already; so, for small inputs, the stem is adapted as
is usual for CIFAR-sized images:

- ``small_input=True``: ResNet's 7x7/stride-2 conv + max-pool become one 3x3/stride-1 conv;
  MobileNetV2's first conv gets stride 1 (total stride 16 instead of 32).
- ``small_input=False``: torchvision's stems unchanged.
- ``small_input=None`` (default): ``True`` when ``min(H, W) < 128``.

A channel count other than 3 replaces the first conv with one of the same kind. No weights are
ever downloaded.
"""

from __future__ import annotations

import math

from torch import nn
from torchvision.models.mobilenetv2 import MobileNetV2
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.models.vision_transformer import VisionTransformer

__all__ = ["resnet10", "resnet18", "resnet50", "mobilenet_v2", "vit_small"]

SMALL_INPUT_BELOW = 128  # px: below this (min of H, W), small_input=None means True


def _check_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3 or any(int(s) < 1 for s in input_shape):
        raise ValueError(f"input_shape must be (C, H, W) with positive sizes, got {tuple(input_shape)}")
    c, h, w = (int(s) for s in input_shape)
    return c, h, w


def _use_small_stem(small_input: bool | None, h: int, w: int) -> bool:
    return min(h, w) < SMALL_INPUT_BELOW if small_input is None else bool(small_input)


def _kaiming_conv(conv: nn.Conv2d) -> nn.Conv2d:
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def _resnet(
    block: type[BasicBlock | Bottleneck],
    layers: list[int],
    input_shape: tuple[int, ...],
    n_classes: int,
    small_input: bool | None,
    width: int = 64,
) -> ResNet:
    c, h, w = _check_shape(input_shape)
    if not (isinstance(width, int) and width >= 1):
        raise ValueError(f"width must be a positive integer (64: torchvision's ResNet), got {width!r}")
    model = ResNet(block, layers, num_classes=n_classes)
    if width != 64:
        _narrow(model, block, layers, width, n_classes)
    if _use_small_stem(small_input, h, w):
        model.conv1 = _kaiming_conv(nn.Conv2d(c, width, kernel_size=3, stride=1, padding=1, bias=False))
        model.maxpool = nn.Identity()
    elif c != 3 or width != 64:
        model.conv1 = _kaiming_conv(nn.Conv2d(c, width, kernel_size=7, stride=2, padding=3, bias=False))
    return model


def _narrow(
    model: ResNet, block: type[BasicBlock | Bottleneck], layers: list[int], width: int, n_classes: int
) -> None:
    """Rebuild ``model``'s stages with ``width, 2 width, 4 width, 8 width`` channels (torchvision's
    64, 128, 256, 512 scaled), initialised as torchvision initialises them."""
    model.inplanes = width
    model.bn1 = nn.BatchNorm2d(width)
    model.layer1 = model._make_layer(block, width, layers[0])
    model.layer2 = model._make_layer(block, 2 * width, layers[1], stride=2)
    model.layer3 = model._make_layer(block, 4 * width, layers[2], stride=2)
    model.layer4 = model._make_layer(block, 8 * width, layers[3], stride=2)
    model.fc = nn.Linear(8 * width * block.expansion, n_classes)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            _kaiming_conv(m)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def resnet10(
    input_shape: tuple[int, ...], n_classes: int, small_input: bool | None = None, width: int = 64
) -> nn.Module:
    """ResNet-10: torchvision ``ResNet(BasicBlock, [1, 1, 1, 1])`` (the BiFP paper's model).

    Args:
        input_shape: ``(C, H, W)``.
        n_classes: Output logits.
        small_input: CIFAR-style stem (3x3 conv, no max-pool); ``None`` picks it below 128 px.
        width: Channels of the first stage (64: torchvision's; the stages have width x 1, 2, 4, 8).
    """
    return _resnet(BasicBlock, [1, 1, 1, 1], input_shape, n_classes, small_input, width)


def resnet18(
    input_shape: tuple[int, ...], n_classes: int, small_input: bool | None = None, width: int = 64
) -> nn.Module:
    """ResNet-18 (torchvision), stem as in :func:`resnet10`."""
    return _resnet(BasicBlock, [2, 2, 2, 2], input_shape, n_classes, small_input, width)


def resnet50(
    input_shape: tuple[int, ...], n_classes: int, small_input: bool | None = None, width: int = 64
) -> nn.Module:
    """ResNet-50 (torchvision, bottleneck blocks), stem as in :func:`resnet10`."""
    return _resnet(Bottleneck, [3, 4, 6, 3], input_shape, n_classes, small_input, width)


def mobilenet_v2(
    input_shape: tuple[int, ...],
    n_classes: int,
    small_input: bool | None = None,
    width_mult: float = 1.0,
    dropout: float = 0.2,
) -> nn.Module:
    """MobileNetV2 (torchvision; the BiFP paper's second model).

    Args:
        input_shape: ``(C, H, W)``.
        n_classes: Output logits.
        small_input: First conv with stride 1 instead of 2; ``None`` picks it below 128 px.
        width_mult: Channel multiplier of every layer.
        dropout: Dropout before the classifier.
    """
    c, h, w = _check_shape(input_shape)
    model = MobileNetV2(num_classes=n_classes, width_mult=width_mult, dropout=dropout)
    small = _use_small_stem(small_input, h, w)
    if small or c != 3:
        old = model.features[0][0]
        assert isinstance(old, nn.Conv2d)  # torchvision's Conv2dNormActivation
        stride = 1 if small else 2
        model.features[0][0] = _kaiming_conv(
            nn.Conv2d(c, old.out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        )
    return model


def _patch_size(side: int) -> int:
    """The largest divisor of ``side`` not above ``clamp(side // 8, 4, 16)`` (4 at 32 px, 8 at 64)."""
    target = max(4, min(16, side // 8))
    return max(p for p in range(1, target + 1) if side % p == 0)


def vit_small(
    input_shape: tuple[int, ...],
    n_classes: int,
    patch_size: int | None = None,
    hidden_dim: int = 192,
    num_layers: int = 6,
    num_heads: int = 3,
    mlp_dim: int = 768,
    dropout: float = 0.0,
) -> nn.Module:
    """A small Vision Transformer (torchvision ``VisionTransformer``, DeiT-Tiny widths, 6 layers).

    Args:
        input_shape: ``(C, H, W)`` with ``H == W``.
        n_classes: Output logits.
        patch_size: Side of a patch; must divide ``H``. ``None``: about ``H / 8`` clamped to
            [4, 16] (4 at 32 px, 8 at 64 px, 16 from 128 px), so there are about 64 tokens.
        hidden_dim: Token width.
        num_layers: Encoder blocks.
        num_heads: Attention heads.
        mlp_dim: Hidden width of each block's MLP.
        dropout: Dropout rate in the encoder.
    """
    c, h, w = _check_shape(input_shape)
    if h != w:
        raise ValueError(f"vit_small needs square inputs, got H={h}, W={w}")
    patch = _patch_size(h) if patch_size is None else int(patch_size)
    if patch < 1 or h % patch:
        raise ValueError(f"patch_size must be a positive divisor of the image side {h}, got {patch}")
    model = VisionTransformer(
        image_size=h,
        patch_size=patch,
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        mlp_dim=mlp_dim,
        dropout=dropout,
        num_classes=n_classes,
    )
    if c != 3:
        model.conv_proj = nn.Conv2d(c, hidden_dim, kernel_size=patch, stride=patch)
        fan_in = c * patch * patch
        nn.init.trunc_normal_(model.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(model.conv_proj.bias)
    return model
