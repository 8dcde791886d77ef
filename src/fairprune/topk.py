"""Exact top-k masks for scores that move a little between calls (a learned mask).

:class:`TopK` keeps the highest scores at exactly ``round(target * n)`` removed entries, like
:func:`torch.topk`, but each call remembers the *cut* (a value with exactly ``n_keep`` scores
above it), and the next call looks for the new cut among the scores near the old one (a band
found with two comparisons and one partial sort of the band) instead of ranking all of them.
A cut is used only when exactly ``n_keep`` scores lie above it, in which case the top set is
unique; otherwise (ties at the boundary, no cut yet, a band that misses) the call falls back
to :func:`torch.topk`, whose order breaks the ties, so the count is always exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["TopK", "n_pruned"]


def n_pruned(n: int, target: float) -> int:
    """How many of ``n`` entries a sparsity ``target`` removes: ``round(target * n)``."""
    return int(round(target * n))


class TopK:
    """Warm-started exact top-k over one flat score vector or a dict of score tensors."""

    def __init__(self) -> None:
        self._cuts: dict[str, tuple[float, float]] = {}  # scope key -> (cut, band half-width)

    def masks(self, scores: dict[str, Tensor], target: float, *, scope: str = "global") -> dict[str, Tensor]:
        """Binary float masks shaped like ``scores``, keeping the highest at sparsity ``target``
        over all tensors (``scope="global"``) or per tensor (``"layer"``)."""
        names = list(scores)
        flat = torch.cat([scores[n].detach().reshape(-1).float() for n in names])  # (N,)
        sizes = [scores[n].numel() for n in names]
        keep = self.keep(flat, target, scope=scope, segments=list(zip(names, sizes, strict=True)))
        return {
            n: part.reshape(scores[n].shape).to(scores[n].device)
            for n, part in zip(names, keep.split(sizes), strict=True)
        }

    def keep(
        self,
        flat: Tensor,
        target: float,
        *,
        scope: str = "global",
        segments: Sequence[tuple[str, int]] = (),
    ) -> Tensor:
        """``(N,)`` float 0/1 keeping the highest entries of the float ``flat`` at sparsity
        ``target``: over all of it (``scope="global"``), or within each ``(name, size)`` segment
        of ``segments``, in order (``"layer"``)."""
        if not 0.0 <= target < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {target}")
        if scope == "global":
            return self._keep(flat, flat.numel() - n_pruned(flat.numel(), target), "")
        if scope != "layer":
            raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
        if sum(size for _, size in segments) != flat.numel():
            raise ValueError(f"scope='layer' needs segments covering all {flat.numel()} scores")
        parts = flat.split([size for _, size in segments])
        return torch.cat(
            [
                self._keep(part, size - n_pruned(size, target), name)
                for (name, size), part in zip(segments, parts, strict=True)
            ]
        )

    def _keep(self, flat: Tensor, n_keep: int, key: str) -> Tensor:
        """``(N,)`` float 0/1 keeping the ``n_keep`` largest entries of ``flat``."""
        n_prune = flat.numel() - n_keep
        if key in self._cuts and 0 < n_keep < flat.numel():
            old, width = self._cuts[key]
            for _ in range(3):
                cut = _kth_near(flat, n_prune, old, width)
                if cut is not None:
                    keep, kept = _above(flat, cut)
                    if kept == n_keep:
                        self._cuts[key] = (cut, max(2.0 * abs(cut - old), width / 2.0))
                        return keep
                    break  # ties at the cut: rank them as topk does
                width *= 4.0
        keep = torch.zeros_like(flat)
        keep[torch.topk(flat, n_keep, sorted=False).indices] = 1.0
        if 0 < n_keep < flat.numel():
            cut = float(torch.where(keep > 0, flat.new_tensor(-math.inf), flat).max())
            self._cuts[key] = (cut, 1e-3 * float(flat.abs().max()) + 1e-12)
        return keep


# On the CPU, numpy's comparisons and counts are an order of magnitude faster than torch's
# (measured: 0.006 vs 0.08-0.13 ms on 92k floats); on a GPU the tensors stay where they are.


def _kth_near(flat: Tensor, k: int, centre: float, width: float) -> float | None:
    """The ``k``-th smallest entry of ``flat`` if it lies within ``width`` of ``centre``."""
    low, high = centre - width, centre + width
    if flat.device.type == "cpu":
        values = flat.numpy()
        n_below = int(np.count_nonzero(values < low))
        band = values[(values >= low) & (values <= high)]
        j = k - n_below
        return float(np.partition(band, j - 1)[j - 1]) if 1 <= j <= band.size else None
    n_below = int((flat < low).sum())
    band_t = flat[(flat >= low) & (flat <= high)]
    j = k - n_below
    return float(torch.kthvalue(band_t, j).values) if 1 <= j <= band_t.numel() else None


def _above(flat: Tensor, cut: float) -> tuple[Tensor, int]:
    """``(flat > cut)`` as float 0/1 like ``flat``, and how many are 1."""
    if flat.device.type == "cpu":
        above = flat.numpy() > cut
        return torch.from_numpy(above.astype(np.float32)).to(flat.dtype), int(np.count_nonzero(above))
    keep = (flat > cut).to(flat.dtype)
    return keep, int(keep.sum())
