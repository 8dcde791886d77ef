"""Reload a shipped directory, checking it against its card first (never unpickling anything)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from torch import nn

from fairprune.errors import ShippedModelError
from fairprune.export._card import CARD_FORMAT, summarize_card
from fairprune.export._records import build_from_spec, fit_shapes
from fairprune.export._weights import LAYOUTS, load_weights, sha256_of, weight_shapes

__all__ = ["load_exported", "ExportedModel", "CARD_FILE", "MARKDOWN_FILE"]

CARD_FILE, MARKDOWN_FILE = "card.json", "MODEL_CARD.md"


class ExportedModel(NamedTuple):
    """A shipped model, reloaded: the network (eval mode, CPU) and its card."""

    model: nn.Module
    card: dict[str, Any]

    def __repr__(self) -> str:
        """The card in a few lines: model and method, outcome, weight file, test metrics."""
        return "ExportedModel(" + summarize_card(self.card).replace("\n", "\n  ") + ")"


def load_exported(directory: str | os.PathLike[str], model: nn.Module | None = None) -> ExportedModel:
    """Reload a shipped directory after checking it against its card.

    Checks, each a ``ValueError`` naming the file or tensor: the card and every file it lists
    exist; each file's sha256 is the card's; the weight file's tensors have the card's shapes.

    Args:
        directory: A directory written by :func:`export_model`.
        model: A module of the architecture (dense sizes will do: Conv / Linear / BatchNorm
            layers are resized to the saved shapes); default: the card's built-in model.
    """
    out = Path(directory)
    card_path = out / CARD_FILE
    if not card_path.is_file():
        raise ShippedModelError(
            f"{out} holds no {CARD_FILE}; expected a directory written by 'fairprune export'"
        )
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ShippedModelError(f"{card_path} is not valid JSON: {err}") from err
    files = card.get("files") or {}
    weight_files = [name for name, f in files.items() if f.get("layout") in LAYOUTS]
    if card.get("format") != CARD_FORMAT or len(weight_files) != 1:
        raise ShippedModelError(
            f"{card_path} is not a fairprune model card: expected format {CARD_FORMAT!r} and one weight "
            f"file; found format {card.get('format')!r} and weight files {weight_files}"
        )
    _check_files(out, files)
    weights_path = out / weight_files[0]
    _check_shapes(weights_path, card["model"].get("shapes", {}))
    state = load_weights(weights_path)
    if model is None:
        if "name" not in card["model"]:
            raise ShippedModelError(
                f"{card_path} names no built-in architecture (a model exported from the Python API "
                f"as {card['model'].get('class')}); pass model= (a module of that architecture), or on the "
                "command line --model package.module:factory"
            )
        model = build_from_spec(card["model"])
    fit_shapes(model, state)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ShippedModelError(f"the weights of {weights_path} do not fit the model: {err}") from err
    return ExportedModel(model.eval(), card)


def _check_files(out: Path, files: Mapping[str, Any]) -> None:
    for name, entry in files.items():
        if Path(name).name != name or name in ("", ".", ".."):
            raise ShippedModelError(f"the card lists {name!r}; expected plain file names inside {out}")
        path = out / name
        if not path.is_file():
            raise ShippedModelError(f"{out} misses {name}, which its card lists; the directory is incomplete")
        digest = sha256_of(path)
        if digest != entry.get("sha256"):
            raise ShippedModelError(
                f"{path} has sha256 {digest}, but the card records {entry.get('sha256')}: the file was "
                "changed after export (or the card was); refusing to load it"
            )


def _check_shapes(path: Path, expected: Mapping[str, list[int]]) -> None:
    found = weight_shapes(path)
    if set(found) != set(expected):
        missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        raise ShippedModelError(
            f"{path} does not hold the card's tensors: missing {missing}, not in the card {extra}"
        )
    for name, shape in expected.items():
        if list(found[name]) != list(shape):
            raise ShippedModelError(
                f"tensor {name!r} has shape {found[name]} in {path.name} but {list(shape)} in the card"
            )
