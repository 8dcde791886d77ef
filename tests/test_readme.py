"""The Python examples of the README and the docs pages run (with tiny budgets and a small model in
place of yours), and every ``fairprune`` name they use imports."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import torch

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
# the pages whose examples continue one another, in reading order (the API example defines
# ``splits``, the building blocks ``model`` and ``task``, which export and structured reuse)
EXAMPLE_PAGES = [
    README,
    *(ROOT / "docs" / name for name in ("python-api.md", "export-and-shipping.md", "structured.md")),
]
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]


def _python_blocks() -> list[str]:
    return [
        block
        for page in EXAMPLE_PAGES
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    ]


def test_every_python_block_of_the_docs_is_run():
    """A page with a Python example is in ``EXAMPLE_PAGES`` (so that the example is run)."""
    with_examples = {page for page in PAGES if "```python" in page.read_text()}
    index = ROOT / "docs" / "index.md"  # the site's home page repeats the README's example
    assert with_examples - {index} <= set(EXAMPLE_PAGES)
    assert re.findall(r"```python\n(.*?)```", index.read_text(), flags=re.S) == re.findall(
        r"```python\n(.*?)```", README.read_text(), flags=re.S
    )


def test_readme_python_examples_run(tmp_path, monkeypatch):
    blocks = _python_blocks()
    assert len(blocks) >= 8  # README's API example, python-api (3), export (3), structured
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


def _readme_names() -> set[tuple[str, str | None]]:
    """Every ``(module, name)`` the README and the docs pages name: the imports of their code
    blocks (any language), dotted ``fairprune.x.y`` in backticks, and backticked names listed right
    after a module (``fairprune.masks``: ``apply_masks``, ...; ``fairprune.data``, ``load_dataset(...)``)."""
    text = "\n".join(page.read_text() for page in PAGES)
    names: set[tuple[str, str | None]] = set()
    imports = r"^\s*from (fairprune[\w.]*) import (?:\(([^)]*)\)|([^\n(]+)$)"
    for module, wrapped, inline in re.findall(imports, text, re.M):
        for item in (wrapped or inline).split(","):
            name = item.split("#")[0].split(" as ")[0].strip()
            if name:
                names.add((module, name))
    for dotted in re.findall(r"`(fairprune(?:\.\w+)+)", text):
        names.add((dotted, None))
    listing = r"`(fairprune(?:\.\w+)+)`(?::|,| \()\s*((?:`\w+(?:\([^`]*\))?`(?:,? and |, |,\s*\n\s*)?)+)"
    for module, listed in re.findall(listing, text):
        names.update((module, name) for name in re.findall(r"`(\w+)", listed))
    return names


def _resolve(dotted: str) -> object:
    """A module, or an attribute of the longest importable module prefix of ``dotted``."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            found = getattr(found, attribute)
        return found
    raise ModuleNotFoundError(dotted)


def test_every_fairprune_name_the_readme_uses_imports():
    names = _readme_names()
    assert ("fairprune.data", "load_dataset") in names  # the listing "`fairprune.data`, `load_dataset(...)`"
    assert ("fairprune.masks", "bake_masks") in names and ("fairprune.engine", "Task") in names
    missing = []
    for module, name in sorted(names, key=str):
        try:
            target = _resolve(module)
            if name is not None:
                getattr(target, name)
        except (ImportError, AttributeError) as error:
            missing.append(f"{module}.{name or ''}: {error}")
    assert not missing, missing


def test_load_dataset_is_exported_by_fairprune_data():
    from fairprune.data import load_dataset
    from fairprune.data.registry import load_dataset as registered

    assert load_dataset is registered
