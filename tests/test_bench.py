"""``python -m bench --fast``: the benchmark command runs end to end and writes its numbers."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KEYS = (
    "step_cost_alternating",
    "step_cost_joint",
    "step_cost_structured",
    "iterations_ratio",
    "slim_latency_ratio_70",
    "slim_latency_ratio_70_onnx",
    "slim_params_ratio_70",
    "slim_vit_latency_ratio_50",
    "loader_throughput_ratio",
    "data_scaling_exponent",
)


@pytest.mark.skipif(not (ROOT / "bench" / "__main__.py").is_file(), reason="needs the repository's bench/")
def test_fast_bench_writes_every_number(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--out", str(tmp_path), "--fast"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads((tmp_path / "bench.json").read_text())
    numbers = {k: v for k, v in document.items() if k != "raw"}
    assert set(KEYS) <= set(numbers)
    assert all(isinstance(v, float) and math.isfinite(v) for v in numbers.values()), numbers
    assert 0.0 < document["slim_params_ratio_70"] < 0.35  # 70% of the weights removed, and BN/biases stay
    assert document["raw"]["deployment"]["rows"]["flops@0.7"]["flops_ratio"] <= 0.32
    assert document["slim_vit_params_ratio_50"] < 0.6  # half the heads and MLP neurons of a ViT
    machine = document["raw"]["machine"]
    assert machine["device"] == "cpu" and machine["torch_threads"] == 1 and machine["torch"]
    for key in KEYS:  # the table prints every headline number
        assert key in done.stdout
