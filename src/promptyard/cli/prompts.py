"""`promptyard prompts list|show|create|add-version|archive|import|export`.

Services are imported inside each command, so that `promptyard --help` and commands that do not need them start
fast."""

from __future__ import annotations

import json
from pathlib import Path

import click
from flask.cli import with_appcontext



@click.group("prompts")
def command() -> None:
    """Manage the prompt library."""


@command.command("list")
@click.option("--q", "q", default=None, help="Search name, description and the latest template.")
@click.option("--tag", default=None, help="Only prompts with this tag.")
@click.option("--archived", is_flag=True, help="Include archived prompts.")
@with_appcontext
def list_(q: str | None, tag: str | None, archived: bool) -> None:
    """List prompts: name, latest version, labels, tags."""
    from promptyard.prompts import library

    rows, total = library.list_prompts(q, tag, include_archived=archived, limit=10_000)
    if not rows:
        click.echo("No prompts match.")
    for row in rows:
        data = library.prompt_to_dict(row)
        labels = ",".join(f"{k}=v{v}" for k, v in data["labels"].items())
        latest = data["latest_version"]["version"] if data["latest_version"] else "-"
        flag = " (archived)" if row.archived else ""
        click.echo(f"{row.name}{flag}\tv{latest}\t{labels}\t{','.join(data['tags'])}")


@command.command("show")
@click.argument("name")
@click.option("--version", type=int, default=None, help="Show this version (default: the latest).")
@click.option("--label", default=None, help="Show the version this label points to.")
@click.option("--json", "as_json", is_flag=True, help="Print the prompt as JSON.")
@with_appcontext
def show(name: str, version: int | None, label: str | None, as_json: bool) -> None:
    """Show a prompt and one of its versions."""
    from promptyard.prompts import library
    from promptyard.prompts.versions import list_versions

    prompt = library.get_prompt(name)
    row = library.resolve_version(name, version=version, label=label)
    data = library.prompt_to_dict(prompt)
    data["version"] = library.version_to_dict(row)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    _, count = list_versions(name, limit=1)
    click.echo(f"{prompt.name}{' (archived)' if prompt.archived else ''}: {prompt.description}")
    click.echo(f"tags: {', '.join(data['tags']) or '-'}  task: {prompt.task_type or '-'}  versions: {count}")
    click.echo(f"labels: {', '.join(f'{k}=v{v}' for k, v in data['labels'].items()) or '-'}")
    click.echo(f"--- version {row.number} by {row.author or '-'} at {row.created_at.isoformat()}: {row.message}")
    for var in row.variables or []:
        need = "required" if var["required"] else f"default {var['default']!r}"
        click.echo(f"  {var['name']} ({var['type']}, {need}) {var['description']}")
    click.echo(f"params: {json.dumps(row.params or {})}")
    click.echo(row.template)


@command.command("create")
@click.argument("name")
@click.option("--template", "template", default=None, help="Template text.")
@click.option(
    "--template-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read the template from a file.",
)
@click.option("--description", default="", help="What the prompt is for.")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.option("--task-type", default=None, help="Task type, e.g. code-generation.")
@click.option("--params", default=None, help="Default generation params as JSON.")
@click.option("--message", default="", help="Message for version 1.")
@with_appcontext
def create(name, template, template_file, description, tags, task_type, params, message) -> None:
    """Create a prompt (variables are declared from the template)."""
    from promptyard.prompts import library

    if (template is None) == (template_file is None):
        raise click.UsageError("Give exactly one of --template or --template-file.")
    text = template if template is not None else template_file.read_text(encoding="utf-8")
    try:
        parsed_params = json.loads(params) if params else {}
    except ValueError as exc:
        raise click.UsageError(f"--params is not valid JSON: {exc}") from None
    prompt, _ = library.create_prompt(
        name, text, description=description, tags=list(tags), task_type=task_type, params=parsed_params,
        message=message, author="cli",
    )
    click.echo(f"Created prompt {prompt.name} (version 1).")


@command.command("add-version")
@click.argument("name")
@click.option("--template", "template", default=None, help="Template text.")
@click.option("--template-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read the template from a file.")
@click.option("--params", default=None, help="Default generation params as JSON (default: the latest version's).")
@click.option("--message", default="", help="What changed and why.")
@with_appcontext
def add_version(name, template, template_file, params, message) -> None:
    """Save a new version of prompt NAME (variables are declared from the template)."""
    from promptyard.prompts import library, versions

    if (template is None) == (template_file is None):
        raise click.UsageError("Give exactly one of --template or --template-file.")
    text = template if template is not None else template_file.read_text(encoding="utf-8")
    try:
        parsed_params = json.loads(params) if params else None
    except ValueError as exc:
        raise click.UsageError(f"--params is not valid JSON: {exc}") from None
    if parsed_params is None:
        latest = library.resolve_version(name)
        parsed_params = dict(latest.params or {})
    row, created = versions.add_version(name, text, params=parsed_params, message=message, author="cli")
    click.echo(f"Saved version {row.number} of {name}." if created
               else f"Same as version {row.number} of {name}: nothing saved.")


@command.command("archive")
@click.argument("name")
@with_appcontext
def archive(name: str) -> None:
    """Archive prompt NAME: hidden from lists, history kept (create it again to restore it)."""
    from promptyard.prompts import library

    library.archive_prompt(name)
    click.echo(f"Archived {name}.")


@command.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@with_appcontext
def import_(path: Path) -> None:
    """Import a library export (YAML or JSON); all or nothing."""
    from promptyard.prompts import transfer

    fmt = "json" if path.suffix.lower() == ".json" else "yaml"
    counts = transfer.import_library(transfer.load(path.read_bytes(), fmt), actor="cli")
    click.echo(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in counts.items()))


@command.command("export")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write here instead of stdout.",
)
@with_appcontext
def export(fmt: str, output: Path | None) -> None:
    """Export the whole library."""
    from promptyard.prompts import transfer

    text = transfer.dump(transfer.export_library(), fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"Wrote {output}.")
