"""How a user's model is called on a batch, and where its logits are in what it returns.

The one place that knows the shapes of a model's inputs and outputs; the data, the loops, the
pruners and the export go through it, so that a model is used as its author wrote it (no
wrapper, its own parameter names).

Features (``x`` of a split, every tensor batch-first, one ``N``):

- a tensor ``(N, ...)``: ``model(x)``;
- a tuple (or list) of tensors: ``model(*x)``;
- a dict of tensors, e.g. a tokenizer's ``input_ids`` and ``attention_mask``: ``model(**x)``.

Outputs, and what is taken as the logits:

- a tensor: itself;
- an object with a ``logits`` attribute (a Hugging Face ``ModelOutput``): ``.logits``;
- a dict: its ``"logits"`` entry, or its only tensor;
- a tuple or list: its first element (Hugging Face's ``return_dict=False`` order, and the usual
  ``(logits, aux)`` of a model with auxiliary outputs).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "Features",
    "as_features",
    "n_samples",
    "take",
    "rows",
    "row",
    "concat",
    "to_device",
    "tensors_of",
    "describe",
    "sample_shapes",
    "call_model",
    "output_logits",
    "forward_logits",
    "eval_logits",
    "in_eval",
    "single_tensor",
    "input_shape",
]

Features = Tensor | tuple[Tensor, ...] | dict[str, Tensor]
"""A batch of model inputs: a tensor, a tuple of tensors or a dict of tensors, batch-first."""


def as_features(x: Any, what: str = "x") -> Features:
    """``x`` as :data:`Features`: arrays (and nested lists of numbers) become tensors, a tuple or
    list of tensors or arrays a tuple of tensors.

    Raises:
        TypeError: ``x`` is not a tensor (or array), a tuple/list or a dict of them.
        ValueError: Its tensors do not share one first dimension, or it is empty.
    """
    if isinstance(x, Tensor):
        return x
    if isinstance(x, Mapping):
        out: Features = {str(k): _tensor(v, f"{what}[{k!r}]") for k, v in x.items()}
    elif isinstance(x, (tuple, list)) and x and all(isinstance(v, (Tensor, np.ndarray)) for v in x):
        out = tuple(_tensor(v, f"{what}[{i}]") for i, v in enumerate(x))
    else:
        try:
            return torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(
                f"{what} must be a tensor, a tuple of tensors or a dict of tensors (batch-first); "
                f"received {type(x).__name__}"
            ) from err
    parts = tensors_of(out)
    if not parts:
        raise ValueError(f"{what} is an empty {type(x).__name__}; expected at least one tensor")
    sizes = {tuple(t.shape[:1]) for t in parts}
    if len(sizes) != 1 or () in sizes:
        raise ValueError(
            f"{what} must hold batch-first tensors with one first dimension N; received {describe(out)}"
        )
    return out


def _tensor(value: Any, what: str) -> Tensor:
    if isinstance(value, Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"{what} must be a tensor (or array); received {type(value).__name__}") from err


def tensors_of(x: Features) -> list[Tensor]:
    """The tensors of ``x``, in order."""
    if isinstance(x, Tensor):
        return [x]
    return list(x.values()) if isinstance(x, dict) else list(x)


def _map(x: Features, fn: Any) -> Features:
    if isinstance(x, Tensor):
        return fn(x)
    if isinstance(x, dict):
        return {k: fn(v) for k, v in x.items()}
    return tuple(fn(v) for v in x)


def n_samples(x: Features) -> int:
    """``N``, the batch size of ``x``."""
    return int(tensors_of(x)[0].shape[0])


def take(x: Features, index: Tensor) -> Features:
    """The samples at ``index`` (1-D int64); a contiguous tensor through ``index_select`` (the
    same rows, a quarter of the time on a CPU batch), other layouts (memory-mapped images) keep
    ``t[index]``'s layout."""
    return _map(x, lambda t: t.index_select(0, index) if t.is_contiguous() else t[index])


def rows(x: Features, start: int, stop: int) -> Features:
    """Samples ``start:stop`` (views)."""
    return _map(x, lambda t: t[start:stop])


def row(x: Features, i: int) -> Features:
    """Sample ``i``, without its batch dimension (a dataset item)."""
    return _map(x, lambda t: t[i])


