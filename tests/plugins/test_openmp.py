"""promptyard shortens how long torch's idle OpenMP threads spin, unless OpenMP's waiting is tuned already."""

from __future__ import annotations

import subprocess
import sys

import pytest

from promptyard.plugins import openmp


@pytest.fixture
def untuned(monkeypatch):
    for name in openmp.USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delitem(sys.modules, "torch", raising=False)  # restored after the test


def test_the_spin_count_is_set_before_torch_loads(untuned, monkeypatch):
    assert openmp.shorten_spin_wait()
    assert openmp.os.environ["GOMP_SPINCOUNT"] == openmp.SPIN_COUNT


@pytest.mark.parametrize("name, value", [("GOMP_SPINCOUNT", "INFINITY"), ("OMP_WAIT_POLICY", "ACTIVE")])
def test_a_users_own_setting_is_left_alone(untuned, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    assert not openmp.shorten_spin_wait()
    assert openmp.os.environ.get("GOMP_SPINCOUNT") == (value if name == "GOMP_SPINCOUNT" else None)


def test_too_late_once_torch_is_loaded(untuned, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", object())
    assert not openmp.shorten_spin_wait()
    assert "GOMP_SPINCOUNT" not in openmp.os.environ


def test_creating_the_app_sets_it_before_any_model_loads_torch(tmp_path):
    """In a fresh process, as `promptyard up` runs: the app is created first, torch is imported by a model later."""
    script = (
        "import os, sys\n"
        "from promptyard import create_app\n"
        f"create_app({{'PROMPTYARD_HOME': {str(tmp_path)!r}}})\n"
        "assert 'torch' not in sys.modules\n"
        "print(os.environ.get('GOMP_SPINCOUNT'))\n"
    )
    env = {k: v for k, v in openmp.os.environ.items() if k not in openmp.USER_SETTINGS}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == openmp.SPIN_COUNT
