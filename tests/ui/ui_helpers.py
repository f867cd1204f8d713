"""Helpers shared by the UI tests: where the app is, and checks that a page did not crash."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

import promptyard.ui

APP = Path(promptyard.ui.__file__).resolve().parent / "app.py"
ERROR_WORDS = ("Traceback", "Exception")


def assert_no_crash(at: AppTest) -> None:
    """No uncaught exception, and no error box that reads like a crash."""
    assert not at.exception, [e.value for e in at.exception]
    for box in at.error:
        assert not any(word in box.value for word in ERROR_WORDS), box.value
        assert "unexpected problem" not in box.value, box.value


def texts(at: AppTest) -> str:
    """Every visible message of the page, joined, for loose assertions."""
    parts = [e.value for kind in ("title", "markdown", "caption", "info", "success", "warning", "error", "code")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)
