"""Shared machinery of the image loaders: decoding, the on-disk cache, augmentation.

Images are decoded and resized once into a uint8 array ``(N, R, R, 3)`` that is cached on disk, so
that CPU epochs are bound by the model, not by JPEG decoding. The loaders hand out uint8 tensors
``(N, 3, R, R)`` mapped from that cache (:func:`mapped_rows`: read on demand, never loaded whole);
the training code converts each batch with :func:`to_float` (and optionally :func:`augment`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

__all__ = [
    "augment",
    "cached_images",
    "decode_images",
    "default_cache_dir",
    "first_names",
    "mapped_rows",
    "to_float",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
_CACHE_FORMAT = "fairprune-images-v1 draft+bilinear centre-square"
"""Part of every cache key: change it when decoding changes, to invalidate old caches."""
_CHUNK = 64
"""Images per decoding task."""


def first_names(names: Sequence[object], k: int = 5) -> str:
    """The first ``k`` names, and how many more there are, for error messages."""
    shown = ", ".join(repr(str(n)) for n in names[:k])
    return shown + (f", ... ({len(names) - k} more)" if len(names) > k else "")


def _decode_one(path: Path, resolution: int) -> np.ndarray:
    """Decode ``path`` to RGB and return its centre square resized to ``(R, R, 3)`` uint8."""
    with Image.open(path) as file:
        file.draft("RGB", (resolution, resolution))  # JPEG: decode at a reduced scale >= R
        image = file.convert("RGB")
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        square = image.crop((left, top, left + side, top + side))
        return np.asarray(square.resize((resolution, resolution), Image.Resampling.BILINEAR), dtype=np.uint8)


def decode_images(
    paths: Sequence[PathLike],
    resolution: int,
    *,
    progress: bool = False,
    workers: int | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Decode image files into one uint8 array, in parallel threads.

    Each image is converted to RGB, and its centre square (side = the shorter side) is resized to
    ``resolution x resolution`` with bilinear (antialiased) filtering; this equals resizing the
    shorter side to ``resolution`` and centre-cropping. JPEGs are first decoded at the smallest
    DCT scale that is still at least ``resolution`` on each side (PIL's ``draft``), which is faster.

    Args:
        paths: Image files, in the order of the output rows.
        resolution: Side ``R`` of the square output images.
        progress: Show a progress bar (tqdm, on stderr).
        workers: Decoding threads (default: the number of CPUs, at most 16).
        out: Optional ``(N, R, R, 3)`` uint8 array (e.g. a memory map) to decode into.

    Returns:
        ``(N, R, R, 3)`` uint8, kept uint8 (convert batches with :func:`to_float`).

    Raises:
        ValueError: Some files are absent or unreadable (says how many and names a few).
    """
    if resolution < 1:
        raise ValueError(f"expected a positive resolution; received {resolution}")
    files = [Path(p) for p in paths]
    absent = [f for f in files if not f.is_file()]
    if absent:
        raise ValueError(f"{len(absent)} of {len(files)} images are absent: {first_names(absent)}")
    shape = (len(files), resolution, resolution, 3)
    if out is None:
        out = np.empty(shape, dtype=np.uint8)
    elif out.shape != shape or out.dtype != np.uint8:
        raise ValueError(f"expected out of shape {shape} uint8; received {out.shape} {out.dtype}")

    def work(chunk: range) -> list[str]:
        errors = []
        for i in chunk:
            try:
                out[i] = _decode_one(files[i], resolution)
            except (OSError, ValueError, Image.DecompressionBombError) as error:
                errors.append(f"{files[i]} ({type(error).__name__}: {error})")
        return errors

    chunks = [range(start, min(start + _CHUNK, len(files))) for start in range(0, len(files), _CHUNK)]
    workers = workers or min(16, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(work, chunks)
        if progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(chunks), desc=f"decoding {len(files)} images at {resolution}px")
        unreadable = [error for errors in results for error in errors]
    if unreadable:
        raise ValueError(
            f"{len(unreadable)} of {len(files)} images are unreadable: {first_names(unreadable, 3)}"
        )
    return out


