"""Rules of the package layout that a reviewer would otherwise have to check by reading.

Each rule is checked on the parsed source (imports and calls), so comments and docstrings
that mention a name do not count, and code that breaks a rule is named with file and line.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "danq"
MLFLOW_URI_SETTERS = {"set_tracking_uri", "set_registry_uri"}


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def dotted(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.lineno, node.module


def environment_writes(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """os.environ[...] = ..., os.environ.update/setdefault/pop(...) with an MLFLOW_ key."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Subscript) and "environ" in ast.unparse(target.value):
                    yield node.lineno, ast.unparse(target.slice)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = ast.unparse(node.func.value)
            if owner.endswith("environ") and node.func.attr in {"update", "setdefault"}:
                yield node.lineno, ast.unparse(node.args[0]) if node.args else ""


def mlflow_environment_writes(tree: ast.AST) -> list[tuple[int, str]]:
    """Environment writes of MLFLOW_* variables: a literal MLFLOW_ key, or any write in a
    module that names MLFLOW_ variables (their names may reach the write through a dict)."""
    writes = list(environment_writes(tree))
    names_mlflow = any(
        isinstance(n, ast.Constant) and isinstance(n.value, str) and "MLFLOW_" in n.value
        for n in ast.walk(tree)
    )
    return [(line, key) for line, key in writes if names_mlflow or "MLFLOW" in key]


@pytest.mark.parametrize("path", modules(), ids=dotted)
def test_only_the_cli_parses_options(path: Path) -> None:
    if dotted(path).startswith("danq.cli"):
        return
    tree = ast.parse(path.read_text())
    offending = [line for line, name in imported_modules(tree) if name == "argparse"]
    assert not offending, f"{path}:{offending[0]} imports argparse outside danq.cli"


@pytest.mark.parametrize("path", modules(), ids=dotted)
def test_only_tracking_sets_mlflow_uris_or_environment(path: Path) -> None:
    if dotted(path) == "danq.tracking":
        return
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else None
            assert name not in MLFLOW_URI_SETTERS, f"{path}:{node.lineno} calls {name}"
    writes = mlflow_environment_writes(tree)
    assert not writes, f"{path}:{writes[0][0]} writes {writes[0][1]} to the environment"


@pytest.mark.parametrize("path", modules(), ids=dotted)
def test_no_module_imports_private_names_of_another(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("danq"):
            private = [
                a.name for a in node.names if a.name.startswith("_") and not a.name.endswith("__")
            ]
            assert not private, f"{path}:{node.lineno} imports {private} from {node.module}"


def test_the_rules_catch_what_they_look_for() -> None:
    """The checks above on code that breaks each rule: they must object."""
    bad = ast.parse(
        "import argparse\n"
        "import os, mlflow\n"
        "mlflow.set_tracking_uri('x')\n"
        "os.environ['MLFLOW_TRACKING_URI'] = 'x'\n"
        "os.environ.update({'MLFLOW_HTTP_REQUEST_TIMEOUT': '1'})\n"
    )
    indirect = ast.parse("import os\nsettings = {'MLFLOW_X': '0'}\nos.environ.update(settings)\n")
    harmless = ast.parse("import os\nos.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')\n")
    assert "argparse" in [name for _, name in imported_modules(bad)]
    calls = [
        n.func.attr
        for n in ast.walk(bad)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
    ]
    assert "set_tracking_uri" in calls
    writes = [key for _, key in mlflow_environment_writes(bad)]
    assert any("MLFLOW_TRACKING_URI" in key for key in writes)
    assert any("MLFLOW_HTTP_REQUEST_TIMEOUT" in key for key in writes)
    assert mlflow_environment_writes(indirect) == [(3, "settings")]
    assert mlflow_environment_writes(harmless) == []
