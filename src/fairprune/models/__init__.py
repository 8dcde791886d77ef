"""Built-in models. Any ``nn.Module`` classifier works through the Python API."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from torch import nn

from fairprune.models.cnn import mobilenet_v2, resnet10, resnet18, resnet50, vit_small
from fairprune.models.mlp import MLP

__all__ = ["MODELS", "build_model", "MLP"]


def _mlp(
    input_shape: tuple[int, ...], n_classes: int, hidden: list[int] | tuple[int, ...] = (256, 256)
) -> nn.Module:
    return MLP(math.prod(input_shape), n_classes, tuple(int(h) for h in hidden))


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": _mlp,
    "resnet10": resnet10,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "mobilenet_v2": mobilenet_v2,
    "vit_small": vit_small,
}


def build_model(name: str, input_shape: tuple[int, ...], n_classes: int, **params: Any) -> nn.Module:
    """The built-in model ``name`` for inputs of ``input_shape`` (without the batch dim)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    try:
        return MODELS[name](input_shape, n_classes, **params)
    except TypeError as err:
        raise ValueError(f"bad parameters {sorted(params)} for model {name!r}: {err}") from err
