"""The `promptyard` command: a Flask CLI group over the same service layer as the API."""

from __future__ import annotations

import importlib

import click
from flask.cli import FlaskGroup

# Each module exposes `command`, a click command or group.
COMMAND_MODULES = (
    "promptyard.cli.up",
    "promptyard.cli.keys",
    "promptyard.cli.prompts",
    "promptyard.cli.labels",
    "promptyard.cli.models",
    "promptyard.cli.evals",
    "promptyard.cli.train",
)


def _create_app():
    from promptyard import create_app

    return create_app()


class CliError(click.ClickException):
    """A service error shown as one clean line; exit code 2 like click's usage errors."""

    exit_code = 2


class PromptyardGroup(FlaskGroup):
    def invoke(self, ctx: click.Context):
        from promptyard.errors import PromptyardError

        try:
            return super().invoke(ctx)
        except PromptyardError as exc:
            raise CliError(exc.message) from exc


@click.group(cls=PromptyardGroup, create_app=_create_app, add_default_commands=False, add_version_option=False)
def main() -> None:
    """promptyard: a workbench for code LLMs."""


for _module_name in COMMAND_MODULES:
    main.add_command(importlib.import_module(_module_name).command)
