"""Weight files of a shipped model: safetensors, dense or sparse, and their sha256.

Two layouts, both plain safetensors files (no pickled code):

- ``dense``: the state dict as it is (``model.safetensors``); loads with
  ``safetensors.torch.load_file`` into ``model.load_state_dict``.
- ``sparse``: for a model whose masks are baked in (``model.sparse.safetensors``). A floating
  tensor ``name`` of ``n`` entries, ``nnz`` of them non-zero, is stored in the smallest of three
  forms: as it is (``name``, ``4 n`` bytes for float32); ``name:bitmask`` (uint8, its non-zero
  pattern in row-major order, 8 entries per byte, first entry in the most significant bit, as
  ``numpy.packbits``) with ``name:values`` (the non-zero entries, row-major), ``n / 8 + 4 nnz``
  bytes; or ``name:indices`` (int32 flat row-major positions) with ``name:values``, ``8 nnz``
  bytes. So a float32 weight at density ``d`` takes ``min(1, d + 1/32, 2 d)`` of its dense bytes:
  the bitmask wins above a density of 1/32, the indices below. Other tensors are stored as they
  are. The file's metadata hold each tensor's shape (``"shapes"``, JSON).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from fairprune.atomic import replace_atomically
from fairprune.errors import ShippedModelError

__all__ = [
    "LAYOUTS",
    "WEIGHT_FILES",
    "save_weights",
    "load_weights",
    "weight_shapes",
    "sha256_of",
    "pack_bits",
    "unpack_bits",
    "encoding",
    "stored_bytes",
]

LAYOUTS = ("dense", "sparse")
WEIGHT_FILES = {"dense": "model.safetensors", "sparse": "model.sparse.safetensors"}
_FORMAT_KEY, _SHAPES_KEY = "fairprune_layout", "shapes"
_BITMASK, _INDICES, _VALUES = ":bitmask", ":indices", ":values"
_BIT_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)


def pack_bits(flags: Tensor) -> Tensor:
    """A 1-D bool tensor as uint8 bytes, 8 flags per byte, first flag in the top bit (padded with 0)."""
    padded = torch.zeros(math.ceil(flags.numel() / 8) * 8, dtype=torch.uint8)
    padded[: flags.numel()] = flags.to(torch.uint8)
    return (padded.view(-1, 8) * _BIT_WEIGHTS).sum(dim=1, dtype=torch.uint8)  # (ceil(n / 8),)


def unpack_bits(packed: Tensor, n: int) -> Tensor:
    """The first ``n`` flags of :func:`pack_bits`'s bytes, as a bool tensor ``(n,)``."""
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8)
    bits = (packed.reshape(-1, 1) >> shifts) & 1  # (bytes, 8)
    return bits.reshape(-1)[:n].bool()


def _costs(tensor: Tensor) -> dict[str, int]:
    """Data bytes of each form of ``tensor`` in the sparse layout (ties: the first, simplest)."""
    n, size = tensor.numel(), tensor.element_size()
    if not tensor.is_floating_point():
        return {"dense": n * size}
    nnz = int(torch.count_nonzero(tensor))
    return {"dense": n * size, "bitmask": math.ceil(n / 8) + nnz * size, "indices": nnz * (4 + size)}


def encoding(tensor: Tensor) -> str:
    """How the sparse layout stores ``tensor``: ``"dense"``, ``"bitmask"`` or ``"indices"``."""
    costs = _costs(tensor)
    return min(costs, key=lambda form: costs[form])


def stored_bytes(tensor: Tensor) -> int:
    """Bytes of ``tensor``'s data in the sparse layout (headers aside)."""
    return min(_costs(tensor).values())


def save_weights(path: str | os.PathLike[str], state: dict[str, Tensor], layout: str) -> Path:
    """Write ``state`` (a state dict) to the safetensors file ``path`` in ``layout``, atomically."""
    if layout not in LAYOUTS:
        raise ShippedModelError(f"weight layout must be one of {list(LAYOUTS)}; received {layout!r}")
    tensors: dict[str, Tensor] = {}
    for name, value in state.items():
        tensor = value.detach().cpu().contiguous()
        form = encoding(tensor) if layout == "sparse" else "dense"
        flat = tensor.reshape(-1)
        if form == "bitmask":
            tensors[name + _BITMASK] = pack_bits(flat != 0)
        elif form == "indices":
            tensors[name + _INDICES] = torch.nonzero(flat).reshape(-1).to(torch.int32)
        if form == "dense":
            tensors[name] = tensor.clone()
        else:
            tensors[name + _VALUES] = flat[flat != 0].clone()
    shapes = {name: list(value.shape) for name, value in state.items()}
    metadata = {_FORMAT_KEY: layout, _SHAPES_KEY: json.dumps(shapes)}
    return replace_atomically(path, lambda temporary: save_file(tensors, str(temporary), metadata=metadata))


def load_weights(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """The state dict in a file written by :func:`save_weights` (either layout), on the CPU."""
    state: dict[str, Tensor] = {}
    with safe_open(str(path), framework="pt") as handle:
        layout, shapes = _header(handle, path)
        keys = set(handle.keys())
        for name, shape in shapes.items():
            if name in keys:
                state[name] = handle.get_tensor(name)
            elif layout == "sparse" and name + _VALUES in keys:
                values = handle.get_tensor(name + _VALUES)
                if name + _BITMASK in keys:
                    where = unpack_bits(handle.get_tensor(name + _BITMASK), math.prod(shape))
                    count = int(where.sum())
                else:
                    where = handle.get_tensor(name + _INDICES).long()
                    count = where.numel()
                if count != values.numel():
                    raise ShippedModelError(
                        f"{path}: tensor {name!r} has {count} positions but {values.numel()} values; "
                        "the file is corrupt"
                    )
                dense = torch.zeros(math.prod(shape), dtype=values.dtype)
                dense[where] = values
                state[name] = dense.reshape(shape)
            else:
                raise ShippedModelError(f"{path} lists tensor {name!r} in its metadata but does not hold it")
    return state


def weight_shapes(path: str | os.PathLike[str]) -> dict[str, list[int]]:
    """Each tensor's shape, read from the header of a file written by :func:`save_weights`."""
    with safe_open(str(path), framework="pt") as handle:
        return _header(handle, path)[1]


def _header(handle: object, path: str | os.PathLike[str]) -> tuple[str, dict[str, list[int]]]:
    metadata = handle.metadata() or {}  # type: ignore[attr-defined]
    layout = metadata.get(_FORMAT_KEY)
    if layout not in LAYOUTS or _SHAPES_KEY not in metadata:
        raise ShippedModelError(
            f"{path} is not a fairprune weight file: expected metadata {_FORMAT_KEY!r} in "
            f"{list(LAYOUTS)} and {_SHAPES_KEY!r}; found keys {sorted(metadata)}"
        )
    return layout, json.loads(metadata[_SHAPES_KEY])


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
