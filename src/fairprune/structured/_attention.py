"""Attention heads and MLP neurons of transformers as channel units (our own groups).

One *head unit* is one attention head: its rows of the query, key and value projections and the
matching columns of the output projection. With grouped-query attention (``num_key_value_heads``
< ``num_attention_heads``) one unit is one key/value head together with the query heads that
share it, so the grouping stays intact. Removing a unit removes all of those weights, which is
what it costs in the channel budget. Recognised layouts:

- ``torch.nn.MultiheadAttention`` (torchvision's ``VisionTransformer``): packed ``in_proj_weight``
  (q, k, v stacked) and ``out_proj``; slimmed into a :class:`SlimMultiheadAttention`.
- timm ``Attention`` (ViT, DeiT): fused ``qkv`` Linear and ``proj``; ``num_heads`` / ``attn_dim``.
- Hugging Face BERT-style: ``query`` / ``key`` / ``value`` Linears and the sibling
  ``output.dense``; ``num_attention_heads`` / ``all_head_size``.
- Hugging Face GPT-2-style: fused ``c_attn`` and ``c_proj`` ``Conv1D`` (weights stored
  ``(in, out)``); ``num_heads`` / ``split_size``. GPT-2's MLP (``c_fc`` / ``c_proj`` ``Conv1D``)
  gives *neuron units* the same way, since torch-pruning cannot trace GPT-2.
- Hugging Face Llama-style (Mistral, Qwen2, ...): ``q_proj`` / ``k_proj`` / ``v_proj`` /
  ``o_proj`` with ``head_dim``, grouped-query attention included.

Why not torch-pruning's own attention support: its ``num_heads`` option prunes the hidden
(embedding) width of ``nn.MultiheadAttention`` together with the heads, and its traversal of
Llama's rotary embedding (slice, negate, concatenate) with grouped-query attention never reaches
a fixed point (see :func:`~fairprune.structured.channel_groups`). Heads are found here by module
layout; torch-pruning still finds the MLP neurons of Linear MLPs and every CNN channel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from fairprune.structured._mha import SlimMultiheadAttention


@dataclass(frozen=True)
class Piece:
    """One tensor of a unit: ``positions`` along ``dim``; position ``p`` belongs to unit
    ``(p % period) // width`` (``period`` 0: no period, for q, k, v stacked in one tensor)."""

    name: str  # full parameter name
    dim: int
    width: int
    period: int = 0
    input_dim: int = 1  # the dim of the input features (0 for HF Conv1D weights)

    def units(self, size: int) -> Tensor:
        pos = torch.arange(size)
        return (pos % self.period if self.period else pos) // self.width


@dataclass(frozen=True)
class Units:
    """The heads of one attention module or the hidden neurons of one MLP."""

    name: str  # module name, the channel group's id
    kind: str  # "heads" or "neurons"
    n_units: int
    pieces: tuple[Piece, ...]
    roots: tuple[str, ...]  # modules whose output channels are inside the units (no generic groups)
    retune: Callable[[nn.Module, int], None]  # sets the module's attributes to the kept unit count


def _set(module: nn.Module, **attributes: int) -> None:
    """Set ``module``'s attributes (head counts, widths) after its tensors were sliced."""
    for key, value in attributes.items():
        setattr(module, key, value)


def _is_conv1d(module: object) -> bool:
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def _linear_bias(name: str, linear: nn.Module, dim_width: int, period: int = 0) -> tuple[Piece, ...]:
    weight = Piece(f"{name}.weight", 0, dim_width, period)
    bias = getattr(linear, "bias", None)
    return (weight,) if bias is None else (weight, Piece(f"{name}.bias", 0, dim_width, period))


def _mha(name: str, m: nn.Module) -> Units | None:
    if not isinstance(m, nn.MultiheadAttention):
        return None
    if not m._qkv_same_embed_dim or m.bias_k is not None or m.add_zero_attn:
        raise ValueError(
            f"{name} (nn.MultiheadAttention) has separate q/k/v projections, bias_k or add_zero_attn; "
            "expected a packed in_proj_weight (use structure='unstructured' for this model)"
        )
    e, d = m.embed_dim, m.head_dim
    pieces = [Piece(f"{name}.in_proj_weight", 0, d, e)]
    if m.in_proj_bias is not None:
        pieces.append(Piece(f"{name}.in_proj_bias", 0, d, e))
    pieces.append(Piece(f"{name}.out_proj.weight", 1, d))
    return Units(name, "heads", m.num_heads, tuple(pieces), (), lambda module, kept: None)


