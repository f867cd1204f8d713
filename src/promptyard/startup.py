"""Work done once when the app starts serving: migrate, seed, register presets, recover."""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)

# "module:function" hooks run in order inside an app context.
STARTUP_HOOKS = (
    "promptyard.prompts.starter:seed_starter_library",
    "promptyard.models.service:register_presets",
    "promptyard.execution.recovery:recover_interrupted",
    "promptyard.evals.runs:resume_interrupted_runs",
    "promptyard.training.runs:resume_interrupted_trainings",
)


def run_startup_hooks() -> list[str]:
    """Run every hook; returns one line per hook saying what it did."""
    report = []
    for spec in STARTUP_HOOKS:
        module_name, _, func_name = spec.partition(":")
        result = getattr(importlib.import_module(module_name), func_name)()
        report.append(f"{spec}: {result}" if result is not None else spec)
    return report


def prepare_database() -> list[str]:
    """Upgrade the schema to head, then run the startup hooks."""
    from promptyard.migrations import upgrade

    upgrade()
    return run_startup_hooks()
