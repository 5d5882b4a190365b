"""The layout shows the architecture: the worker side and the application side meet only in alerting.shared."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "alerting"
# Each side's modules may import alerting.shared and alerting.errors, never the other side.
FORBIDDEN = {
    "producer": ("alerting.consumer",),
    "consumer": ("alerting.producer",),
    "shared": ("alerting.producer", "alerting.consumer"),
}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("side", sorted(FORBIDDEN))
def test_a_side_never_imports_the_other_side(side: str) -> None:
    crossings = [
        f"{path.relative_to(PACKAGE.parent)} imports {name}"
        for path in sorted((PACKAGE / side).rglob("*.py"))
        for name in sorted(imported_modules(path))
        if name.startswith(FORBIDDEN[side])
    ]
    assert crossings == []
