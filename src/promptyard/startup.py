"""Work done once when the app starts serving: migrate, seed, register presets, recover."""

from __future__ import annotations

import logging

from promptyard.optional import import_optional

log = logging.getLogger(__name__)

# "module:function" hooks run in order inside an app context; a module not yet written is skipped.
STARTUP_HOOKS = (
    "promptyard.prompts.starter:seed_starter_library",
    "promptyard.models.service:register_presets",
    "promptyard.execution.recovery:recover_interrupted",
    "promptyard.evals.runs:resume_interrupted_runs",
)


def run_startup_hooks() -> list[str]:
    """Run every available hook; returns one line per hook saying what it did."""
    report = []
    for spec in STARTUP_HOOKS:
        module_name, _, func_name = spec.partition(":")
        module = import_optional(module_name)
        hook = getattr(module, func_name, None) if module is not None else None
        if hook is None:  # a layer not yet merged (module, or function in a module another layer started)
            continue
        result = hook()
        report.append(f"{spec}: {result}" if result is not None else spec)
    return report


def prepare_database() -> list[str]:
    """Upgrade the schema to head, then run the startup hooks."""
    from promptyard.migrations import upgrade

    upgrade()
    return run_startup_hooks()
