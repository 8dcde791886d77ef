"""Which parameters of a model are prunable, who chose them, and what is left dense.

A *prunable weight* is a weight matrix or kernel of a layer whose forward pass reads it through
the module attribute (so that a :mod:`torch.nn.utils.parametrize` mask reaches it):

=====================================  ==================================================
layer                                  prunable parameter(s)
=====================================  ==================================================
``nn.Linear``, ``nn.Conv1d/2d/3d``     ``weight``
Hugging Face ``Conv1D`` (GPT-2)        ``weight`` (stored ``[in, out]``; masked as stored)
``nn.MultiheadAttention``              ``in_proj_weight`` (or ``q/k/v_proj_weight``);
                                       its ``out_proj`` is an ``nn.Linear``
``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``  ``weight_ih_l*``, ``weight_hh_l*`` (``weight_hr_l*``)
``nn.Embedding``                       ``weight``, only when asked (``prunable=``)
=====================================  ==================================================

Everything else (biases, normalisation, position embeddings, a user's bare ``nn.Parameter``)
is left dense and named so in :class:`Coverage`. A tensor shared by several modules (tied
weights) is one parameter: named by its first name in ``model.named_parameters()``, masked
once (one mask on every module that uses it) and counted once.

``prunable=`` chooses among the candidates: parameter names (``fnmatch`` patterns such as
``"encoder.*"``), layer types (``[nn.Linear, nn.Embedding]``), or a predicate
``(name, parameter) -> bool``. The choice is recorded on the model (:func:`select_prunable`),
so that every later step (scores, masks, sparsity) sees the same weights.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from torch import Tensor, nn
from torch.nn.utils import parametrize

__all__ = [
    "PRUNABLE_TYPES",
    "Prunable",
    "Slot",
    "Coverage",
    "candidate_weights",
    "prunable_slots",
    "select_prunable",
    "tied_parameters",
    "coverage",
]

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""Layers whose ``weight`` is prunable by default (see the module's table for the others)."""
SELECTION_ATTRIBUTE = "_fairprune_prunable"
"""The attribute that records a model's chosen prunable weights (names relative to it)."""

Prunable = Iterable[str | type[nn.Module]] | Callable[[str, Tensor], bool] | None
"""What ``prunable=`` takes: names or name patterns, layer types, or a predicate."""
Slot = tuple[nn.Module, str]
"""A module and the attribute name under which it holds a prunable tensor."""


def _is_hf_conv1d(module: nn.Module) -> bool:
    # transformers.pytorch_utils.Conv1D, recognised without importing transformers (an extra)
    # (a masked module's class is a parametrized subclass: look along the MRO)
    return any(
        c.__name__ == "Conv1D" and c.__module__.startswith("transformers") for c in type(module).__mro__
    )


def _weight_names(module: nn.Module) -> tuple[str, ...]:
    """The candidate weights ``module`` holds itself (not its children)."""
    if isinstance(module, PRUNABLE_TYPES) or _is_hf_conv1d(module) or isinstance(module, nn.Embedding):
        return ("weight",)
    if isinstance(module, nn.MultiheadAttention):
        if module._qkv_same_embed_dim:
            return ("in_proj_weight",)
        return ("q_proj_weight", "k_proj_weight", "v_proj_weight")
    if isinstance(module, nn.RNNBase):
        return tuple(n for n in module._flat_weights_names if n.startswith("weight_"))
    return ()


def _default_kind(module: nn.Module) -> bool:
    """Prunable without being asked: every candidate but embeddings."""
    return not isinstance(module, nn.Embedding)


def _tensor(module: nn.Module, name: str) -> Tensor:
    """The stored (unmasked) tensor ``module.<name>``."""
    if parametrize.is_parametrized(module, name):
        return cast(Tensor, cast(nn.ModuleDict, module.parametrizations)[name].original)
    return cast(Tensor, getattr(module, name))


