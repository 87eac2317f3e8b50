"""The rollout package's public surface, and its promise of purity (no I/O imports)."""

from __future__ import annotations

import ast
from pathlib import Path

import conch.rollout

PACKAGE = Path(conch.rollout.__file__).parent
ALLOWED_CONCH = ("conch.api", "conch.errors", "conch.reasons", "conch.rollout")
ALLOWED_STDLIB = {
    "__future__",
    "collections",
    "dataclasses",
    "datetime",
    "math",
    "re",
    "typing",
}


def test_public_names_resolve() -> None:
    for name in conch.rollout.__all__:
        assert hasattr(conch.rollout, name), name
    assert sorted(conch.rollout.__all__) == conch.rollout.__all__


def test_imports_nothing_that_does_io() -> None:
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            modules: list[str] = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            for module in modules:
                if module == "conch" or module.startswith("conch."):
                    assert module == "conch" or module.startswith(ALLOWED_CONCH), (path, module)
                else:
                    assert module.split(".")[0] in ALLOWED_STDLIB | {"pydantic"}, (path, module)
