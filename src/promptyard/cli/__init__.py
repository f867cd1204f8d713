"""The `promptyard` command: a Flask CLI group over the same service layer as the API.

Only promptyard's own commands and options are shown: Flask's `--app`, `--env-file`, `--debug` and the commands
libraries add to the app (limiter, openapi) are not for users. Nothing heavy is imported until a command runs."""

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
    "promptyard.cli.experiments",
    "promptyard.cli.history",
    "promptyard.cli.train",
)
FLASK_OPTIONS = {"env_file", "app", "debug"}
# Commands that live in a library, loaded when used: name -> ("module:attribute", one-line help).
LIBRARY_COMMANDS = {"db": ("flask_migrate.cli:db", "Database migrations: upgrade, downgrade, current, history.")}


def _create_app():
    from promptyard import create_app

    return create_app()


class CliError(click.ClickException):
    """A service error shown as one clean line; exit code 2 like click's usage errors."""

    exit_code = 2


class PromptyardGroup(FlaskGroup):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.params = [param for param in self.params if param.name not in FLASK_OPTIONS]

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*self.commands, *LIBRARY_COMMANDS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        if name in LIBRARY_COMMANDS:
            module_name, _, attribute = LIBRARY_COMMANDS[name][0].partition(":")
            return getattr(importlib.import_module(module_name), attribute)
        return None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Like click's, without importing the library commands just to show their help line."""
        limit = formatter.width - 6 - max(len(name) for name in self.list_commands(ctx))
        rows = [(name, LIBRARY_COMMANDS[name][1] if name in LIBRARY_COMMANDS
                 else self.commands[name].get_short_help_str(limit)) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

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
