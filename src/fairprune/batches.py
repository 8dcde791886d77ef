"""A batch as the model takes it: the one conversion between a split's stored ``x`` and a model.

Splits keep images as uint8 (four times smaller, mapped from the cache); every loop, pruner,
measurement and export converts a batch here, on the device it runs on.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fairprune.data.images import augment as augment_images
from fairprune.data.images import to_float
from fairprune.model_io import Features, rows, to_device

__all__ = ["model_inputs", "example_input"]


def model_inputs(
    x: Features, device: str, *, augment: bool = False, generator: torch.Generator | None = None
) -> Features:
    """A batch as the model takes it: uint8 images become float in [-1, 1] (optionally augmented
    first); other inputs, and tuples or dicts of tensors, pass through. Moved to ``device``."""
    if not isinstance(x, Tensor):
        return to_device(x, device)
    x = x.to(device)
    if x.dtype == torch.uint8:
        x = x.contiguous()  # a batch of images mapped from the cache has channels-last strides
        if augment:
            x = augment_images(x, generator)
        x = to_float(x)
    return x


def example_input(model: nn.Module, x: Features, n: int = 1) -> Features:
    """The first ``n`` samples of a split's ``x`` as the model takes them, on the model's device
    (one for tracing; a few for the checks of a slimmed model)."""
    device = next(model.parameters()).device
    return model_inputs(rows(x, 0, n), str(device))
