"""`promptyard models list|register|update|remove|pull`."""

from __future__ import annotations

import json
from typing import Any

import click
from flask.cli import with_appcontext

from promptyard.errors import Unprocessable


def _pairs(option: str, values: tuple[str, ...]) -> dict[str, Any]:
    """KEY=VALUE pairs into a dict; values are read as JSON when they parse (numbers, booleans, lists)."""
    result: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise Unprocessable(f"{option} takes KEY=VALUE, got '{item}'.", code="bad_option")
        try:
            result[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            result[key.strip()] = raw
    return result


@click.group("models")
def command() -> None:
    """Registered models: list, register, fix, remove, pull weights."""


@command.command("list")
@with_appcontext
def list_() -> None:
    """List registered models and presets with their status."""
    from promptyard.models import service

    rows = service.list_models()
    if not rows:
        click.echo("No models registered. Add one with 'promptyard models register'.")
    for row in rows:
        click.echo(f"{row['name']}\t{row['plugin']}\t{row['status']}\t{row['source']}")


@command.command("register")
@click.argument("name")
@click.option("--plugin", required=True, help="Plugin that serves it: transformers, openai-compatible, ...")
@click.option("--source", required=True, help="Hub id, local folder or base URL.")
@click.option("--quantization", type=click.Choice(["4bit", "8bit"]), default=None, help="bitsandbytes (CUDA).")
@click.option("--revision", default=None, help="Hub revision (branch, tag or commit).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Default generation param.")
@click.option("--pricing", "pricing", multiple=True, metavar="KEY=VALUE", help="input_per_1k, output_per_1k or gpu_hour.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="Plugin option.")
@click.option("--description", default="", help="What the model is for.")
@with_appcontext
def register(name: str, plugin: str, source: str, quantization: str | None, revision: str | None,
             params: tuple[str, ...], pricing: tuple[str, ...], options: tuple[str, ...], description: str) -> None:
    """Register a model under NAME."""
    from promptyard.models import service

    row = service.register_model(
        name, plugin, source,
        quantization=quantization,
        params=_pairs("--param", params),
        pricing=_pairs("--pricing", pricing) or None,
        options=_pairs("--option", options),
        revision=revision,
        description=description,
    )
    detail = service.model_to_dict(row)
    click.echo(f"Registered {row.name} ({row.plugin}, {row.source}): {detail['status']}.")


@command.command("update")
@click.argument("name")
@click.option("--source", default=None, help="New hub id, local folder or base URL.")
@click.option("--quantization", type=click.Choice(["4bit", "8bit", "none"]), default=None,
              help="bitsandbytes (CUDA); 'none' removes it.")
@click.option("--revision", default=None, help="Hub revision; '' removes it.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Default generation param (replaces all).")
@click.option("--pricing", "pricing", multiple=True, metavar="KEY=VALUE", help="Prices (replace all).")
@click.option("--no-pricing", is_flag=True, help="Remove the prices.")
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="Plugin option (replaces all).")
@click.option("--description", default=None, help="What the model is for.")
@with_appcontext
def update(name: str, source: str | None, quantization: str | None, revision: str | None, params: tuple[str, ...],
           pricing: tuple[str, ...], no_pricing: bool, options: tuple[str, ...], description: str | None) -> None:
    """Fix NAME: only the settings given change (each of --param, --pricing, --option replaces that whole set)."""
    from promptyard.models import changes, service

    wanted: dict[str, Any] = {}
    if source is not None:
        wanted["source"] = source
    if quantization is not None:
        wanted["quantization"] = None if quantization == "none" else quantization
    if revision is not None:
        wanted["revision"] = revision or None
    if params:
        wanted["params"] = _pairs("--param", params)
    if pricing or no_pricing:
        wanted["pricing"] = {} if no_pricing else _pairs("--pricing", pricing)
    if options:
        wanted["options"] = _pairs("--option", options)
    if description is not None:
        wanted["description"] = description
    row = changes.update_model(name, wanted)
    detail = service.model_to_dict(row)
    click.echo(f"Updated {row.name} ({', '.join(sorted(wanted))}): {detail['status']}"
               + (f" ({detail['error']})" if detail.get("error") else "") + ".")


@command.command("remove")
@click.argument("name")
@click.option("--archive", is_flag=True, help="Archive it (hidden, history kept) when executions name it.")
@with_appcontext
def remove(name: str, archive: bool) -> None:
    """Delete NAME; a model executions name is refused unless --archive."""
    from promptyard.models import changes

    result = changes.remove_model(name, archive=archive)
    click.echo(f"Archived {name}: hidden from lists, its history kept." if result["archived"] else f"Deleted {name}.")


@command.command("pull")
@click.argument("name")
@with_appcontext
def pull(name: str) -> None:
    """Download NAME's weights from the Hugging Face hub (with a progress bar)."""
    from promptyard.models import service
    from promptyard.models.pull import pull_model

    row = service.get_model(name)
    click.echo(f"Pulling {row.source} for {row.name}...")
    folder = pull_model(name)
    click.echo(f"{row.name} is ready: weights in {folder}.")
