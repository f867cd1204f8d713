"""Registered models: the service (register, list, load) and the ModelManager slot on the app."""

from __future__ import annotations

from flask import Flask

from promptyard.plugins.manager import ModelManager, default_memory_budget
from promptyard.plugins.openmp import shorten_spin_wait

EXTENSION_KEY = "promptyard.models"


def init_app(app: Flask) -> None:
    """Put one ModelManager on the app, bounded by PROMPTYARD_MODEL_MEMORY_BYTES, else by the machine's default."""
    shorten_spin_wait()  # before any model brings torch in: see plugins/openmp.py
    budget = app.config.get("PROMPTYARD_MODEL_MEMORY_BYTES")
    app.extensions[EXTENSION_KEY] = ModelManager(int(budget) if budget not in (None, "") else default_memory_budget)
