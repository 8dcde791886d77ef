"""Image splits are read from the memory-mapped cache on demand (never loaded whole)."""

from __future__ import annotations

import numpy as np
import torch

from fairprune.batches import model_inputs
from fairprune.data.base import GroupData
from fairprune.data.images import mapped_rows


def _cache(tmp_path) -> np.ndarray:
    images = np.arange(10 * 4 * 4 * 3, dtype=np.uint8).reshape(10, 4, 4, 3)  # (M, R, R, 3)
    path = tmp_path / "toy-4px-abc.npy"
    np.save(path, images)
    return np.load(path, mmap_mode="r")


def test_mapped_rows_are_the_rows_without_loading_the_cache(tmp_path):
    cache = _cache(tmp_path)
    rows = np.array([7, 2, 5])
    x = mapped_rows(cache, rows)
    assert x.shape == (3, 3, 4, 4) and x.dtype == torch.uint8
    assert torch.equal(x, torch.from_numpy(np.asarray(cache)[rows].transpose(0, 3, 1, 2).copy()))
    assert len(list(tmp_path.glob("toy-4px-abc-rows-*.npy"))) == 1  # gathered once, on disk
    assert not x.is_contiguous()  # a view of the mapped (n, R, R, 3) file, not a copy
    again = mapped_rows(cache, rows)  # reuses the gathered file
    assert torch.equal(again, x) and len(list(tmp_path.glob("*.npy"))) == 2
    x[0] = 0  # copy-on-write: the files on disk keep their pixels
    assert torch.equal(mapped_rows(cache, rows)[0], again[0]) and again[0].any()


def test_a_contiguous_run_is_a_view_of_the_cache_itself(tmp_path):
    cache = _cache(tmp_path)
    x = mapped_rows(cache, np.arange(3, 8))
    assert torch.equal(x, torch.from_numpy(np.asarray(cache)[3:8].transpose(0, 3, 1, 2).copy()))
    assert list(tmp_path.glob("*rows*")) == []


def test_batches_of_a_mapped_split_are_contiguous_model_inputs(tmp_path):
    x = mapped_rows(_cache(tmp_path), np.array([9, 0, 4, 1]))
    data = GroupData(x, torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long))
    batch = model_inputs(data.subset(torch.tensor([2, 0])).x, "cpu")
    assert batch.is_contiguous()
    expected = torch.from_numpy(np.asarray(_cache(tmp_path))[[4, 9]].transpose(0, 3, 1, 2).copy())
    torch.testing.assert_close(batch, expected.float() / 127.5 - 1.0)


def test_an_in_memory_array_is_gathered_in_memory(tmp_path):
    images = np.asarray(_cache(tmp_path)).copy()
    x = mapped_rows(images, np.array([1, 0]))
    assert x.is_contiguous() and torch.equal(x, torch.from_numpy(images[[1, 0]].transpose(0, 3, 1, 2).copy()))
