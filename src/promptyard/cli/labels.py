"""`promptyard labels set|rollback`."""

from __future__ import annotations

import click
from flask.cli import with_appcontext


@click.group("labels")
def command() -> None:
    """Move prompt labels (production, staging, ...)."""


@command.command("set")
@click.argument("name")
@click.argument("label")
@click.argument("version", type=int)
@with_appcontext
def set_(name: str, label: str, version: int) -> None:
    """Point LABEL of prompt NAME at VERSION."""
    from promptyard.prompts import labels

    row = labels.set_label(name, label, version, actor="cli")
    click.echo(f"{name}: {label} -> v{row.version.number}")


@command.command("rollback")
@click.argument("name")
@click.argument("label")
@with_appcontext
def rollback(name: str, label: str) -> None:
    """Move LABEL of prompt NAME back to its previous version."""
    from promptyard.prompts import labels

    row = labels.rollback_label(name, label, actor="cli")
    click.echo(f"{name}: {label} rolled back to v{row.version.number}")
