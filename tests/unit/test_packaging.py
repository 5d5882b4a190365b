"""The version is written once, and `alerting --version` answers without any configuration.

What the built sdist and wheel contain, and that the wheel works installed alone, is checked by
`make package-test` (.ci/package-test): building takes longer than a unit test should.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import alerting

ROOT = Path(__file__).resolve().parents[2]


def test_the_version_is_written_only_in_alerting_init_and_pyproject_reads_it_from_there() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    project = pyproject.split("[project]", 1)[1].split("\n[", 1)[0]
    assert 'dynamic = ["version"]' in project
    assert not any(line.startswith("version") for line in project.splitlines())
    assert 'version = { attr = "alerting.__version__" }' in pyproject
    # setuptools reads the attribute without importing the package (whose imports need celery): only while it
    # is a plain string literal assigned at module level.
    tree = ast.parse((ROOT / "alerting" / "__init__.py").read_text(encoding="utf-8"))
    literals = [
        node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == ["__version__"]
        and isinstance(node.value, ast.Constant)
    ]
    assert literals == [alerting.__version__]


def test_alerting_version_prints_the_version_even_with_no_or_broken_alerting_configuration() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTING_")}
    env["ALERTING_BROKER_URL"] = "not-a-url"  # every other command would stop at this (exit 2)
    done = subprocess.run(
        [sys.executable, "-m", "alerting.cli", "--version"], env=env, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, f"alerting {alerting.__version__}\n", "")
