"""Export: size, FLOPs and latency of a model; save / load a model with its masks and card.

A saved model is a directory::

    model.pt    {"format": 1, "state_dict": ...}  weights with every mask baked in
    masks.pt    the masks (``dict[str, Tensor]``), to continue training under them
    card.json   the model card: data, target, sensitive attribute, sparsity, metrics, ...

Each file is written atomically (a temporary file in the same directory, then ``os.replace``);
``card.json`` is written last, so a directory with a card is complete. If the card holds
``"model": {"name", "input_shape", "n_classes", "params"}``, :func:`load_model` rebuilds the
architecture from :data:`fairprune.models.MODELS`; a slimmed model's smaller layers are resized to
the saved shapes.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import parametrize
from torch.utils.flop_counter import FlopCounterMode

from fairprune.atomic import replace_atomically, write_atomic
from fairprune.masks import Masks, bake_masks
from fairprune.models import build_model

__all__ = [
    "count_parameters",
    "count_flops",
    "measure_latency",
    "in_eval",
    "save_model",
    "load_model",
    "SavedModel",
]

FORMAT = 1
MODEL_FILE, MASKS_FILE, CARD_FILE = "model.pt", "masks.pt", "card.json"
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def count_parameters(model: nn.Module, *, nonzero: bool = False) -> int:
    """All parameters of ``model`` (BatchNorm and biases included; masks are buffers, not counted).

    Args:
        model: Any module, masked or not.
        nonzero: Count only the entries that are non-zero after the masks are applied.
    """
    if not nonzero:
        return sum(p.numel() for p in model.parameters())
    masked = any(parametrize.is_parametrized(m) for m in model.modules())
    baked = bake_masks(copy.deepcopy(model)) if masked else model
    return sum(int(torch.count_nonzero(p)) for p in baked.parameters())


def in_eval(model: nn.Module, run: Callable[[], Any]) -> Any:
    """``run()`` under ``torch.no_grad()`` with ``model`` in eval mode, then restore its mode."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return run()
    finally:
        model.train(training)


def count_flops(model: nn.Module, example_input: Tensor) -> int:
    """Floating-point operations of one forward pass on ``example_input`` (eval mode).

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode`: matrix multiplications and
    convolutions, 2 per multiply-add (a ``Linear(i, o)`` on a batch of ``n`` is ``2 * i * o * n``);
    element-wise ops, normalisation and pooling count zero. Masked weights still count: slim a
    structured model first to see its savings.
    """
    counter = FlopCounterMode(display=False)

    def forward() -> None:
        with counter:
            model(example_input)

    in_eval(model, forward)
    return int(counter.get_total_flops())


def measure_latency(model: nn.Module, example_input: Tensor, *, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall-clock seconds of one forward pass on ``example_input``.

    Eval mode, ``torch.no_grad()``, on the device of ``example_input`` (CUDA is synchronised
    around each pass); the thread settings of torch are left as they are.

    Args:
        model: The model, on the device of ``example_input``.
        example_input: One batch.
        repeats: Timed passes (at least 1).
        warmup: Untimed passes first.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    sync = torch.cuda.synchronize if example_input.is_cuda else (lambda: None)

    def timed() -> list[float]:
        for _ in range(warmup):
            model(example_input)
        times = []
        for _ in range(repeats):
            sync()
            start = time.perf_counter()
            model(example_input)
            sync()
            times.append(time.perf_counter() - start)
        return times

    return float(statistics.median(in_eval(model, timed)))


def save_model(path: str | os.PathLike[str], model: nn.Module, masks: Masks, card: dict[str, Any]) -> Path:
    """Save ``model`` (masks baked in), ``masks`` and the JSON ``card`` into the directory ``path``.

    ``model`` itself is left unchanged. Returns the directory.

    Raises:
        ValueError: If ``card`` is not JSON-serialisable.
    """
    try:
        card_text = json.dumps(card, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"card must be JSON-serialisable (str keys, finite numbers): {err}") from err
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in bake_masks(copy.deepcopy(model)).state_dict().items()}
    cpu_masks = {k: v.detach().cpu() for k, v in masks.items()}
    replace_atomically(
        directory / MODEL_FILE, lambda p: torch.save({"format": FORMAT, "state_dict": state}, p)
    )
    replace_atomically(directory / MASKS_FILE, lambda p: torch.save(cpu_masks, p))
    write_atomic(directory / CARD_FILE, card_text + "\n")
    return directory