def default_cache_dir() -> Path:
    """``$FAIRPRUNE_CACHE`` if set, else ``~/.cache/fairprune``."""
    return Path(os.environ.get("FAIRPRUNE_CACHE") or Path.home() / ".cache" / "fairprune")


def _relative_names(files: Sequence[Path], root: Path | None) -> list[str]:
    if root is None:
        root = Path(os.path.commonpath([str(f.parent) for f in files]))
    return [os.path.relpath(f, root).replace(os.sep, "/") for f in files]


def _cache_key(names: list[str], files: list[Path], order: np.ndarray, resolution: int) -> str:
    """sha256 of the sorted relative names with each file's size and mtime, and the resolution."""
    digest = hashlib.sha256(f"{_CACHE_FORMAT}\n{resolution}\n".encode())
    absent = []
    for i in order:
        try:
            stat = files[i].stat()
        except OSError:
            absent.append(files[i])
            continue
        digest.update(f"{names[i]}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    if absent:
        raise ValueError(f"{len(absent)} of {len(files)} images are absent: {first_names(absent)}")
    return digest.hexdigest()[:24]


def _load_cached(path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    try:
        images = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as error:
        logger.warning("ignoring unreadable image cache %s (%s)", path, error)
        return None
    if images.shape != shape or images.dtype != np.uint8:
        logger.warning("ignoring image cache %s of shape %s %s", path, images.shape, images.dtype)
        return None
    return images


def cached_images(
    cache_dir: PathLike | None,
    key_parts: Sequence[str],
    paths: Sequence[PathLike],
    resolution: int,
    *,
    root: PathLike | None = None,
    progress: bool = False,
) -> np.ndarray:
    """:func:`decode_images` through an on-disk cache: one ``.npy`` per (file list, resolution).

    The cache file is ``<cache_dir>/<key_parts joined by "-">-<R>px-<hash>.npy``, where the hash
    covers the sorted paths relative to ``root`` with each file's size and modification time, and
    the resolution; so a changed, added or removed source image makes a new key, and moving the
    dataset folder keeps it. The file holds the images in sorted-path order, is written atomically
    (a temporary file, then ``os.replace``), and is read back as a read-only memory map.

    Args:
        cache_dir: Cache directory (default :func:`default_cache_dir`).
        key_parts: Readable parts of the file name, e.g. ``("celeba",)``.
        paths: Image files, in the order of the output rows.
        resolution: Side ``R`` of the square images.
        root: Directory the paths are hashed relative to (default: their common parent).
        progress: Show a progress bar while decoding.

    Returns:
        ``(N, R, R, 3)`` uint8, rows in the order of ``paths``: a read-only memory map when
        ``paths`` is sorted, else an in-memory copy.
    """
    files = [Path(p) for p in paths]
    if not files:
        raise ValueError("expected at least one image path; received none")
    names = _relative_names(files, None if root is None else Path(root))
    order = np.argsort(np.array(names, dtype=object), kind="stable")
    key = _cache_key(names, files, order, resolution)
    readable = "-".join(re.sub(r"[^A-Za-z0-9._]+", "_", part) for part in key_parts)
    directory = default_cache_dir() if cache_dir is None else Path(cache_dir)
    file = directory / f"{readable}-{resolution}px-{key}.npy"
    shape = (len(files), resolution, resolution, 3)
    images = _load_cached(file, shape) if file.exists() else None
    if images is None:
        logger.info("decoding %d images at %dpx into %s", len(files), resolution, file)
        directory.mkdir(parents=True, exist_ok=True)
        temporary = file.with_name(f"{file.name}.{uuid.uuid4().hex}.tmp")
        try:
            buffer = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=shape)
            decode_images([files[i] for i in order], resolution, progress=progress, out=buffer)
            buffer.flush()
            del buffer
            os.replace(temporary, file)
        finally:
            temporary.unlink(missing_ok=True)
        images = np.load(file, mmap_mode="r")
    if np.array_equal(order, np.arange(len(files))):
        return images
    return images[np.argsort(order)]


def mapped_rows(images: np.ndarray, rows: np.ndarray) -> Tensor:
    """Rows ``rows`` of a cached ``(M, R, R, 3)`` image array as a ``(n, 3, R, R)`` uint8 tensor
    that reads the disk on demand, never the whole array into memory.

    For a memory-mapped cache (:func:`cached_images` of sorted paths), a contiguous run of rows is
    a view of the cache file itself; other rows are gathered once, in chunks, into a file of their
    own next to it (``<cache>-rows-<hash>.npy``, written atomically and reused), which is then
    mapped. Both are mapped copy-on-write, so the tensor is writable and never writes the cache.
    The tensor is a ``permute`` of the mapped ``(n, R, R, 3)`` array (channels-last strides);
    indexing a batch out of it reads just that batch. An in-memory ``images`` is gathered in
    memory as before.
    """
    rows = np.asarray(rows, dtype=np.int64)
    source = images.filename if isinstance(images, np.memmap) else None
    if source is None or len(rows) == 0:
        return torch.from_numpy(np.ascontiguousarray(images[rows].transpose(0, 3, 1, 2)))
    if np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows))):
        view = np.load(source, mmap_mode="c")[rows[0] : rows[0] + len(rows)]
    else:
        digest = hashlib.sha256(rows.tobytes()).hexdigest()[:16]
        path = Path(source).with_name(f"{Path(source).stem}-rows-{digest}.npy")
        if not path.exists():
            _write_rows(images, rows, path)
        view = np.load(path, mmap_mode="c")
    return torch.from_numpy(view).permute(0, 3, 1, 2)  # (n, R, R, 3) -> (n, 3, R, R), a view


