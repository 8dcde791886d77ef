"""A user's classifier as the engine takes it: ``(N, C)`` logits, one binary logit made two."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from fairprune.batches import model_inputs
from fairprune.model_io import Features, call_model, describe, in_eval, n_samples, output_logits, rows

__all__ = ["TwoLogits", "output_classes", "unwrap"]


class TwoLogits(nn.Module):
    """A one-logit binary classifier seen as a two-class one: logits ``[0, f]``.

    Cross-entropy on them is the logistic loss on ``f``, the margin of class ``y`` is
    ``(2y - 1) f`` (DESIGN §3) and ``argmax`` predicts 1 exactly when ``f > 0``, as the engine
    does for one logit. The wrapper has no parameters: the inner model's are ``model.<name>``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        f = output_logits(self.model(*args, **kwargs)).reshape(-1, 1)  # (N,) or (N, 1) -> (N, 1)
        return torch.cat([torch.zeros_like(f), f], dim=1)  # (N, 2)


def unwrap(model: nn.Module) -> nn.Module:
    """The user's model inside a :class:`TwoLogits` (or ``model`` itself)."""
    return model.model if isinstance(model, TwoLogits) else model


def output_classes(model: nn.Module, x: Features, device: str) -> int:
    """Classes of ``model`` from a forward pass (eval mode) on the first two samples of ``x``:
    ``C`` for ``(N, C)`` logits, 1 for one binary logit ``(N,)``/``(N, 1)``.

    Raises:
        TypeError: The model's output holds no logits (see :func:`fairprune.model_io.output_logits`),
            or the model does not take the inputs.
        ValueError: The output has another shape (naming it and the expected ones).
    """
    batch = model_inputs(rows(x, 0, 2), device)
    try:
        raw = in_eval(model, lambda: call_model(model, batch))
    except TypeError as err:
        raise TypeError(
            f"{type(model).__name__} does not take the inputs {describe(batch)} ({err}); a tensor x is "
            "passed as model(x), a tuple as model(*x), a dict as model(**x)"
        ) from err
    out = output_logits(raw)
    n = n_samples(batch)
    if out.shape in ((n,), (n, 1)):
        return 1
    if out.ndim == 2 and out.shape[0] == n:
        return int(out.shape[1])
    raise ValueError(
        f"the model's output has shape {tuple(out.shape)} for {n} samples; expected logits (N, C) "
        "with one column per class, or (N,)/(N, 1) for a binary task with labels 0/1"
    )
