"""Plugins never import Flask or the database."""

from __future__ import annotations

import ast
from pathlib import Path

import promptyard.plugins
from tests.test_package import run_python

FORBIDDEN = ("flask", "flask_openapi3", "flask_sqlalchemy", "sqlalchemy", "promptyard.db", "promptyard.api")
FORBIDDEN_TOP = ("flask", "flask_openapi3", "flask_sqlalchemy", "sqlalchemy", "werkzeug")


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


def test_importing_the_plugins_pulls_in_neither_flask_nor_the_database():
    # A fresh interpreter: this test process has long since imported Flask for the app fixtures.
    modules = ", ".join(f"promptyard.plugins.{path.stem}" for path in sorted(
        Path(promptyard.plugins.__file__).parent.glob("*.py")) if path.stem != "__init__")
    script = (
        f"import sys, {modules}\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN_TOP!r}))"
    )
    assert run_python(script).strip() == "[]"


def test_the_prompt_library_never_imports_the_evaluation_layer_and_the_pipeline_checks_import_no_pipeline():
    """evals/ builds on prompts/, and execution/pipeline.py on execution/checks.py: the reverse would be a cycle."""
    package = Path(promptyard.plugins.__file__).parent.parent
    prompts = {path.name: sorted(name for name in imported_modules(path) if name.startswith("promptyard.evals"))
               for path in sorted((package / "prompts").glob("*.py"))}
    assert {name: found for name, found in prompts.items() if found} == {}
    assert "promptyard.execution.pipeline" not in imported_modules(package / "execution" / "checks.py")
