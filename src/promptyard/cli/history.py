"""`promptyard history list|export`: the execution log from the command line."""

from __future__ import annotations

import sys
from datetime import datetime

import click
from flask.cli import with_appcontext


def _filter_options(fn):
    """The filters of GET /api/v1/executions."""
    for option in reversed([
        click.option("--prompt", default=None, help="Only this prompt."),
        click.option("--version", type=click.IntRange(min=1), default=None, help="Only this version."),
        click.option("--model", default=None, help="Only this model."),
        click.option("--status", type=click.Choice(["running", "succeeded", "failed", "cancelled"]), default=None),
        click.option("--since", type=click.DateTime(), default=None, help="From this time (UTC)."),
        click.option("--until", type=click.DateTime(), default=None, help="Before this time (UTC)."),
    ]):
        fn = option(fn)
    return fn


def _filters(prompt, version, model, status, since: datetime | None, until: datetime | None):
    from promptyard.execution.history import HistoryFilters

    return HistoryFilters(prompt=prompt, version=version, model=model, status=status, since=since, until=until)


@click.group("history")
def command() -> None:
    """The execution log: list and export (with feedback)."""


@command.command("list")
@_filter_options
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@with_appcontext
def list_(prompt, version, model, status, since, until, limit) -> None:
    """The newest executions: id, time, prompt and version, model, status, latency, cost."""
    from promptyard.execution.history import list_executions

    rows, total = list_executions(_filters(prompt, version, model, status, since, until), limit, 0)
    if not rows:
        click.echo("No executions match.")
        return
    for row in rows:
        target = f"{row.prompt_name} v{row.version_number}" if row.prompt_name else "(raw input)"
        latency = f"{row.latency_ms:.0f} ms" if row.latency_ms is not None else "-"
        click.echo(f"{row.id}\t{row.created_at:%Y-%m-%d %H:%M:%S}\t{target}\t{row.model_name}\t{row.status}"
                   f"\t{latency}\t{row.cost or 0:.6f}")
    click.echo(f"{len(rows)} of {total}, newest first.", err=True)


@command.command("export")
@_filter_options
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write here instead of stdout.")
@with_appcontext
def export(prompt, version, model, status, since, until, fmt, output) -> None:
    """Every matching execution, oldest first, as JSON Lines or CSV, with its feedback."""
    from promptyard.execution.history import export_executions

    chunks = export_executions(_filters(prompt, version, model, status, since, until), fmt)
    if output is None:
        for chunk in chunks:
            sys.stdout.write(chunk)
        return
    with open(output, "w", encoding="utf-8", newline="") as out:
        for chunk in chunks:
            out.write(chunk)
    click.echo(f"Wrote {output}.", err=True)
