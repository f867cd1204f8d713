"""Work done once when the app starts serving: migrate, seed, register presets, recover."""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)

# "module:function" hooks run in order inside an app context, each with what a person reads about it at startup.
STARTUP_HOOKS = (
    ("promptyard.prompts.starter:seed_starter_library", "starter library"),
    ("promptyard.models.service:register_presets", "model presets"),
    ("promptyard.execution.recovery:recover_interrupted", "interrupted executions"),
    ("promptyard.evals.runs:resume_interrupted_runs", "evaluation runs"),
    ("promptyard.training.runs:resume_interrupted_trainings", "interrupted trainings"),
)


def run_startup_hooks() -> list[str]:
    """Run every hook; returns one line per hook saying what it did ("model presets: 5 preset(s) registered...")."""
    report = []
    for spec, topic in STARTUP_HOOKS:
        module_name, _, func_name = spec.partition(":")
        result = getattr(importlib.import_module(module_name), func_name)()
        report.append(f"{topic}: {result}" if result is not None else f"{topic}: done")
    return report


def prepare_database() -> list[str]:
    """Upgrade the schema to head, then run the startup hooks."""
    from promptyard.migrations import upgrade

    upgrade()
    return run_startup_hooks()
