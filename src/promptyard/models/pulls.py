"""Background pulls: start a model's download as a job and follow its state and progress.

Progress lives in Redis when REDIS_URL is set (shared_pulls.py: every API process and Celery worker sees the same
pulls); without Redis, in a registry on `app.extensions`, so per process.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import current_app

from promptyard import jobs
from promptyard.db import utcnow
from promptyard.errors import Conflict, PromptyardError
from promptyard.models.pull import has_weights, nothing_to_pull, plugin_for, pull_model
from promptyard.models.service import get_model

log = logging.getLogger(__name__)
EXTENSION = "promptyard.pulls"


@dataclass
class Pull:
    """One model's latest pull."""

    model: str
    state: str = "idle"
    downloaded_bytes: int = 0
    total_bytes: int | None = None
    error: dict[str, str] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "state": self.state,
            "downloaded_bytes": self.downloaded_bytes, "total_bytes": self.total_bytes,
            "error": dict(self.error) if self.error else None,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


class PullRegistry:
    """Each model's latest pull in this process; the job thread writes it while requests read it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pulls: dict[str, Pull] = {}

    def begin(self, name: str) -> dict[str, Any]:
        with self._lock:
            current = self._pulls.get(name)
            if current is not None and current.state == "running":
                raise Conflict(f"Model '{name}' is already being pulled; follow it with GET /models/{name}/pull.",
                               code="pull_running", details={"model": name})
            self._pulls[name] = Pull(name, "running", started_at=utcnow())
            return self._pulls[name].to_dict()

    def report(self, name: str, downloaded: int, total: int | None) -> None:
        with self._lock:
            pull = self._pulls[name]
            pull.downloaded_bytes, pull.total_bytes = downloaded, total

    def finish(self, name: str, error: dict[str, str] | None = None) -> None:
        with self._lock:
            pull = self._pulls[name]
            pull.state, pull.error, pull.finished_at = ("failed" if error else "succeeded"), error, utcnow()

    def get(self, name: str) -> dict[str, Any]:
        with self._lock:
            return (self._pulls.get(name) or Pull(name)).to_dict()


def registry() -> PullRegistry:
    found = current_app.extensions.get(EXTENSION)
    if found is None:
        from promptyard.models.shared_pulls import create_registry

        found = current_app.extensions[EXTENSION] = create_registry(current_app.config)
    return found


def start_pull(name: str) -> dict[str, Any]:
    """Check the model can be pulled, then download it in the background; returns the pull's state."""
    row, plugin = plugin_for(name)
    if not has_weights(plugin):
        raise nothing_to_pull(row)
    state = registry().begin(name)
    try:
        jobs.submit("promptyard.models.pulls:run_pull", name)
    except Exception as exc:
        registry().finish(name, {"code": "pull_not_started", "message": f"The pull could not be started: {exc}"})
        raise
    return state


def pull_status(name: str) -> dict[str, Any]:
    """The model's latest pull in this process (`idle` when none was started); 404 for an unknown model."""
    get_model(name)
    return registry().get(name)


def run_pull(name: str) -> None:
    """The job: download through the plugin, recording bytes as they arrive and how it ended."""
    pulls = registry()
    try:
        pull_model(name, progress=lambda downloaded, total: pulls.report(name, downloaded, total))
    except PromptyardError as exc:
        pulls.finish(name, {"code": exc.code, "message": exc.message})
    except Exception as exc:  # noqa: BLE001 - a job must always end its pull, whatever the plugin raised
        log.exception("pull of %s failed", name)
        pulls.finish(name, {"code": "pull_failed", "message": f"Pulling '{name}' failed: {exc}"})
    else:
        pulls.finish(name)