def _timm(name: str, module: nn.Module) -> Units | None:
    m: Any = module
    qkv, proj = getattr(m, "qkv", None), getattr(m, "proj", None)
    if not (isinstance(qkv, nn.Linear) and isinstance(proj, nn.Linear) and hasattr(m, "num_heads")):
        return None
    if not hasattr(m, "head_dim") or hasattr(m, "relative_position_bias_table"):
        raise ValueError(
            f"{name} ({type(m).__name__}) keeps per-head tensors that head pruning does not slice "
            "(e.g. a relative position bias); use structure='unstructured' for this model"
        )
    for part in ("norm", "gate"):
        sub = getattr(m, part, None)
        if sub is not None and not isinstance(sub, nn.Identity):
            raise ValueError(f"{name}.{part} mixes the attention heads; expected none (timm scale_norm off)")
    d, inner = int(m.head_dim), qkv.out_features // 3

    def retune(module: nn.Module, kept: int) -> None:
        _set(module, num_heads=kept, attn_dim=kept * d)

    pieces = (*_linear_bias(f"{name}.qkv", qkv, d, inner), Piece(f"{name}.proj.weight", 1, d))
    return Units(name, "heads", inner // d, pieces, (f"{name}.qkv",), retune)


def _bert(name: str, m: nn.Module) -> Units | None:
    attn: Any
    attn, out = getattr(m, "self", None), getattr(getattr(m, "output", None), "dense", None)
    names = ("query", "key", "value")
    if attn is None or not isinstance(out, nn.Linear) or not hasattr(attn, "attention_head_size"):
        return None
    if not all(isinstance(getattr(attn, n, None), nn.Linear) for n in names):
        return None
    d = int(attn.attention_head_size)
    pieces = [p for n in names for p in _linear_bias(f"{name}.self.{n}", getattr(attn, n), d)]
    pieces.append(Piece(f"{name}.output.dense.weight", 1, d))

    def retune(module: nn.Module, kept: int) -> None:
        _set(module, num_attention_heads=kept, all_head_size=kept * d)

    roots = tuple(f"{name}.self.{n}" for n in names)
    return Units(f"{name}.self", "heads", attn.query.out_features // d, tuple(pieces), roots, retune)


def _gpt2(name: str, module: nn.Module) -> Units | None:
    m: Any = module
    c_attn, c_proj = getattr(m, "c_attn", None), getattr(m, "c_proj", None)
    if not (_is_conv1d(c_attn) and _is_conv1d(c_proj) and hasattr(m, "split_size")):
        return None
    if getattr(m, "is_cross_attention", False):
        raise ValueError(f"{name} is a cross-attention; expected self-attention (q_attn is not supported)")
    d, inner = int(m.head_dim), int(m.split_size)
    pieces = (
        Piece(f"{name}.c_attn.weight", 1, d, inner, input_dim=0),
        Piece(f"{name}.c_attn.bias", 0, d, inner),
        Piece(f"{name}.c_proj.weight", 0, d, input_dim=0),
    )

    def retune(module: nn.Module, kept: int) -> None:
        _set(module, num_heads=kept, split_size=kept * d)
        _set(module.get_submodule("c_attn"), nf=3 * kept * d)

    return Units(name, "heads", inner // d, pieces, (f"{name}.c_attn",), retune)


def _gpt2_mlp(name: str, module: nn.Module) -> Units | None:
    m: Any = module
    c_fc, c_proj = getattr(m, "c_fc", None), getattr(m, "c_proj", None)
    if not (_is_conv1d(c_fc) and _is_conv1d(c_proj)):
        return None
    pieces = (
        Piece(f"{name}.c_fc.weight", 1, 1, input_dim=0),
        Piece(f"{name}.c_fc.bias", 0, 1),
        Piece(f"{name}.c_proj.weight", 0, 1, input_dim=0),
    )

    def retune(module: nn.Module, kept: int) -> None:
        _set(module.get_submodule("c_fc"), nf=kept)

    return Units(name, "neurons", int(m.c_fc.nf), pieces, (f"{name}.c_fc",), retune)


def _llama(name: str, module: nn.Module) -> Units | None:
    m: Any = module
    names = ("q_proj", "k_proj", "v_proj", "o_proj")
    if not (all(isinstance(getattr(m, n, None), nn.Linear) for n in names) and hasattr(m, "head_dim")):
        return None
    d = int(m.head_dim)
    heads, kv_heads = m.q_proj.out_features // d, m.k_proj.out_features // d
    per_kv = heads // kv_heads  # query heads per key/value head: one unit is a key/value group
    pieces = (
        *_linear_bias(f"{name}.q_proj", m.q_proj, per_kv * d),
        *_linear_bias(f"{name}.k_proj", m.k_proj, d),
        *_linear_bias(f"{name}.v_proj", m.v_proj, d),
        Piece(f"{name}.o_proj.weight", 1, per_kv * d),
    )
    roots = tuple(f"{name}.{n}" for n in names[:3])

    def retune(module: nn.Module, kept: int) -> None:  # transformers 5 reads only head_dim
        counts = {"num_heads": kept * per_kv, "num_key_value_heads": kept}
        _set(module, **{key: value for key, value in counts.items() if hasattr(module, key)})

    return Units(name, "heads", kv_heads, pieces, roots, retune)


_FINDERS = (_mha, _timm, _bert, _gpt2, _gpt2_mlp, _llama)


def find_units(model: nn.Module) -> list[Units]:
    """Every attention module's heads and every Conv1D MLP's neurons in ``model``.

    Raises:
        ValueError: For an attention layout whose heads cannot be removed exactly (one line,
            naming the module).
    """
    found: list[Units] = []
    for name, module in model.named_modules():
        for finder in _FINDERS:
            units = finder(name, module)
            if units is not None:
                found.append(units)
                break
    return found


def _module_and_attr(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    module_name, _, attr = name.rpartition(".")
    return model.get_submodule(module_name), attr


def slim_units(model: nn.Module, units: Units, keep: Tensor) -> None:
    """Remove the dropped units of ``units`` from ``model`` in place (masks baked in first)."""
    if units.kind == "heads" and isinstance(model.get_submodule(units.name), nn.MultiheadAttention):
        parent, attr = _module_and_attr(model, units.name)
        setattr(parent, attr, SlimMultiheadAttention(getattr(parent, attr), keep))
        return
    kept_units = keep.cpu()
    for piece in units.pieces:
        module, attr = _module_and_attr(model, piece.name)
        old = getattr(module, attr)
        size = old.shape[piece.dim]
        rows = torch.nonzero(kept_units[piece.units(size)]).flatten().to(old.device)
        new = nn.Parameter(old.detach().index_select(piece.dim, rows).clone(), old.requires_grad)
        setattr(module, attr, new)
        if isinstance(module, nn.Linear):
            module.out_features, module.in_features = module.weight.shape
    units.retune(model.get_submodule(units.name), int(kept_units.sum()))
