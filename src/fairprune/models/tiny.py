"""The smallest CNN that structured pruning can act on (for :func:`fairprune.data.synthetic.
planted_bias_images`): one conv with prunable channels, BatchNorm, ReLU and a linear head."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["OneConvNet"]


class OneConvNet(nn.Module):
    """A 5x5 conv (a 1x5x5 image to 1x1) with ``width`` channels, BatchNorm, ReLU, linear head."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, width, 5)
        self.bn = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))
