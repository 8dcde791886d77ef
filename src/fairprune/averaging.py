"""Weight averaging: an exponential moving average of a model's trained parameters.

Every validation check of a training loop (dual step, checkpoint selection) can read the
averaged weights instead of the last iterate (``train.average``): SGD's last iterate moves from
one check to the next by more than the fairness term does, so the exact violation the multiplier
follows swings with it; the average moves less (Polyak & Juditsky, 1992; the EMA of weights,
e.g. timm's ``ModelEmaV2``). Buffers (masks, batch-norm statistics) are not averaged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["WeightAverage"]


class WeightAverage:
    """``a ← decay · a + (1 − decay) · θ`` after every update, for each trainable floating-point
    parameter ``θ`` of ``model``; ``a`` starts at the parameters' values when created.

    Args:
        model: The model whose parameters are averaged (the same objects throughout).
        decay: In [0, 1): 0 keeps the last iterate; ``1 - 1/h`` averages over about ``h`` updates.

    Raises:
        ValueError: If ``decay`` is outside [0, 1).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1); received {decay}")
        self.decay = float(decay)
        self.params = [p for p in model.parameters() if p.requires_grad and p.is_floating_point()]
        self.average = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        """Move the average toward the parameters' current values."""
        if self.params:
            torch._foreach_lerp_(self.average, [p.detach() for p in self.params], 1.0 - self.decay)

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """The averaged values in the parameters inside the block; the trained ones restored after."""
        with torch.no_grad():
            trained = [p.detach().clone() for p in self.params]
            for p, a in zip(self.params, self.average, strict=True):
                p.copy_(a)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, t in zip(self.params, trained, strict=True):
                    p.copy_(t)