class SavedModel(NamedTuple):
    """What :func:`load_model` returns; the weights of ``model`` have the masks baked in."""

    model: nn.Module
    masks: Masks
    card: dict[str, Any]


def load_model(path: str | os.PathLike[str], model: nn.Module | None = None) -> SavedModel:
    """Load a directory written by :func:`save_model`.

    Args:
        path: The directory.
        model: A module of the saved architecture (its dense form will do for a slimmed model:
            Conv, Linear and BatchNorm layers are resized to the saved shapes). ``None``: build it
            from the card's ``"model"`` entry.

    Returns:
        The model (in eval mode), the masks (not applied: ``apply_masks(model, masks)`` to train
        on under them) and the card.
    """
    directory = Path(path)
    if not (directory / CARD_FILE).is_file():
        raise ValueError(f"{directory} holds no {CARD_FILE}; expected a directory written by save_model")
    card = json.loads((directory / CARD_FILE).read_text(encoding="utf-8"))
    saved = torch.load(directory / MODEL_FILE, map_location="cpu", weights_only=True)
    if saved.get("format") != FORMAT:
        raise ValueError(f"{directory / MODEL_FILE} has format {saved.get('format')!r}, expected {FORMAT}")
    if model is None:
        spec = card.get("model")
        if not isinstance(spec, dict) or not {"name", "input_shape", "n_classes"} <= set(spec):
            raise ValueError(
                "no model given and the card has no 'model' entry with name, input_shape and n_classes; "
                f"got {spec!r}"
            )
        model = build_model(
            spec["name"], tuple(spec["input_shape"]), spec["n_classes"], **spec.get("params", {})
        )
    _fit_shapes(model, saved["state_dict"])
    model.load_state_dict(saved["state_dict"])
    masks = torch.load(directory / MASKS_FILE, map_location="cpu", weights_only=True)
    return SavedModel(model.eval(), masks, card)


def _fit_shapes(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Resize the tensors of ``model``'s Conv / Linear / BatchNorm layers to those of ``state``."""
    own = model.state_dict()
    for key, value in state.items():
        if key not in own or own[key].shape == value.shape:
            continue
        module_name, _, attr = key.rpartition(".")
        module = model.get_submodule(module_name)
        if not isinstance(module, _CONVS + (nn.Linear, _BatchNorm)):
            raise ValueError(
                f"{key!r} has shape {tuple(value.shape)} in the file but {tuple(own[key].shape)} in the "
                f"model, and a {type(module).__name__} cannot be resized"
            )
        fresh = torch.empty(value.shape, dtype=own[key].dtype)
        if attr in module._parameters:
            requires_grad = getattr(module, attr).requires_grad
            module._parameters[attr] = nn.Parameter(fresh, requires_grad=requires_grad)
        else:
            module._buffers[attr] = fresh
        if isinstance(module, nn.Linear) and attr == "weight":
            module.out_features, module.in_features = value.shape
        elif isinstance(module, _CONVS) and attr == "weight":
            depthwise = module.groups == module.in_channels == module.out_channels and module.groups > 1
            module.out_channels = value.shape[0]
            module.groups = value.shape[0] if depthwise else module.groups
            module.in_channels = value.shape[1] * module.groups
        elif isinstance(module, _BatchNorm):
            module.num_features = value.shape[0]
