"""The README's Python examples run (with tiny budgets and a small model in place of yours)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_examples_run(tmp_path, monkeypatch):
    blocks = _python_blocks()
    assert len(blocks) >= 2  # the API example and the structured one
    monkeypatch.chdir(tmp_path)  # the examples may save files
    namespace: dict = {}
    for block in blocks:
        code = block.replace(
            "my_model", "build_model('mlp', tuple(splits.train.x.shape[1:]), 2, hidden=[32, 16])"
        )
        code = re.sub(r"steps=\d+", "steps=4", code)
        code = code.replace(
            'build_pruner("bifp", structure="channel", round_to=8)',
            'build_pruner("bifp", structure="channel", round_to=8, steps=4, finetune_steps=2)',
        )
        code = code.replace(
            'build_pruner("bifp", steps=4)', 'build_pruner("bifp", steps=4, finetune_steps=2)'
        )
        exec(compile("from fairprune.models import build_model\n" + code, str(README), "exec"), namespace)
    assert isinstance(namespace["small"], torch.nn.Module)
    assert (tmp_path / "bifp_slim" / "card.json").is_file()
