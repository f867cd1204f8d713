"""`promptyard keys create|list|revoke`."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

# promptyard.keys.ROLES, here so that loading the CLI does not import the database layer (a test checks they agree).
ROLES = ("viewer", "editor", "admin")


@click.group("keys")
def command() -> None:
    """Manage API keys."""


@command.command("create")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the key may do.")
@click.option("--name", default="", help="A label to recognise the key by.")
@with_appcontext
def create(role: str, name: str) -> None:
    """Create a key and print it (it is shown this once)."""
    from promptyard import keys

    row, secret = keys.create_key(role, name)
    click.echo(f"Created {role} key {row.id} ({name or 'unnamed'}). Store it now, it is not shown again:")
    click.echo(secret)


@command.command("list")
@with_appcontext
def list_() -> None:
    """List active keys (never their secrets)."""
    from promptyard import keys

    rows = keys.list_keys()
    if not rows:
        click.echo("No API keys. Auth is off on a loopback bind until one exists.")
    for row in rows:
        click.echo(f"{row.id}\t{row.role}\t{row.prefix}…\t{row.name}")


@command.command("revoke")
@click.argument("key_id", type=int)
@with_appcontext
def revoke(key_id: int) -> None:
    """Revoke a key; it stops working at once."""
    from promptyard import keys

    keys.revoke_key(key_id)
    click.echo(f"Revoked key {key_id}.")
