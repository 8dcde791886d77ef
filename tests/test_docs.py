"""The documentation: the README's first screen, and the docs site builds with ``--strict`` (every
page, link, anchor and API reference resolves; griffe's docstring warnings fail it too)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def test_readme_starts_with_the_two_commands_and_stays_short():
    readme = (ROOT / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)```", readme, flags=re.S)
    assert first is not None and readme.index("```bash") < readme.index("\n## ")  # before any section
    install_run, install_test = first.group(1).strip().split("\n")
    assert install_run == "pip install -e . && fairprune run"
    assert install_test == 'pip install -e ".[test]" && python -m pytest'
    # CI runs the README's test command (with quieter flags), so the README says what CI does
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'python -m pip install --quiet -e ".[test]" && python -m pytest' in ci
    assert len(readme.splitlines()) <= 100
    assert len(readme[: readme.index("## Python API")].splitlines()) <= 50  # the API on the first screens


def test_docs_extra_is_in_the_test_extra():
    """CI installs the test extra: it must hold what the strict docs build needs."""
    text = (ROOT / "pyproject.toml").read_text()
    test_extra = re.search(r"^test = \[(.*?)\]", text, flags=re.S | re.M)
    docs_extra = re.search(r"^docs = \[(.*?)\]", text, flags=re.S | re.M)
    assert test_extra is not None and docs_extra is not None
    for requirement in re.findall(r'"([^"]+)"', docs_extra.group(1)):
        assert f'"{requirement}"' in test_extra.group(1)


def test_the_sites_home_page_is_the_readme():
    """``docs/index.md`` is the README with its links made relative to ``docs/``."""
    readme = (ROOT / "README.md").read_text()
    index = (ROOT / "docs" / "index.md").read_text()
    strip = re.compile(r"\n## (Documentation|Pages)\n.*", flags=re.S)  # each says how to read the other
    assert strip.sub("", index) == strip.sub("", readme.replace("](docs/", "]("))


@pytest.mark.skipif(
    any(importlib.util.find_spec(name) is None for name in ("mkdocs", "material", "mkdocstrings_handlers")),
    reason="the docs extra is not installed (pip install -e '.[docs]')",
)
def test_docs_site_builds_strict(tmp_path: Path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    reference = (tmp_path / "site" / "api" / "prune" / "index.html").read_text()
    assert "certify_fraction" in reference  # generated from prune's docstring
