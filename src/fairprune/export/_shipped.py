"""Ship a pruned model: a directory of safetensors weights, an optional ONNX file and a model card.

A shipped directory::

    model.safetensors          weights (dense layout), or
    model.sparse.safetensors   weights of a model with many zeros (bitmask + values, see _weights)
    model.onnx                 optional: the same network for onnxruntime
    card.json                  the model card (see _card), with each file's sha256
    MODEL_CARD.md              the card for a human reader

Reloading never unpickles anything: safetensors and JSON only.
"""

from __future__ import annotations

import copy
import datetime
import json
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import safetensors
import torch
from torch import Tensor, nn

import fairprune
from fairprune.atomic import write_atomic
from fairprune.batches import model_inputs
from fairprune.data.adapters import DataSplits, as_splits
from fairprune.data.base import Splits
from fairprune.errors import ShippedModelError
from fairprune.export._card import CARD_FORMAT, card_metrics, render_markdown
from fairprune.export._load import CARD_FILE, MARKDOWN_FILE
from fairprune.export._measure import model_footprint
from fairprune.export._onnx import ONNX_FILE, write_onnx
from fairprune.export._records import build_from_spec, fit_shapes
from fairprune.export._result import result_data, result_metrics, result_pruning
from fairprune.export._weights import LAYOUTS, WEIGHT_FILES, save_weights, sha256_of, stored_bytes
from fairprune.inference import dense_and_pruned
from fairprune.masks import bake_masks, prunable_parameters
from fairprune.model_io import (
    Features,
    as_features,
    describe,
    n_samples,
    rows,
    sample_shapes,
    tensors_of,
    to_device,
)
from fairprune.result import PruningResult

__all__ = ["export_model", "CARD_FILE", "MARKDOWN_FILE"]

_COMPUTED = ("format", "created", "versions", "model", "files", "data", "metrics", "footprint")
_SPLITS = ("val", "test")


