"""The run records of a sweep: save / load a model with its masks and card.

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
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from fairprune.atomic import replace_atomically, write_atomic
from fairprune.errors import ShippedModelError
from fairprune.masks import Masks, bake_masks
from fairprune.models import build_model
from fairprune.structured import SlimMultiheadAttention

__all__ = ["save_model", "load_model", "SavedModel", "fit_shapes", "build_from_spec"]

FORMAT = 1
MODEL_FILE, MASKS_FILE, CARD_FILE = "model.pt", "masks.pt", "card.json"
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def save_model(path: str | os.PathLike[str], model: nn.Module, masks: Masks, card: dict[str, Any]) -> Path:
    """Save ``model`` (masks baked in), ``masks`` and the JSON ``card`` into the directory ``path``.

    ``model`` itself is left unchanged. Returns the directory.

    Raises:
        ValueError: If ``card`` is not JSON-serialisable.
    """
    try:
        card_text = json.dumps(card, indent=2, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ShippedModelError(f"card must be JSON-serialisable (str keys, finite numbers): {err}") from err
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

    def __repr__(self) -> str:
        """The model's class, how many masks, and the card's keys (not the tensors)."""
        return (
            f"SavedModel({type(self.model).__name__}, {len(self.masks)} masks, card keys {sorted(self.card)})"
        )


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
        raise ShippedModelError(
            f"{directory} holds no {CARD_FILE}; expected a directory written by save_model"
        )
    card = json.loads((directory / CARD_FILE).read_text(encoding="utf-8"))
    saved = torch.load(directory / MODEL_FILE, map_location="cpu", weights_only=True)
    if saved.get("format") != FORMAT:
        raise ShippedModelError(
            f"{directory / MODEL_FILE} has format {saved.get('format')!r}, expected {FORMAT}"
        )
    if model is None:
        model = build_from_spec(card.get("model"))
    fit_shapes(model, saved["state_dict"])
    model.load_state_dict(saved["state_dict"])
    masks = torch.load(directory / MASKS_FILE, map_location="cpu", weights_only=True)
    return SavedModel(model.eval(), masks, card)


def build_from_spec(spec: object) -> nn.Module:
    """The built-in model a card's ``"model"`` entry names (``name``, ``input_shape``,
    ``n_classes``, optional ``params``), at its dense size."""
    if not isinstance(spec, dict) or not {"name", "input_shape", "n_classes"} <= set(spec):
        raise ShippedModelError(
            "no model given and the card has no 'model' entry with name, input_shape and n_classes; "
            f"got {spec!r}"
        )
    return build_model(spec["name"], tuple(spec["input_shape"]), spec["n_classes"], **spec.get("params", {}))


def _slim_attention(model: nn.Module, name: str, mha: nn.MultiheadAttention, rows: int) -> None:
    """Put a :class:`SlimMultiheadAttention` with ``rows / 3`` inner width in place of ``mha``
    (its weights are placeholders: the state dict is loaded next)."""
    heads = rows // (3 * mha.head_dim)
    keep = torch.arange(mha.num_heads) < heads
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, SlimMultiheadAttention(mha, keep))


def fit_shapes(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Resize the tensors of ``model``'s Conv / Linear / BatchNorm layers to those of ``state``;
    a ``MultiheadAttention`` whose heads were removed becomes a :class:`SlimMultiheadAttention`."""
    own = model.state_dict()
    for key, value in state.items():
        if key not in own or own[key].shape == value.shape:
            continue
        module_name, _, attr = key.rpartition(".")
        module = model.get_submodule(module_name)
        if isinstance(module, nn.MultiheadAttention) and attr == "in_proj_weight":
            _slim_attention(model, module_name, module, value.shape[0])
            continue
        if isinstance(module, SlimMultiheadAttention) and getattr(module, attr).shape == value.shape:
            continue
        if not isinstance(module, _CONVS + (nn.Linear, _BatchNorm)):
            raise ShippedModelError(
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
