"""Stopping evaluation runs when the process is asked to stop (Ctrl-C, a server shutting down): the run is left
resumable instead of failed, because nothing was wrong with it."""

from __future__ import annotations

import threading

from flask import Flask, current_app

EXTENSION = "promptyard.evals.stop"


def _flag(app: Flask | None = None) -> threading.Event:
    """The app's stop flag (one per app, so a stopped app never stops another, e.g. the next test's)."""
    app = app if app is not None else current_app._get_current_object()
    return app.extensions.setdefault(EXTENSION, threading.Event())


class RunStopped(Exception):
    """Raised between samples once a stop was requested; the run stays resumable."""


def request_stop(app: Flask | None = None) -> None:
    """The app is stopping: runs in it stop at their next sample and stay resumable."""
    _flag(app).set()


def clear(app: Flask | None = None) -> None:
    """Allow runs again (a new command after a stopped one in the same process)."""
    _flag(app).clear()


def stop_requested() -> bool:
    return _flag().is_set()


def check() -> None:
    """Raise RunStopped when a stop was requested."""
    if _flag().is_set():
        raise RunStopped("the process is stopping")


def caused_by_shutdown(exc: BaseException) -> bool:
    """Whether a failure comes from this process stopping rather than from the run: a stop was requested, or
    something in its cause chain is the process's own interruption or a pipe closed under it (a terminal gone while
    a model loads and prints its progress)."""
    if _flag().is_set():
        return True
    seen: BaseException | None = exc
    for _ in range(20):  # a cause chain is short; never loop on a cycle
        if seen is None:
            return False
        if isinstance(seen, (RunStopped, KeyboardInterrupt, BrokenPipeError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