def export_model(
    model: nn.Module | PruningResult,
    directory: str | os.PathLike[str],
    *,
    data: Splits | DataSplits | None = None,
    dense: nn.Module | None = None,
    architecture: Mapping[str, Any] | None = None,
    about: Mapping[str, Any] | None = None,
    weights: str = "auto",
    onnx: bool = False,
    example_input: Features | None = None,
    group_names: Sequence[str] | None = None,
) -> Path:
    """Write ``model`` as a shipped directory with its model card.

    Args:
        model: The pruned model: a plain module (masks baked in, or physically slimmed; a
            module still carrying mask parametrizations is baked on a copy), or the
            :class:`~fairprune.PruningResult` of :func:`fairprune.prune`, whose method,
            fairness notion, tau and outcome fill the card's ``pruning`` section, and whose
            metrics fill ``metrics`` when ``data`` is not given.
        directory: Where to write (created; existing shipped files are replaced).
        data: The splits the card's metrics (``val``, ``test``) and names come from: ``Splits``,
            or the data as :func:`fairprune.prune` takes it (``(train, val[, test])`` or a dict).
        dense: The dense model the pruned one came from: its metrics, parameters, FLOPs and
            latency go beside the pruned model's, and the sparsity is measured against it.
        architecture: ``{"name", "input_shape", "n_classes", "params"}`` of a built-in model
            (:data:`fairprune.models.MODELS`), so that :func:`load_exported` can rebuild it;
            without it, loading needs a module of the architecture.
        about: Provenance sections added to the card as they are (``pruning``, ``seeds``, ...);
            JSON-serialisable, not one of the computed sections.
        weights: ``"dense"``, ``"sparse"`` (bitmask or indices + values, see
            :func:`~fairprune.export.save_weights`), or ``"auto"``: sparse when that file is
            under 90% of the dense one (a model with masks baked in), else dense.
        onnx: Also write ``model.onnx``, checked against PyTorch on an example batch.
        example_input: A batch as the model takes it, for FLOPs, latency and the ONNX check;
            default: up to 64 validation samples of ``data``.
        group_names: Names of the group ids of ``data`` (default: the result's, or ``"0"``, ...).

    Returns:
        The directory.
    """
    result = model if isinstance(model, PruningResult) else None
    model, about = _unpack(model, about)
    _check_arguments(about, weights)
    data = _splits(data, group_names if group_names is not None or result is None else result.group_names)
    example = _example(data, example_input)
    if onnx and example is None:
        raise ShippedModelError("onnx=True needs data= or example_input= (a batch to check the export on)")
    shipped = bake_masks(copy.deepcopy(model)).cpu().eval()
    reference = bake_masks(copy.deepcopy(dense)).cpu().eval() if dense is not None else None
    spec = _model_spec(shipped, architecture, data, example)
    out = Path(directory)
    card: dict[str, Any] = {
        "format": CARD_FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "model": spec,
        "files": _write_files(shipped, out, weights, example if onnx else None),
        "footprint": _footprint(shipped, reference, example),
        **dict(about or {}),
    }
    if data is not None:
        card["data"] = _data_section(data)
        card["metrics"] = _metrics(shipped, reference, data)
    elif result is not None:
        card.update(data=result_data(result), metrics=result_metrics(result))
    if result is not None and reference is None:  # a slimmed model has no zeros to count
        card["footprint"]["sparsity"] = result.achieved_sparsity
    try:
        text = json.dumps(card, indent=2, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ShippedModelError(
            f"the card must be JSON-serialisable (str keys, finite numbers): {err}"
        ) from err
    _readable(write_atomic(out / MARKDOWN_FILE, render_markdown(card)))
    _readable(write_atomic(out / CARD_FILE, text + "\n"))  # last: a directory with a card is complete
    return out


def _check_arguments(about: Mapping[str, Any] | None, weights: str) -> None:
    clashes = sorted(set(about or {}) & set(_COMPUTED))
    if clashes:
        raise ShippedModelError(f"about= may not set the computed card sections {clashes}")
    if weights not in (*LAYOUTS, "auto"):
        raise ShippedModelError(f"weights must be one of {[*LAYOUTS, 'auto']}; received {weights!r}")


def _splits(data: Splits | DataSplits | None, group_names: Sequence[str] | None) -> Splits | None:
    """``data`` as ``Splits`` (from the data ``prune`` takes), with ``group_names``."""
    return None if data is None else as_splits(data, group_names=group_names)


def _unpack(model: object, about: Mapping[str, Any] | None) -> tuple[nn.Module, dict[str, Any]]:
    """The module to ship and the card's provenance: a result's model, and its ``pruning``
    section unless ``about`` has one."""
    if isinstance(model, PruningResult):
        return model.model, {"pruning": result_pruning(model), **(about or {})}
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"export_model expects an nn.Module or a PruningResult; received {type(model).__name__}"
        )
    return model, dict(about or {})


def _write_files(
    shipped: nn.Module, out: Path, weights: str, onnx_example: Features | None
) -> dict[str, Any]:
    """Write the weight file (and ``model.onnx`` given an example batch); their card entries."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*WEIGHT_FILES.values(), ONNX_FILE, CARD_FILE, MARKDOWN_FILE]:
        (out / stale).unlink(missing_ok=True)
    state = shipped.state_dict()
    layout = _layout(state, weights)
    files: dict[str, dict[str, Any]] = {WEIGHT_FILES[layout]: {"layout": layout}}
    save_weights(out / WEIGHT_FILES[layout], state, layout)
    if onnx_example is not None:
        if not isinstance(onnx_example, Tensor):
            raise ShippedModelError(
                f"onnx=True exports a model that takes one tensor; this one takes {describe(onnx_example)} "
                "(export with onnx=False, or through torch.onnx with your own input names)"
            )
        diff = write_onnx(shipped, out / ONNX_FILE, onnx_example)
        files[ONNX_FILE] = {"layout": "onnx", "max_abs_diff_vs_pytorch": diff}
    for name, entry in files.items():
        _readable(out / name)
        entry.update(sha256=sha256_of(out / name), bytes=(out / name).stat().st_size)
    return files


def _readable(path: Path) -> None:
    """Give a shipped file the usual permissions (``0o666`` less the umask; temp files are 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o666 & ~umask)