def concat(parts: Sequence[Features]) -> Features:
    """Batches of one structure joined along the batch dimension.

    Raises:
        ValueError: The batches differ in structure (kind, dict keys or tuple length).
    """
    first = parts[0]
    if isinstance(first, Tensor):
        if not all(isinstance(p, Tensor) for p in parts):
            raise ValueError(f"batches must all be tensors; received {[describe(p) for p in parts[:3]]}")
        return torch.cat(list(parts))  # type: ignore[arg-type]
    if isinstance(first, dict):
        keys = list(first)
        if not all(isinstance(p, dict) and list(p) == keys for p in parts):
            raise ValueError(
                f"batches must all be dicts with keys {keys}; received {[describe(p) for p in parts[:3]]}"
            )
        dicts = cast(list[dict[str, Tensor]], parts)
        return {k: torch.cat([p[k] for p in dicts]) for k in keys}
    if not all(isinstance(p, tuple) and len(p) == len(first) for p in parts):
        raise ValueError(
            f"batches must all be tuples of {len(first)} tensors; received {[describe(p) for p in parts[:3]]}"
        )
    tuples = cast(list[tuple[Tensor, ...]], parts)
    return tuple(torch.cat([p[i] for p in tuples]) for i in range(len(first)))


def single_tensor(x: Features, what: str) -> Tensor:
    """``x`` when it is one tensor.

    Raises:
        TypeError: ``x`` is a tuple or dict of tensors; ``what`` names what needs one tensor.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} takes one input tensor (N, ...); received {describe(x)}")
    return x


def input_shape(x: Features) -> tuple[int, ...]:
    """The shape of one sample of a single-tensor ``x`` (what a built-in model is built for)."""
    return tuple(single_tensor(x, "a built-in model").shape[1:])


def to_device(x: Features, device: str | torch.device) -> Features:
    """``x`` on ``device`` (tensors already there are not copied)."""
    return _map(x, lambda t: t.to(device))


def sample_shapes(x: Features) -> list[int] | list[list[int]] | dict[str, list[int]]:
    """The shape of one sample of ``x`` (per tensor for a tuple or dict)."""
    if isinstance(x, Tensor):
        return list(x.shape[1:])
    if isinstance(x, dict):
        return {k: list(v.shape[1:]) for k, v in x.items()}
    return [list(t.shape[1:]) for t in x]


def describe(x: Any) -> str:
    """Shapes and dtypes of ``x`` in words, for messages (``"dict input_ids (8, 16) int64, ..."``)."""

    def one(t: Tensor) -> str:
        return f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"

    if isinstance(x, Tensor):
        return one(x)
    if isinstance(x, Mapping):
        return "dict " + ", ".join(f"{k} {describe(v)}" for k, v in x.items())
    if isinstance(x, (tuple, list)):
        return f"{type(x).__name__} (" + ", ".join(describe(v) for v in x) + ")"
    return type(x).__name__


def call_model(model: nn.Module, x: Features) -> Any:
    """``model(x)``, ``model(*x)`` for a tuple, ``model(**x)`` for a dict."""
    if isinstance(x, dict):
        return model(**x)
    if isinstance(x, tuple):
        return model(*x)
    return model(x)


def output_logits(out: Any) -> Tensor:
    """The logits in a model's output (see the module's docstring for what is taken).

    Raises:
        TypeError: The output holds no tensor where logits are expected (naming what it was).
    """
    if isinstance(out, Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(out, Mapping):
        found = [v for v in out.values() if isinstance(v, Tensor)]
        if "logits" in out and isinstance(out["logits"], Tensor):
            return out["logits"]
        if len(found) == 1:
            return found[0]
        raise TypeError(
            f"the model returned a dict with keys {list(out)}; expected a 'logits' entry (or one tensor)"
        )
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise TypeError(
        f"the model returned {describe(out)}; expected logits: a tensor, an object with .logits, "
        "a dict with 'logits', or a tuple whose first element is the logits"
    )


def forward_logits(model: nn.Module, x: Features) -> Tensor:
    """The logits of ``model`` on the batch ``x``: :func:`call_model`, then :func:`output_logits`."""
    return output_logits(call_model(model, x))


def in_eval(model: nn.Module, run: Callable[[], Any]) -> Any:
    """``run()`` under ``torch.no_grad()`` with ``model`` in eval mode, then restore its mode."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return run()
    finally:
        model.train(training)


def eval_logits(model: nn.Module, x: Features) -> Tensor:
    """:func:`forward_logits` in eval mode without gradients (the model's mode restored)."""
    return cast(Tensor, in_eval(model, lambda: forward_logits(model, x)))
