"""A slimmed Hugging Face model's config, so that ``save_pretrained`` / ``from_pretrained`` round-trip.

A config describes every layer with one number each, so a slimmed model round-trips when every
layer kept the same count:

- Llama-style configs carry ``head_dim`` and ``num_key_value_heads``: heads pruned by the same
  number of key/value groups in every layer and a uniform MLP width are written as
  ``num_attention_heads``, ``num_key_value_heads``, ``head_dim`` and ``intermediate_size``.
- BERT and GPT-2 configs derive the head size from ``hidden_size / num_attention_heads``: a model
  with heads removed cannot be described (save it with ``torch.save`` or safetensors and rebuild
  it with :func:`~fairprune.structured.slim`), while one with only MLP neurons removed (uniformly)
  is written as ``intermediate_size`` (BERT) or ``n_inner`` (GPT-2).

Use ``ChannelSpace(..., uniform=True)`` or ``structured_topk(..., uniform=True)`` to prune the
same count in every layer.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn

__all__ = ["sync_hf_config"]

log = logging.getLogger(__name__)


def _widths(model: nn.Module) -> dict[str, set[tuple[int, ...]]]:
    """Per kind of layer, the set of (counts) over the model's layers."""
    found: dict[str, set[tuple[int, ...]]] = {}
    for module in model.modules():
        m: Any = module
        if all(hasattr(m, n) for n in ("q_proj", "k_proj", "o_proj", "head_dim")):
            d = int(m.head_dim)
            found.setdefault("llama_heads", set()).add(
                (m.q_proj.out_features // d, m.k_proj.out_features // d, d)
            )
        elif all(hasattr(m, n) for n in ("gate_proj", "up_proj", "down_proj")):
            found.setdefault("llama_mlp", set()).add((m.up_proj.out_features,))
        elif hasattr(m, "query") and hasattr(m, "attention_head_size"):
            found.setdefault("bert_heads", set()).add(
                (int(m.num_attention_heads), int(m.attention_head_size))
            )
        elif isinstance(getattr(m, "intermediate", None), nn.Module) and hasattr(m.intermediate, "dense"):
            found.setdefault("bert_mlp", set()).add((m.intermediate.dense.out_features,))
        elif hasattr(m, "c_attn") and hasattr(m, "split_size"):
            found.setdefault("gpt2_heads", set()).add((int(m.num_heads), int(m.head_dim)))
        elif hasattr(m, "c_fc") and hasattr(m.c_fc, "nf"):
            found.setdefault("gpt2_mlp", set()).add((int(m.c_fc.nf),))
    return found


def _updates(config: object, found: dict[str, set[tuple[int, ...]]]) -> tuple[dict[str, int], list[str]]:
    """The config fields to write, and why the config cannot describe the model (if it cannot)."""
    updates: dict[str, int] = {}
    problems = [f"{kind} differ between layers ({sorted(v)})" for kind, v in found.items() if len(v) > 1]
    if problems:
        return updates, problems
    one = {kind: next(iter(v)) for kind, v in found.items()}
    if "llama_heads" in one:
        heads, kv_heads, d = one["llama_heads"]
        updates.update(num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=d)
    if "llama_mlp" in one:
        updates["intermediate_size"] = one["llama_mlp"][0]
    for kind, hidden, mlp_field in (
        ("bert", "hidden_size", "intermediate_size"),
        ("gpt2", "n_embd", "n_inner"),
    ):
        if f"{kind}_heads" in one:
            heads, d = one[f"{kind}_heads"]
            if heads * d != getattr(config, hidden):
                problems.append(
                    f"{type(config).__name__} ties the head size to {hidden} / num_attention_heads, so "
                    f"{heads} heads of {d} cannot be described; save the model with torch.save or "
                    "safetensors, or prune MLP neurons only"
                )
        if f"{kind}_mlp" in one:
            updates[mlp_field] = one[f"{kind}_mlp"][0]
    return updates, problems


def sync_hf_config(model: nn.Module, *, strict: bool = True) -> None:
    """Write a slimmed Hugging Face model's head counts and MLP width into ``model.config``.

    Does nothing for a model without a Hugging Face config. Where the config cannot describe the
    model (see the module docstring), raises with ``strict``, else leaves the config as it was
    and logs a warning (``save_pretrained`` would then write a config that does not fit).

    Raises:
        ValueError: With ``strict``, one line saying why the config cannot describe the model.
    """
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        return
    updates, problems = _updates(config, _widths(model))
    if not problems:
        problems = _mismatches(model, config, updates)
    if problems:
        message = f"{type(model).__name__}'s config cannot describe the slimmed model: {problems[0]}"
        if strict:
            raise ValueError(message)
        log.warning("%s", message)
        return
    for field, value in updates.items():
        setattr(config, field, value)


def _mismatches(model: nn.Module, config: object, updates: dict[str, int]) -> list[str]:
    """Parameters whose shapes differ from those of a model built from the updated config (on the
    meta device: no memory, no weights)."""
    trial = copy.deepcopy(config)
    for field, value in updates.items():
        setattr(trial, field, value)
    try:
        with torch.device("meta"):
            reference = type(model)(trial)
    except (TypeError, ValueError, RuntimeError) as error:
        return [f"{type(model).__name__} cannot be built from the updated config ({error})"]
    shapes = {n: tuple(p.shape) for n, p in reference.named_parameters()}
    return [
        f"{name} has shape {tuple(p.shape)} where the config gives {shapes[name]} "
        "(prune it uniformly or not at all)"
        for name, p in model.named_parameters()
        if name in shapes and tuple(p.shape) != shapes[name]
    ][:1]
