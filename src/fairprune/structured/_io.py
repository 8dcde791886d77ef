"""Example inputs as the structured code meets them: a tensor, a tuple or a dict of tensors.

A private, minimal version of what a model's I/O adapter does: run a model on an example and take
the logits of what it returns (a tensor, an object with ``.logits``, a dict's ``"logits"``, or a
tuple's first element). Transformers take a dict (``input_ids``, ``attention_mask``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

Example = Tensor | Mapping[str, Tensor] | Sequence[Tensor]


def run(model: nn.Module, example: Example) -> Any:
    """``model(example)``, ``model(**example)`` or ``model(*example)``."""
    if isinstance(example, Tensor):
        return model(example)
    if isinstance(example, Mapping):
        return model(**example)
    return model(*example)


def logits(output: Any) -> Tensor:
    """The logits of a model output (see the module docstring)."""
    if isinstance(output, Tensor):
        return output
    found = getattr(output, "logits", None)
    if isinstance(found, Tensor):
        return found
    if isinstance(output, Mapping) and isinstance(output.get("logits"), Tensor):
        return output["logits"]
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise TypeError(
        f"cannot take logits from a model output of type {type(output).__name__}; expected a tensor, "
        "an object with .logits, a dict with 'logits' or a tuple whose first element is the logits"
    )


def first(example: Example, n: int = 1) -> Example:
    """The first ``n`` samples of a batch-first example."""
    if isinstance(example, Tensor):
        return example[:n]
    if isinstance(example, Mapping):
        return {k: v[:n] for k, v in example.items()}
    return tuple(v[:n] for v in example)


def device_of(example: Example) -> torch.device:
    if isinstance(example, Tensor):
        return example.device
    values = list(example.values()) if isinstance(example, Mapping) else list(example)
    return values[0].device


def eval_logits(model: nn.Module, example: Example) -> Tensor:
    """The logits of ``model`` on ``example`` in eval mode, without gradients (mode restored)."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return logits(run(model, example))
    finally:
        model.train(training)
