"""Masks as parametrizations: effective weight = ``mask * weight``.

A mask is a buffer on a small :mod:`torch.nn.utils.parametrize` module, addressed by the
parameter's full name (``"layers.0.weight"``). ``Masks`` is a plain ``dict[str, Tensor]`` of
binary float tensors shaped like their parameters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

__all__ = [
    "Masks",
    "Mask",
    "prunable_parameters",
    "apply_masks",
    "get_masks",
    "bake_masks",
    "topk_masks",
    "TopK",
    "sparsity",
    "check_sparsity",
    "effective_weight_grads",
    "capture_effective_grads",
    "mask_versions",
]

Masks = dict[str, Tensor]
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class Mask(nn.Module):
    """Parametrization ``weight -> mask * weight``; can record ``d loss / d(mask * weight)``."""

    mask: Tensor

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)
        self.capture = False
        self.effective_grad: Tensor | None = None

    def forward(self, weight: Tensor) -> Tensor:
        out = weight * self.mask
        if self.capture and out.requires_grad:
            out.register_hook(self._store)
        return out

    def _store(self, grad: Tensor) -> None:
        self.effective_grad = grad if self.effective_grad is None else self.effective_grad + grad


def _parametrizations(module: nn.Module) -> nn.ModuleDict:
    return cast(nn.ModuleDict, module.parametrizations)


def _split(name: str) -> tuple[str, str]:
    module_name, _, param_name = name.rpartition(".")
    return module_name, param_name


def _prunable_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every Linear/Conv in ``model.named_modules()`` order.

    Walks ``_modules`` directly and does not descend into the parametrizations that masks put
    on a module (a mask is never prunable): this runs several times per step of a learned mask.
    """
    out: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()
    stack: list[tuple[str, nn.Module]] = [("", model)]
    while stack:
        name, module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        if isinstance(module, PRUNABLE_TYPES):
            out.append((name, module))
        children = [
            (f"{name}.{key}" if name else key, child)
            for key, child in module._modules.items()
            if child is not None and not (key == "parametrizations" and parametrize.is_parametrized(module))
        ]
        stack.extend(reversed(children))
    return out


def prunable_parameters(model: nn.Module) -> dict[str, Tensor]:
    """The prunable weights: ``weight`` of every Linear and Conv layer, by full name.

    Returns the *original* (unmasked) parameter tensors, also when masks are applied.
    """
    out: dict[str, Tensor] = {}
    for module_name, module in _prunable_modules(model):
        prefix = f"{module_name}." if module_name else ""
        if parametrize.is_parametrized(module, "weight"):
            out[prefix + "weight"] = cast(Tensor, _parametrizations(module)["weight"].original)
        else:
            out[prefix + "weight"] = cast(Tensor, module.weight)
    if not out:
        raise ValueError(
            f"{type(model).__name__} has no prunable parameters; expected at least one "
            f"{', '.join(t.__name__ for t in PRUNABLE_TYPES)} layer"
        )
    return out


def _mask_module(model: nn.Module, name: str) -> Mask | None:
    module_name, param_name = _split(name)
    return _mask_of(model.get_submodule(module_name), param_name)


def _mask_of(module: nn.Module, param_name: str) -> Mask | None:
    if not parametrize.is_parametrized(module, param_name):
        return None
    for p in cast(nn.ModuleList, _parametrizations(module)[param_name]):
        if isinstance(p, Mask):
            return p
    return None


def _weight_masks(model: nn.Module) -> list[tuple[str, Mask | None]]:
    """``(weight name, its Mask or None)`` of every prunable weight, in one walk."""
    return [(f"{n}.weight" if n else "weight", _mask_of(m, "weight")) for n, m in _prunable_modules(model)]