def _modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``model.named_modules()`` order, without descending into mask parametrizations (this
    runs several times per step of a learned mask)."""
    out: list[tuple[str, nn.Module]] = []
    seen: set[int] = set()
    stack: list[tuple[str, nn.Module]] = [("", model)]
    while stack:
        name, module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        out.append((name, module))
        parametrized = parametrize.is_parametrized(module)
        children = [
            (f"{name}.{key}" if name else key, child)
            for key, child in module._modules.items()
            if child is not None and not (key == "parametrizations" and parametrized)
        ]
        stack.extend(reversed(children))
    return out


@dataclass
class _Weight:
    name: str  # the first full name of the tensor
    tensor: Tensor
    slots: list[Slot]
    names: list[str]  # the full name of each slot
    default: bool  # prunable without being asked (some slot is not an embedding)


def _candidates(model: nn.Module) -> tuple[list[_Weight], frozenset[str] | None]:
    """Every candidate weight once (tied slots joined), and the recorded selection (if any)."""
    weights: dict[int, _Weight] = {}
    selection: frozenset[str] | None = None
    for module_name, module in _modules(model):
        prefix = f"{module_name}." if module_name else ""
        chosen = module.__dict__.get(SELECTION_ATTRIBUTE)
        if chosen is not None and selection is None:
            selection = frozenset(prefix + n for n in chosen)
        for param in _weight_names(module):
            tensor = _tensor(module, param)
            if tensor is None:
                continue
            found = weights.get(id(tensor))
            if found is None:
                weights[id(tensor)] = _Weight(
                    prefix + param, tensor, [(module, param)], [prefix + param], _default_kind(module)
                )
            else:
                found.slots.append((module, param))
                found.names.append(prefix + param)
                found.default = found.default or _default_kind(module)
    return list(weights.values()), selection


def candidate_weights(model: nn.Module) -> dict[str, Tensor]:
    """Every weight ``prunable=`` may choose (embeddings included), by name, each tensor once."""
    return {w.name: w.tensor for w in _candidates(model)[0]}


def prunable_slots(model: nn.Module) -> dict[str, tuple[Tensor, list[Slot]]]:
    """The prunable weights: name -> (stored tensor, every ``(module, attribute)`` using it).

    The recorded choice (:func:`select_prunable`) where there is one, else every candidate but
    embeddings (see the module's table).
    """
    weights, selection = _candidates(model)
    if selection is None:
        return {w.name: (w.tensor, w.slots) for w in weights if w.default}
    return {w.name: (w.tensor, w.slots) for w in weights if w.name in selection}


def select_prunable(model: nn.Module, prunable: Prunable, *, record: bool = True) -> list[str]:
    """Record which weights of ``model`` are prunable (``None``: the default) and return them.

    Args:
        model: The model (the choice is stored on it, and copied with it).
        prunable: Names or ``fnmatch`` patterns of parameters (``"bert.encoder.*"``; each must
            match a candidate weight), layer types (``nn.Linear``, ``nn.Embedding``, ...; each
            must hold a candidate), or a predicate ``(name, parameter) -> bool`` over the
            candidates; ``None`` for the default (every candidate but embeddings).
        record: Store the choice on ``model`` (else only check it and return it).

    Raises:
        TypeError: ``prunable`` is none of these.
        ValueError: A name or type matches no candidate weight, or nothing is chosen.
    """
    if record:
        model.__dict__.pop(SELECTION_ATTRIBUTE, None)
    if prunable is None:
        return [w.name for w in _candidates(model)[0] if w.default]
    weights = _candidates(model)[0]
    if callable(prunable) and not isinstance(prunable, type):
        chosen = [w.name for w in weights if prunable(w.name, w.tensor)]
    elif isinstance(prunable, (str, type)) or not isinstance(prunable, Iterable):
        raise TypeError(
            "prunable must be a list of parameter names or patterns, a list of layer types, or a "
            f"predicate (name, parameter) -> bool; received {prunable!r}"
        )
    else:
        chosen = _by_names_and_types(weights, list(prunable))
    if not chosen:
        raise ValueError(
            f"prunable={prunable!r} chose no weight of {type(model).__name__}; candidates: "
            f"{[w.name for w in weights][:8]}"
        )
    if record:
        model.__dict__[SELECTION_ATTRIBUTE] = tuple(chosen)
    return chosen


def _by_names_and_types(weights: list[_Weight], items: list[Any]) -> list[str]:
    names = [w.name for w in weights]
    chosen: set[str] = set()
    for item in items:
        if isinstance(item, str):
            hits = [w.name for w in weights if any(fnmatch.fnmatchcase(n, item) for n in w.names)]
            what = f"the name {item!r}"
        elif isinstance(item, type) and issubclass(item, nn.Module):
            hits = [w.name for w in weights if any(isinstance(m, item) for m, _ in w.slots)]
            what = f"the type {item.__name__}"
        else:
            raise TypeError(
                f"prunable= lists names (str) or layer types (nn.Module subclasses); received {item!r}"
            )
        if not hits:
            raise ValueError(
                f"prunable: {what} matches no prunable weight; expected a weight of a Linear, Conv, "
                f"HF Conv1D, MultiheadAttention, RNN/LSTM/GRU or Embedding layer, such as {names[:6]}"
            )
        chosen.update(hits)
    return [n for n in names if n in chosen]


def tied_parameters(model: nn.Module) -> dict[str, list[str]]:
    """Tensors that several parameter names share: first name -> every name (two or more),
    in ``model.named_parameters(remove_duplicate=False)`` order."""
    names: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(_unmasked_name(name))
    return {found[0]: found for found in names.values() if len(found) > 1}


def _unmasked_name(name: str) -> str:
    """``a.parametrizations.weight.original`` -> ``a.weight``."""
    return name.replace(".parametrizations.", ".").removesuffix(".original")


@dataclass(frozen=True)
class Coverage:
    """What is pruned and what is left dense, each tensor counted once.

    Attributes:
        prunable: Prunable weight name -> its number of entries.
        dense: Every other parameter -> ``"<layer type>.<attribute>"`` (why it is dense: not a
            weight of a supported layer, or an embedding not asked for).
        dense_sizes: Every other parameter -> its number of entries.
        tied: First name -> every name, for tensors shared by several modules.
    """

    prunable: dict[str, int]
    dense: dict[str, str]
    dense_sizes: dict[str, int]
    tied: dict[str, list[str]]

    @property
    def n_prunable(self) -> int:
        return sum(self.prunable.values())

    @property
    def n_parameters(self) -> int:
        """Entries of all parameters (tied tensors once)."""
        return self.n_prunable + sum(self.dense_sizes.values())

    @property
    def fraction(self) -> float:
        """Share of all parameter entries that are prunable."""
        return self.n_prunable / max(1, self.n_parameters)

    def describe(self, shown: int = 6) -> str:
        """One line: how much is prunable, and the largest dense parameters by name."""
        largest = sorted(self.dense_sizes, key=lambda n: -self.dense_sizes[n])
        listed = ", ".join(f"{n} ({self.dense[n]}, {self.dense_sizes[n]})" for n in largest[:shown])
        more = f", ... ({len(largest) - shown} more)" if len(largest) > shown else ""
        tied = f"; tied: {list(self.tied.values())}" if self.tied else ""
        return (
            f"{len(self.prunable)} prunable weights, {self.n_prunable} of {self.n_parameters} "
            f"parameters ({self.fraction:.1%}); left dense: {listed or 'nothing'}{more}{tied}"
        )


def _kind(module: nn.Module) -> str:
    """The layer's class name (a masked module's own class, not its parametrized subclass)."""
    return type(module).__name__.removeprefix("Parametrized")


def coverage(model: nn.Module) -> Coverage:
    """The :class:`Coverage` of ``model``'s prunable weights (as chosen) and the rest."""
    slots = prunable_slots(model)
    owners = {id(_tensor(m, p)): f"{type(m).__name__}.{p}" for _, (_, ss) in slots.items() for m, p in ss}
    for _, module in _modules(model):
        for param_name, param in module._parameters.items():
            if param is not None:
                owners.setdefault(id(param), f"{_kind(module)}.{param_name}")
    prunable = {name: tensor.numel() for name, (tensor, _) in slots.items()}
    kept = {id(t) for t, _ in slots.values()}
    dense, sizes = {}, {}
    for name, param in model.named_parameters():
        if id(param) in kept:
            continue
        name = _unmasked_name(name)
        dense[name], sizes[name] = owners.get(id(param), "Parameter"), param.numel()
    return Coverage(prunable, dense, sizes, tied_parameters(model))