def _write_rows(images: np.ndarray, rows: np.ndarray, path: Path) -> None:
    """Write ``images[rows]`` to ``path`` atomically, a chunk of rows at a time."""
    temporary = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        shape = (len(rows), *images.shape[1:])
        out = np.lib.format.open_memmap(temporary, mode="w+", dtype=np.uint8, shape=shape)
        for start in range(0, len(rows), 4096):
            out[start : start + 4096] = images[rows[start : start + 4096]]
        out.flush()
        del out
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def augment(
    x: Tensor, generator: torch.Generator | None = None, *, flip: bool = True, padding: int = 4
) -> Tensor:
    """Random horizontal flip and random crop after zero padding, per sample.

    Args:
        x: Images ``(B, C, H, W)``, uint8 or float.
        generator: Source of randomness (on ``x``'s device).
        flip: Flip each image left-right with probability 1/2.
        padding: Pad each side with this many zero (black, for uint8) pixels and crop a random
            ``H x W`` window; 0 disables the crop.

    Returns:
        Augmented images of ``x``'s shape and dtype.
    """
    if x.ndim != 4 or padding < 0:
        raise ValueError(
            f"expected images (B, C, H, W) and padding >= 0; received {tuple(x.shape)}, {padding}"
        )
    batch, _, height, width = x.shape
    flips = (
        (torch.rand(batch, generator=generator, device=x.device) < 0.5).tolist() if flip else [False] * batch
    )
    offsets = torch.randint(0, 2 * padding + 1, (batch, 2), generator=generator, device=x.device).tolist()
    padded = F.pad(x, (padding, padding, padding, padding)) if padding > 0 else x  # (B, C, H+2p, W+2p)
    crops = []
    for image, flipped, (dy, dx) in zip(padded, flips, offsets, strict=True):
        crop = image[:, dy : dy + height, dx : dx + width]
        crops.append(crop.flip(-1) if flipped else crop)
    return torch.stack(crops)


def to_float(x: Tensor) -> Tensor:
    """uint8 images to float32 in [-1, 1]: ``(x / 255 - 0.5) / 0.5``."""
    return x.to(torch.float32).div_(127.5).sub_(1.0)