def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Put ``masks`` on ``model`` (registering parametrizations or updating existing ones)."""
    params = prunable_parameters(model)
    unknown = sorted(set(masks) - set(params))
    if unknown:
        raise ValueError(f"masks name unknown parameters {unknown}; prunable: {sorted(params)}")
    for name, mask in masks.items():
        if mask.shape != params[name].shape:
            raise ValueError(
                f"mask for {name!r} has shape {tuple(mask.shape)}, expected {tuple(params[name].shape)}"
            )
        mask = mask.detach().to(device=params[name].device, dtype=params[name].dtype)
        existing = _mask_module(model, name)
        if existing is not None:
            existing.mask.copy_(mask)
        else:
            module_name, param_name = _split(name)
            parametrize.register_parametrization(
                model.get_submodule(module_name), param_name, Mask(mask.clone())
            )


def get_masks(model: nn.Module, *, copy: bool = True) -> Masks:
    """The current masks of every prunable parameter (all-ones where none is applied).

    ``copy=False`` returns the live mask buffers (no clone: for reading them in a hot loop;
    they change when the masks are re-applied)."""
    out: Masks = {}
    params = prunable_parameters(model)
    for name, mask in _weight_masks(model):
        if mask is None:
            out[name] = torch.ones_like(params[name]).detach()
        else:
            out[name] = mask.mask.detach().clone() if copy else mask.mask.detach()
    return out


def bake_masks(model: nn.Module) -> nn.Module:
    """Remove every parametrization, leaving ``mask * weight`` (etc.) as plain parameters (in place).

    Safe on deep copies: a parametrized module and its ``copy.deepcopy`` share one dynamically
    created class, and ``remove_parametrizations`` deletes the property from that class, which
    would break the other model. Each module gets a private copy of its class first.
    """
    for module in model.modules():
        if parametrize.is_parametrized(module):
            cls = type(module)
            namespace = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
            module.__class__ = type(cls.__name__, cls.__bases__, namespace)
            for name in list(_parametrizations(module)):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return model


def _n_prune(n: int, target: float) -> int:
    return int(round(target * n))


def topk_masks(scores: dict[str, Tensor], target: float, *, scope: str = "global") -> Masks:
    """Binary masks keeping the highest scores, at exactly ``round(target * n)`` pruned weights.

    Args:
        scores: One real-valued score tensor per parameter name.
        target: Sparsity in [0, 1): fraction of the weights to remove.
        scope: ``"global"`` ranks all scores together; ``"layer"`` prunes each tensor to
            ``target`` on its own.

    Ties are broken by :func:`torch.topk`'s order, so the count is always exact.
    """
    return TopK().masks(scores, target, scope=scope)


class TopK:
    """:func:`topk_masks` for scores that move a little between calls (a learned mask).

    Each call remembers the *cut*, a value with exactly ``n_keep`` scores above it, and the next
    call looks for the new cut among the scores near the old one (a band found with two
    comparisons and one :func:`torch.kthvalue` on the band) instead of ranking all of them.
    The masks are those of :func:`topk_masks`: a cut is used only when exactly ``n_keep``
    scores lie above it, in which case the top set is unique; otherwise (ties at the boundary,
    no cut yet, a band that misses) the call falls back to :func:`torch.topk`.
    """

    def __init__(self) -> None:
        self._cuts: dict[str, tuple[float, float]] = {}  # scope key -> (cut, band half-width)

    def masks(self, scores: dict[str, Tensor], target: float, *, scope: str = "global") -> Masks:
        """Masks of ``scores`` at sparsity ``target`` (see :func:`topk_masks`)."""
        if not 0.0 <= target < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {target}")
        if scope == "layer":
            return {name: self._global({name: s}, target, name)[name] for name, s in scores.items()}
        if scope != "global":
            raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
        return self._global(scores, target, "")

    def _global(self, scores: dict[str, Tensor], target: float, key: str) -> Masks:
        names = list(scores)
        flat = torch.cat([scores[n].detach().reshape(-1).float() for n in names])  # (N,)
        n_keep = flat.numel() - _n_prune(flat.numel(), target)
        keep = self._keep(flat, n_keep, key)
        out: Masks = {}
        start = 0
        for n in names:
            size = scores[n].numel()
            out[n] = keep[start : start + size].reshape(scores[n].shape).to(scores[n].device)
            start += size
        return out

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


def sparsity(masks: Masks) -> float:
    """Fraction of masked-out entries over all masks."""
    total = sum(m.numel() for m in masks.values())
    zeros = sum(int((m == 0).sum()) for m in masks.values())
    return zeros / total


def check_sparsity(masks: Masks, target: float, *, scope: str = "global") -> None:
    """Raise ``ValueError`` unless ``masks`` prune exactly ``round(target * n)`` weights."""
    groups: Iterable[Masks] = [masks] if scope == "global" else [{k: v} for k, v in masks.items()]
    for group in groups:
        n = sum(m.numel() for m in group.values())
        zeros = sum(int((m == 0).sum()) for m in group.values())
        if zeros != _n_prune(n, target):
            raise ValueError(f"masks prune {zeros} of {n} weights, expected {_n_prune(n, target)}")


def mask_versions(model: nn.Module, names: Iterable[str]) -> tuple[tuple[int, int, int], ...]:
    """A fingerprint of the masks on the parameters ``names``: per name, the identity of its
    :class:`Mask` and of the mask buffer and the buffer's version counter (``(0, 0, -1)`` when
    unmasked). It changes whenever one of these masks is written, registered or removed."""
    out = []
    for name in names:
        mask = _mask_module(model, name)
        out.append((0, 0, -1) if mask is None else (id(mask), id(mask.mask), mask.mask._version))
    return tuple(out)


def capture_effective_grads(model: nn.Module, enabled: bool) -> None:
    """Turn on/off recording of ``g = d loss / d(mask * weight)`` on every mask (and clear it)."""
    for _, mask in _weight_masks(model):
        if mask is not None:
            mask.capture = enabled
            mask.effective_grad = None


def effective_weight_grads(model: nn.Module) -> dict[str, Tensor]:
    """The recorded ``d loss / d(mask * weight)`` per parameter name (dense, also where masked)."""
    out: dict[str, Tensor] = {}
    for name, mask in _weight_masks(model):
        if mask is None or mask.effective_grad is None:
            raise ValueError(
                f"no recorded gradient for {name!r}: call capture_effective_grads(model, True) "
                "on a masked model before the backward pass"
            )
        out[name] = mask.effective_grad
    return out
