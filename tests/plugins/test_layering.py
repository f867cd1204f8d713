"""Plugins never import Flask or the database."""

from __future__ import annotations

import ast
from pathlib import Path

import promptyard.plugins

FORBIDDEN = ("flask", "flask_openapi3", "flask_sqlalchemy", "sqlalchemy", "promptyard.db", "promptyard.api")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_plugin_modules_import_neither_flask_nor_the_database():
    folder = Path(promptyard.plugins.__file__).parent
    offenders = {}
    for path in sorted(folder.glob("*.py")):
        bad = {
            name for name in imported_modules(path)
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
        }
        if path.name == "registry.py":
            bad -= {"flask"}  # only inside init_app/get_registry, which wire the registry into the app
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}
