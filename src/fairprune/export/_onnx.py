"""ONNX export of a shipped model, checked against PyTorch with onnxruntime.

Needs the optional extra ``fairprune[onnx]`` (``onnx``, ``onnxscript`` for torch's exporter,
``onnxruntime`` for the check); without it :func:`write_onnx` raises a clear error and nothing
else in fairprune is affected.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from fairprune.atomic import replace_atomically
from fairprune.errors import ShippedModelError
from fairprune.export._measure import median_seconds

try:  # the optional extra fairprune[onnx]
    import onnxruntime
except ImportError:  # pragma: no cover - exercised only without the extra
    onnxruntime = None

__all__ = [
    "ONNX_FILE",
    "ONNX_TOLERANCE",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "write_onnx",
    "onnx_outputs",
    "measure_onnx_latency",
]

ONNX_FILE = "model.onnx"
ONNX_TOLERANCE = 1e-4
"""Largest ``|onnxruntime - PyTorch|`` output difference an export accepts (absolute)."""
INPUT_NAME, OUTPUT_NAME = "input", "logits"


def _require_onnxruntime() -> None:
    if onnxruntime is None:
        raise ShippedModelError(
            "ONNX export and checks need onnx, onnxscript and onnxruntime; install fairprune[onnx]"
        )


def onnx_outputs(path: str | os.PathLike[str], inputs: Tensor) -> Tensor:
    """The outputs of the ONNX model at ``path`` on ``inputs`` (float32, CPU), run by onnxruntime."""
    _require_onnxruntime()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {INPUT_NAME: np.ascontiguousarray(inputs.detach().cpu().float().numpy())}
    return torch.from_numpy(session.run([OUTPUT_NAME], feed)[0])


def measure_onnx_latency(
    path: str | os.PathLike[str],
    example_input: Tensor,
    *,
    repeats: int = 20,
    warmup: int = 3,
    threads: int = 0,
) -> float:
    """Median wall-clock seconds of one onnxruntime pass of the ONNX model at ``path`` on
    ``example_input`` (CPU; onnxruntime's default graph optimisations, which fold BatchNorm into
    the convolutions and fuse activations, as a deployment runs it).

    Args:
        path: A model written by :func:`write_onnx`.
        example_input: One batch, as the model takes it.
        repeats: Timed passes (at least 1).
        warmup: Untimed passes first.
        threads: onnxruntime's intra-op threads (0: torch's CPU thread count, for comparison
            with :func:`~fairprune.export.measure_latency`).
    """
    _require_onnxruntime()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {INPUT_NAME: np.ascontiguousarray(example_input.detach().cpu().float().numpy())}
    return median_seconds(lambda: session.run([OUTPUT_NAME], feed), repeats=repeats, warmup=warmup)


def write_onnx(model: nn.Module, path: str | os.PathLike[str], example: Tensor) -> float:
    """Export ``model`` (eval mode, CPU) to ONNX with a dynamic batch dimension and check it.

    The graph takes ``input`` (``(N, ...)`` float32, as the PyTorch model does) and returns
    ``logits``. The check runs ``example`` through onnxruntime and PyTorch.

    Args:
        model: The shipped model (left in eval mode).
        path: Where to write ``model.onnx`` (atomically).
        example: A batch of at least two inputs, as the model takes them (float).

    Returns:
        The largest absolute output difference between onnxruntime and PyTorch on ``example``.

    Raises:
        ValueError: If the extra is missing, the batch has fewer than two samples, or the
            difference exceeds :data:`ONNX_TOLERANCE`.
    """
    _require_onnxruntime()
    if example.shape[0] < 2:
        raise ShippedModelError(
            f"the ONNX check needs a batch of at least 2 inputs; received {example.shape[0]}"
        )
    model = model.cpu().eval()
    example = example.detach().cpu().float()
    batch = torch.export.Dim("batch")

    def export(temporary: Path) -> None:
        with torch.no_grad():
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},),
                verbose=False,
            )
        if program is None:  # pragma: no cover - the dynamo exporter always returns a program
            raise ShippedModelError("torch.onnx.export returned no program")
        program.save(str(temporary))

    written = replace_atomically(path, export)
    with torch.no_grad():
        expected = model(example)
    diff = float((onnx_outputs(written, example) - expected).abs().max())
    if not diff <= ONNX_TOLERANCE:
        written.unlink()
        raise ShippedModelError(
            f"the ONNX model's outputs differ from PyTorch's by {diff:.3g} on the check batch; "
            f"expected at most {ONNX_TOLERANCE:g} (the model has an op the exporter does not translate "
            "exactly)"
        )
    return diff
