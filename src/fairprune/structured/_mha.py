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
        dropout = self.dropout if self.training else 0.0
        mask = None
        if attn_mask is not None or key_padding_mask is not None or is_causal:
            mask = _additive(attn_mask, key_padding_mask, is_causal, q, k.shape[-2])
        weights = None
        if need_weights:  # (B, H, L, S), as nn.MultiheadAttention returns them
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
            weights = F.dropout(
                (scores if mask is None else scores + mask).softmax(-1), dropout, self.training
            )
            out = weights @ v
        else:  # the fused kernel, as nn.MultiheadAttention's fast path
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        out = self.out_proj(out.transpose(1, 2).reshape(batch, length, -1))  # (B, L, I) -> (B, L, E)
        if not self.batch_first:
            out = out.transpose(0, 1)
        if weights is None:
            return out, None
        return out, weights.mean(1) if average_attn_weights else weights


def _additive(
    attn_mask: Tensor | None, key_padding_mask: Tensor | None, is_causal: bool, q: Tensor, source: int
) -> Tensor:
    """``(B or 1, H or 1, L, S)`` additive mask: ``-inf`` where a query must not see a key."""
    total = torch.zeros((1, 1, 1, 1), dtype=q.dtype, device=q.device)
    heads, length = q.shape[1:3]
    if attn_mask is None and is_causal:
        attn_mask = torch.ones(length, source, dtype=torch.bool, device=q.device).triu(1)
    if attn_mask is not None:
        mask = _as_float(attn_mask, q)
        total = total + (mask.view(-1, heads, length, source) if mask.ndim == 3 else mask)
    if key_padding_mask is not None:
        total = total + _as_float(key_padding_mask, q)[:, None, None, :]
    return total


def _as_float(mask: Tensor, like: Tensor) -> Tensor:
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=like.dtype, device=like.device).masked_fill(mask, float("-inf"))
    return mask.to(like.dtype)
