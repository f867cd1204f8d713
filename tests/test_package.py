"""The top-level package: create_app is importable from it, but only loaded (with Flask) when asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import promptyard


def run_python(script: str) -> str:
    """Run `script` in a fresh interpreter that imports this checkout's promptyard; its stdout."""
    source = str(Path(promptyard.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env).stdout


def test_create_app_is_importable_from_the_package():
    from promptyard import create_app
    from promptyard.app import create_app as real

    assert create_app is real
    assert "create_app" in promptyard.__all__


def test_importing_the_package_does_not_import_flask():
    script = "import sys, promptyard; print('flask' in sys.modules, promptyard.__file__)"
    assert run_python(script).split() == ["False", promptyard.__file__]


def test_unknown_attributes_are_still_attribute_errors():
    with pytest.raises(AttributeError):
        promptyard.no_such_thing  # noqa: B018