def _example(data: Splits | None, example_input: Features | None) -> Features | None:
    if example_input is not None:
        return to_device(as_features(example_input, "example_input"), "cpu")
    if data is None:
        return None
    return model_inputs(rows(data.val.x, 0, 64), "cpu")


def _model_spec(
    shipped: nn.Module, architecture: Mapping[str, Any] | None, data: Splits | None, example: Features | None
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if architecture is not None:
        dense = build_from_spec(dict(architecture))  # checks the name and parameters
        fit_shapes(dense, shipped.state_dict())
        dense.load_state_dict(shipped.state_dict())  # checks that the architecture is this model's
        spec.update(
            name=architecture["name"],
            input_shape=list(architecture["input_shape"]),
            n_classes=int(architecture["n_classes"]),
            params=dict(architecture.get("params", {})),
        )
    spec["class"] = f"{type(shipped).__module__}.{type(shipped).__qualname__}"
    spec["shapes"] = {k: list(v.shape) for k, v in shipped.state_dict().items()}
    if example is not None:
        spec.setdefault("input_shape", sample_shapes(example))
        raw = tensors_of(data.val.x if data is not None else example)[0].dtype
        spec["input"] = {
            "dtype": "float32",
            "preprocessing": "uint8 pixels x -> x / 127.5 - 1 (channels first)"
            if raw == torch.uint8
            else "none (the features as the data loader returns them)",
        }
    return spec


def _layout(state: dict[str, Tensor], weights: str) -> str:
    if weights != "auto":
        return weights
    dense_bytes = sum(t.numel() * t.element_size() for t in state.values())
    sparse_bytes = sum(stored_bytes(t) for t in state.values())
    return "sparse" if sparse_bytes < 0.9 * dense_bytes else "dense"


def _versions() -> dict[str, str]:
    return {
        "fairprune": fairprune.__version__,
        "torch": torch.__version__,
        "safetensors": safetensors.__version__,
        "python": platform.python_version(),
    }


def _data_section(data: Splits) -> dict[str, Any]:
    sizes = {
        split: torch.bincount(getattr(data, split).groups, minlength=data.n_groups).tolist()
        for split in ("train", "val", "test")
    }
    return {
        "dataset": data.name,
        "target": data.target,
        "class_names": list(data.class_names),
        "sensitive_attribute": data.sensitive_attribute,
        "group_names": list(data.group_names),
        "group_sizes": sizes,
    }


def _metrics(shipped: nn.Module, dense: nn.Module | None, data: Splits) -> dict[str, Any]:
    return {
        split: {
            which: card_metrics(report, data.group_names)
            for which, report in dense_and_pruned(dense, shipped, getattr(data, split), data.n_groups).items()
        }
        for split in _SPLITS
    }


def _footprint(shipped: nn.Module, dense: nn.Module | None, example: Features | None) -> dict[str, Any]:
    """The card's footprint: :func:`model_footprint` (a sweep's too), the sparsity of the
    prunable weights, and where the latency was timed."""
    prunable = prunable_parameters(shipped)
    kept = sum(int(torch.count_nonzero(p)) for p in prunable.values())
    total = sum(p.numel() for p in (prunable_parameters(dense) if dense is not None else prunable).values())
    foot = model_footprint(shipped, dense, example)
    foot["sparsity"] = 1.0 - kept / total
    if example is not None:
        foot.update(latency_batch=n_samples(example), device="cpu", threads=torch.get_num_threads())
    return foot
