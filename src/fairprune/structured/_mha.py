"""A slimmed ``nn.MultiheadAttention``: fewer heads than ``embed_dim / head_dim``.

``nn.MultiheadAttention`` ties its inner width (``num_heads * head_dim``) to ``embed_dim``, the
width of its inputs and outputs, so a copy with heads removed cannot be an
``nn.MultiheadAttention``. :class:`SlimMultiheadAttention` keeps its parameter names
(``in_proj_weight``, ``in_proj_bias``, ``out_proj``), its call signature and its outputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SlimMultiheadAttention(nn.Module):
    """Multi-head attention with ``num_heads`` heads of ``head_dim`` over an ``embed_dim`` stream.

    Args:
        mha: The module to slim (packed in-projection, no ``bias_k`` / ``add_zero_attn``).
        keep: ``(num_heads,)`` bool, the heads to keep.
    """

    def __init__(self, mha: nn.MultiheadAttention, keep: Tensor) -> None:
        super().__init__()
        self.embed_dim, self.head_dim = mha.embed_dim, mha.head_dim
        self.num_heads = int(keep.sum())
        self.batch_first, self.dropout = mha.batch_first, mha.dropout
        heads = torch.nonzero(keep).flatten()
        inner = (heads[:, None] * self.head_dim + torch.arange(self.head_dim)).flatten()  # (I,)
        rows = torch.cat([inner + part * self.embed_dim for part in range(3)])  # (3I,) q, k, v
        weight = mha.in_proj_weight.detach()
        self.in_proj_weight = nn.Parameter(weight[rows.to(weight.device)].clone())
        bias = mha.in_proj_bias
        self.in_proj_bias = (
            None if bias is None else nn.Parameter(bias.detach()[rows.to(bias.device)].clone())
        )
        out = mha.out_proj
        self.out_proj = nn.Linear(len(inner), self.embed_dim, bias=out.bias is not None)
        self.out_proj.to(device=out.weight.device, dtype=out.weight.dtype)
        with torch.no_grad():
            self.out_proj.weight.copy_(out.weight[:, inner.to(out.weight.device)])
            if out.bias is not None:
                self.out_proj.bias.copy_(out.bias)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        if not self.batch_first:  # (L, B, E) -> (B, L, E)
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = (None,) * 3 if self.in_proj_bias is None else self.in_proj_bias.chunk(3)
        batch, length = query.shape[:2]

        def heads(x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:  # (B, L, E) -> (B, H, L, d)
            return F.linear(x, w, b).view(batch, x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

        q, k, v = heads(query, w_q, b_q), heads(key, w_k, b_k), heads(value, w_v, b_v)
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # (B, H, L, S)
        scores = scores + _additive(attn_mask, key_padding_mask, is_causal, scores)
        attn = scores.softmax(-1)
        attn = F.dropout(attn, self.dropout, self.training)
        out = (attn @ v).transpose(1, 2).reshape(batch, length, -1)  # (B, L, I)
        out = self.out_proj(out)
        if not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        return out, attn.mean(1) if average_attn_weights else attn


def _additive(
    attn_mask: Tensor | None, key_padding_mask: Tensor | None, is_causal: bool, scores: Tensor
) -> Tensor:
    """``(B or 1, H or 1, L, S)`` additive mask: ``-inf`` where a query must not see a key."""
    total = torch.zeros((), dtype=scores.dtype, device=scores.device)
    length, source = scores.shape[-2:]
    if attn_mask is None and is_causal:
        attn_mask = torch.ones(length, source, dtype=torch.bool, device=scores.device).triu(1)
    if attn_mask is not None:
        mask = _as_float(attn_mask, scores)
        total = total + (mask.view(-1, scores.shape[1], length, source) if mask.ndim == 3 else mask)
    if key_padding_mask is not None:
        total = total + _as_float(key_padding_mask, scores)[:, None, None, :]
    return total


def _as_float(mask: Tensor, like: Tensor) -> Tensor:
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=like.dtype, device=like.device).masked_fill(mask, float("-inf"))
    return mask.to(like.dtype)
