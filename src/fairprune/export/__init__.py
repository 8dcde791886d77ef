"""Export: measure a model, save / load the run records of a sweep, and ship a pruned model.

Shipping (:func:`export_model`, :func:`load_exported`) writes a directory of safetensors weights
(dense, or bitmask + values for a model with its masks baked in), an optional ONNX file checked
against PyTorch, and a model card (``card.json`` + ``MODEL_CARD.md``) holding the sha256 of each
weight file. Reloading never unpickles code. ``fairprune export`` / ``fairprune evaluate`` (see
:mod:`fairprune.sweep.shipping`) pick a model out of a finished sweep and re-check a card.
"""

from fairprune.export._card import (
    CARD_FORMAT,
    PRUNING_KEYS,
    card_metrics,
    check_names,
    flat_metrics,
    named_card_metrics,
    plain,
    pruning_section,
    render_markdown,
    summarize_card,
)
from fairprune.export._evaluate import DEFAULT_TOLERANCE, SPLIT_CHOICES, Evaluation, evaluate_exported
from fairprune.export._load import CARD_FILE, MARKDOWN_FILE, ExportedModel, load_exported
from fairprune.export._measure import (
    count_flops,
    count_parameters,
    measure_latency,
    model_footprint,
    paired_latency,
)
from fairprune.export._onnx import ONNX_FILE, ONNX_TOLERANCE, measure_onnx_latency, onnx_outputs, write_onnx
from fairprune.export._records import SavedModel, build_from_spec, fit_shapes, load_model, save_model
from fairprune.export._shipped import export_model
from fairprune.export._weights import LAYOUTS, WEIGHT_FILES, load_weights, save_weights, sha256_of
from fairprune.model_io import in_eval

__all__ = [
    "count_parameters",
    "count_flops",
    "measure_latency",
    "paired_latency",
    "model_footprint",
    "measure_onnx_latency",
    "in_eval",
    "save_model",
    "load_model",
    "SavedModel",
    "build_from_spec",
    "fit_shapes",
    "export_model",
    "load_exported",
    "ExportedModel",
    "evaluate_exported",
    "Evaluation",
    "DEFAULT_TOLERANCE",
    "SPLIT_CHOICES",
    "save_weights",
    "load_weights",
    "sha256_of",
    "LAYOUTS",
    "WEIGHT_FILES",
    "write_onnx",
    "onnx_outputs",
    "ONNX_FILE",
    "ONNX_TOLERANCE",
    "CARD_FILE",
    "MARKDOWN_FILE",
    "CARD_FORMAT",
    "PRUNING_KEYS",
    "pruning_section",
    "plain",
    "summarize_card",
    "named_card_metrics",
    "card_metrics",
    "flat_metrics",
    "check_names",
    "render_markdown",
]
