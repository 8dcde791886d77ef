"""Masks as parametrizations: effective weight = ``mask * weight``.

A mask is a buffer on a small :mod:`torch.nn.utils.parametrize` module, addressed by the
parameter's full name (``"layers.0.weight"``). ``Masks`` is a plain ``dict[str, Tensor]`` of
binary float tensors shaped like their parameters.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from fairprune.prunable import PRUNABLE_TYPES, prunable_slots
from fairprune.topk import TopK, n_pruned

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
    "MaskSlots",
    "flat_alias",
    "PRUNABLE_TYPES",
]

Masks = dict[str, Tensor]


class Mask(nn.Module):
    """Parametrization ``weight -> mask * weight``; can record ``d loss / d(mask * weight)``.

    With ``capture`` on, every forward pass that builds a graph records ``g`` on the effective
    weight it returns (summed over passes until cleared); with ``keep_outputs`` too, it also
    keeps those effective weights, so that ``torch.autograd.grad`` can ask for ``g`` alone.
    """

    mask: Tensor

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)
        self.capture = False
        self.keep_outputs = False
        self.effective_grad: Tensor | None = None
        self.outputs: list[Tensor] = []

    def forward(self, weight: Tensor) -> Tensor:
        out = weight * self.mask
        if self.capture and out.requires_grad:
            out.register_hook(self._store)
            if self.keep_outputs:
                self.outputs.append(out)
        return out

    def _store(self, grad: Tensor) -> None:
        self.effective_grad = grad if self.effective_grad is None else self.effective_grad + grad


def _parametrizations(module: nn.Module) -> nn.ModuleDict:
    return cast(nn.ModuleDict, module.parametrizations)


def _split(name: str) -> tuple[str, str]:
    module_name, _, param_name = name.rpartition(".")
    return module_name, param_name


def prunable_parameters(model: nn.Module) -> dict[str, Tensor]:
    """The prunable weights by full name (see :mod:`fairprune.prunable`: Linear, Conv, HF
    Conv1D, MultiheadAttention and RNN weights, embeddings when chosen; tied tensors once).

    Returns the *original* (unmasked) parameter tensors, also when masks are applied.
    """
    out = {name: tensor for name, (tensor, _) in prunable_slots(model).items()}
    if not out:
        raise ValueError(
            f"{type(model).__name__} has no prunable parameters; expected at least one Linear, Conv, "
            "HF Conv1D, MultiheadAttention or RNN layer (or an Embedding chosen with prunable=)"
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
    return [(name, _mask_of(*slots[0])) for name, (_, slots) in prunable_slots(model).items()]


def apply_masks(model: nn.Module, masks: Masks) -> None:
    """Put ``masks`` on ``model`` (registering parametrizations or updating existing ones)."""
    slots = prunable_slots(model)
    unknown = sorted(set(masks) - set(slots))
    if unknown:
        raise ValueError(f"masks name unknown parameters {unknown}; prunable: {sorted(slots)}")
    for name, mask in masks.items():
        param, uses = slots[name]
        if mask.shape != param.shape:
            raise ValueError(
                f"mask for {name!r} has shape {tuple(mask.shape)}, expected {tuple(param.shape)}"
            )
        mask = mask.detach().to(device=param.device, dtype=param.dtype)
        existing = _mask_of(*uses[0])
        if existing is not None:
            existing.mask.copy_(mask)
            continue
        shared = Mask(mask.clone())  # one mask on every module using the tensor (tied weights)
        for module, param_name in uses:
            parametrize.register_parametrization(module, param_name, shared)
            if isinstance(module, nn.RNNBase) and _release_flat_weights not in module._forward_hooks.values():
                module.register_forward_hook(_release_flat_weights)


def _release_flat_weights(module: nn.Module, inputs: object, output: object) -> None:
    """After a forward pass of a masked RNN: keep its ``_flat_weights`` (the masked weights of
    that pass, which it reads again only if they changed) out of the autograd graph, so that the
    module can be deep-copied (autograd's non-leaf tensors cannot). The next pass recomputes
    them from the masks (``RNNBase._update_flat_weights`` sees new tensors)."""
    flat = module.__dict__.get("_flat_weights")
    if flat is not None:
        module.__dict__["_flat_weights"] = [None if w is None else w.detach() for w in flat]


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
            for key, hook in list(module._forward_hooks.items()):
                if hook is _release_flat_weights:
                    del module._forward_hooks[key]
    return model


def topk_masks(
    scores: dict[str, Tensor], target: float, *, scope: str = "global", floor: bool = True
) -> Masks:
    """Binary masks keeping the highest scores, at exactly ``round(target * n)`` pruned weights.

    Args:
        scores: One real-valued score tensor per parameter name.
        target: Sparsity in [0, 1): fraction of the weights to remove.
        scope: ``"global"`` ranks all scores together; ``"layer"`` prunes each tensor to
            ``target`` on its own.
        floor: Global scope: no tensor is removed whole (each keeps a weight, the last one, the
            classifier of most models, one per output row; see :func:`fairprune.topk.layer_floors`).

    Ties are broken by :func:`torch.topk`'s order, so the count is always exact.
    """
    return TopK().masks(scores, target, scope=scope, floor=floor)


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
        if zeros != n_pruned(n, target):
            raise ValueError(f"masks prune {zeros} of {n} weights, expected {n_pruned(n, target)}")


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
            _capture(mask, enabled)


def _capture(mask: Mask, enabled: bool, keep_outputs: bool = False) -> None:
    mask.capture, mask.keep_outputs = enabled, keep_outputs
    mask.effective_grad = None
    mask.outputs = []


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


class MaskSlots:
    """The masks of a model's prunable weights in one fixed order, for a learned mask's hot path
    (it reads ``theta``, ``m`` and ``g`` and writes ``m`` at every step) without walking the
    module tree or validating shapes again.

    The mask buffers become views of one flat ``(N,)`` buffer (:attr:`flat`), so that a new
    mask is one copy; the buffers stay the model's own (``load_state_dict`` and ``apply_masks``
    write into them in place). If something replaced a buffer since, :meth:`write` binds it
    again. A copy of the model needs its own slots.

    Raises:
        ValueError: If a prunable weight of ``model`` has no mask.
    """

    def __init__(self, model: nn.Module) -> None:
        pairs = _weight_masks(model)
        unmasked = [name for name, mask in pairs if mask is None]
        if unmasked:
            raise ValueError(f"MaskSlots needs a mask on every prunable weight; {unmasked} have none")
        weights = prunable_parameters(model)
        self.names = [name for name, _ in pairs]
        self.modules = [cast(Mask, mask) for _, mask in pairs]
        self.weights = [weights[name] for name in self.names]
        self.sizes = [w.numel() for w in self.weights]
        first = self.modules[0].mask
        uniform = all(m.mask.dtype == first.dtype and m.mask.device == first.device for m in self.modules)
        # one flat buffer needs one dtype and device (else: one copy per mask)
        self.flat = first.new_empty(sum(self.sizes)) if uniform else None
        self._views: list[Tensor] = []
        self._bind()

    def _bind(self) -> None:
        if self.flat is None:
            return
        views = self.flat.split(self.sizes)
        for module, view in zip(self.modules, views, strict=True):
            view.copy_(module.mask.detach().reshape(-1))
            module.mask = view.view(module.mask.shape)
        self._views = [m.mask for m in self.modules]

    @property
    def segments(self) -> list[tuple[str, int]]:
        """``(name, size)`` of every weight, in the flat order."""
        return list(zip(self.names, self.sizes, strict=True))

    def masks(self) -> list[Tensor]:
        """The mask buffers (live), in order."""
        return [m.mask for m in self.modules]

    def grads(self) -> list[Tensor]:
        """The recorded ``g = d loss / d(mask * weight)``, in order."""
        grads = [m.effective_grad for m in self.modules]
        if any(g is None for g in grads):
            missing = [n for n, g in zip(self.names, grads, strict=True) if g is None]
            raise ValueError(
                f"no recorded gradient for {missing}: record g (capture on) on a masked model "
                "before the backward pass"
            )
        return cast(list[Tensor], grads)

    def outputs(self) -> list[Tensor]:
        """The effective weights of the forward passes since :meth:`capture` with ``keep_outputs``."""
        return [out for m in self.modules for out in m.outputs]

    def write(self, flat_masks: Tensor) -> None:
        """Set every mask from one flat ``(N,)`` 0/1 tensor (in place)."""
        if self.flat is None:
            masks = self.masks()
            parts = flat_masks.split(self.sizes)
            torch._foreach_copy_(
                masks, [p.view(m.shape).to(m.dtype) for p, m in zip(parts, masks, strict=True)]
            )
            return
        if any(m.mask is not v for m, v in zip(self.modules, self._views, strict=True)):
            self._bind()  # a buffer was replaced (e.g. moved): take it in again
        self.flat.copy_(flat_masks)

    def capture(self, enabled: bool, *, keep_outputs: bool = False) -> None:
        """Turn on/off recording of ``g`` (see :class:`Mask`) and clear what was recorded."""
        for mask in self.modules:
            _capture(mask, enabled, keep_outputs)


def flat_alias(tensors: list[Tensor]) -> Tensor | None:
    """The ``(N,)`` tensor of which ``tensors`` are consecutive contiguous slices, in order (one
    storage, no copy), or ``None`` when they are not laid out so."""
    first = tensors[0]
    size, address = first.element_size(), first.data_ptr()
    total = 0
    for t in tensors:
        if t.dtype != first.dtype or t.data_ptr() != address + total * size or not t.is_contiguous():
            return None
        total += t.numel()
    if first.untyped_storage().nbytes() < (first.storage_offset() + total) * size:
        return None
    return torch.as_strided(first.detach(), (total,), (1,))
