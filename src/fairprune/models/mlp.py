"""A multilayer perceptron for tabular data."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["MLP"]


class MLP(nn.Module):
    """``Linear -> ReLU`` blocks, then a linear classifier head.

    Args:
        in_features: Input width.
        n_classes: Output logits.
        hidden: Width of each hidden layer.
    """

    def __init__(self, in_features: int, n_classes: int, hidden: tuple[int, ...] = (256, 256)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x.flatten(1)))  # (N, n_classes)
