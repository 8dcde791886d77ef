"""Weight files of a shipped model: safetensors, dense or sparse, and their sha256.

Two layouts, both plain safetensors files (no pickled code):

- ``dense``: the state dict as it is (``model.safetensors``); loads with
  ``safetensors.torch.load_file`` into ``model.load_state_dict``.
- ``sparse``: for a model whose masks are baked in (``model.sparse.safetensors``). A floating
  tensor ``name`` is stored as ``name:bitmask`` (uint8, its non-zero pattern in row-major order,
  8 entries per byte, first entry in the most significant bit, as ``numpy.packbits``) and
  ``name:values`` (its non-zero entries, same dtype, row-major) whenever that takes fewer bytes
  than the tensor: ``n / 8 + 4 * nnz < 4 * n`` for float32, i.e. at a density below 97%. Every
  other tensor is stored under its own name. The file's metadata hold each tensor's shape
  (``"shapes"``, JSON). A float32 weight at density ``d`` takes ``d + 1/32`` of its dense bytes.
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

__all__ = [
    "LAYOUTS",
    "WEIGHT_FILES",
    "save_weights",
    "load_weights",
    "weight_shapes",
    "sha256_of",
    "pack_bits",
    "unpack_bits",
]

LAYOUTS = ("dense", "sparse")
WEIGHT_FILES = {"dense": "model.safetensors", "sparse": "model.sparse.safetensors"}
_FORMAT_KEY, _SHAPES_KEY = "fairprune_layout", "shapes"
_BITMASK, _VALUES = ":bitmask", ":values"
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


def _stored_sparse(tensor: Tensor) -> bool:
    if not tensor.is_floating_point():
        return False
    nnz = int(torch.count_nonzero(tensor))
    return (
        math.ceil(tensor.numel() / 8) + nnz * tensor.element_size() < tensor.numel() * tensor.element_size()
    )


def save_weights(path: str | os.PathLike[str], state: dict[str, Tensor], layout: str) -> Path:
    """Write ``state`` (a state dict) to the safetensors file ``path`` in ``layout``, atomically."""
    if layout not in LAYOUTS:
        raise ValueError(f"weight layout must be one of {list(LAYOUTS)}; received {layout!r}")
    tensors: dict[str, Tensor] = {}
    for name, value in state.items():
        tensor = value.detach().cpu().contiguous()
        if layout == "sparse" and _stored_sparse(tensor):
            flat = tensor.reshape(-1)
            nonzero = flat != 0
            tensors[name + _BITMASK] = pack_bits(nonzero)
            tensors[name + _VALUES] = flat[nonzero].clone()
        else:
            tensors[name] = tensor.clone()
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
            elif layout == "sparse" and {name + _BITMASK, name + _VALUES} <= keys:
                values = handle.get_tensor(name + _VALUES)
                nonzero = unpack_bits(handle.get_tensor(name + _BITMASK), math.prod(shape))
                if int(nonzero.sum()) != values.numel():
                    raise ValueError(
                        f"{path}: tensor {name!r} has {int(nonzero.sum())} set bits but "
                        f"{values.numel()} values; the file is corrupt"
                    )
                dense = torch.zeros(math.prod(shape), dtype=values.dtype)
                dense[nonzero] = values
                state[name] = dense.reshape(shape)
            else:
                raise ValueError(f"{path} lists tensor {name!r} in its metadata but does not hold it")
    return state


def weight_shapes(path: str | os.PathLike[str]) -> dict[str, list[int]]:
    """Each tensor's shape, read from the header of a file written by :func:`save_weights`."""
    with safe_open(str(path), framework="pt") as handle:
        return _header(handle, path)[1]


def _header(handle: object, path: str | os.PathLike[str]) -> tuple[str, dict[str, list[int]]]:
    metadata = handle.metadata() or {}  # type: ignore[attr-defined]
    layout = metadata.get(_FORMAT_KEY)
    if layout not in LAYOUTS or _SHAPES_KEY not in metadata:
        raise ValueError(
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
