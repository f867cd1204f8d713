"""`promptyard train data|start|list|show|cancel|resume`: training data and LoRA fine-tuning from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from promptyard.cli.models import _pairs
from promptyard.cli.models import command as _models_group
from promptyard.cli.prompts import command as _prompts_group

SOURCES = click.Choice(["history", "evals", "dataset", "jsonl"])


def data_options(fn):
    """The filters `train data` and `train start` share."""
    options = [
        click.option("--source", "sources", multiple=True, type=SOURCES,
                     help="Where rows come from (repeatable; default history and evals)."),
        click.option("--prompt", default=None, help="Only this library prompt."),
        click.option("--version", type=click.IntRange(min=1), default=None, help="Only this prompt version."),
        click.option("--label", default=None, help="Only executions/runs made through this label."),
        click.option("--model", default=None, help="Only executions/runs of this model."),
        click.option("--since", type=click.DateTime(), default=None, help="Only records made at or after this."),
        click.option("--until", type=click.DateTime(), default=None, help="Only records made at or before this."),
        click.option("--min-rating", type=click.IntRange(1, 5), default=4, show_default=True,
                     help="A rating at or above this is good."),
        click.option("--max-bad-rating", type=click.IntRange(1, 5), default=2, show_default=True,
                     help="A rating at or below this is bad."),
        click.option("--dataset", default=None, help="Evaluation dataset (source dataset)."),
        click.option("--limit", type=click.IntRange(min=1), default=None, help="Only its first N tasks."),
        click.option("--jsonl", "jsonl_file", type=click.Path(exists=True, dir_okay=False), default=None,
                     help="A JSONL file of rows (source jsonl)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _spec(sources, prompt, version, label, model, since, until, min_rating, max_bad_rating, dataset, limit,
          jsonl_file) -> dict:
    spec = {"prompt": prompt, "version": version, "label": label, "model": model, "since": since, "until": until,
            "min_rating": min_rating, "max_bad_rating": max_bad_rating, "dataset": dataset, "limit": limit,
            "jsonl": Path(jsonl_file).read_text(encoding="utf-8") if jsonl_file else None}
    spec = {key: value for key, value in spec.items() if value is not None}
    if sources:
        spec["source"] = list(sources)
    elif jsonl_file:
        spec["source"] = ["jsonl"]
    return spec


@click.group("train")
def command() -> None:
    """Fine-tune models with LoRA on what promptyard recorded: training data, start, follow, cancel."""


@command.command("data")
@click.option("--format", "fmt", type=click.Choice(["sft", "kto", "dpo"]), default="sft", show_default=True)
@data_options
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the JSONL here (default: standard output).")
@with_appcontext
def data(fmt, out, **filters) -> None:
    """Training rows in TRL's format as JSONL; counts per source on standard error."""
    from promptyard.training import data as training_data

    built = training_data.build(fmt, _spec(**filters), home=current_app.config.get("PROMPTYARD_HOME"))
    if out:
        Path(out).write_text(built.jsonl(), encoding="utf-8")
    else:
        click.echo(built.jsonl(), nl=False)
    counts = ", ".join(f"{source}: {n}" for source, n in built.counts.items())
    click.echo(f"{len(built.rows)} {fmt} rows ({counts}); {built.duplicates} duplicate(s) dropped.", err=True)


@command.command("start")
@click.argument("base_model")
@click.option("--name", required=True, help="Name of the new model the training registers.")
@click.option("--method", type=click.Choice(["sft", "kto", "dpo"]), default="sft", show_default=True)
@data_options
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Hyperparameter, PEFT/TRL names: r, lora_alpha, learning_rate, max_steps, ...")
@click.option("--background", is_flag=True,
              help="Queue it on the Celery workers (needs PROMPTYARD_BROKER_URL) instead of training here.")
@with_appcontext
def start(base_model, name, method, params, background, **filters) -> None:
    """Fine-tune BASE_MODEL with LoRA; trains here with a line per logged step unless --background."""
    from promptyard.errors import Unprocessable
    from promptyard.training import runs

    if background and not current_app.config.get("PROMPTYARD_BROKER_URL"):
        # Without a broker the job would run on a thread of this command, which could not exit before it ends.
        raise Unprocessable("--background needs Celery workers (set PROMPTYARD_BROKER_URL); without them, train "
                            "in this process (leave --background out) or start it over the API of a running server.",
                            code="no_workers")
    row = runs.create_training(base_model, name, method, _spec(**filters), _pairs("--param", params),
                               submit=background)
    click.echo(f"Training {row.id}: {method} of {base_model} on {row.data_summary['rows']} rows -> {name}.")
    if background:
        click.echo(f"Queued; follow it with 'promptyard train show {row.id}'.")
        return
    result = runs.execute_training(row.id)
    _print(result)


@command.command("list")
@with_appcontext
def list_() -> None:
    """Trainings, newest first."""
    from promptyard.training import runs

    rows, _ = runs.list_trainings(500)
    if not rows:
        click.echo("No trainings yet. Start one with 'promptyard train start'.")
    for row in rows:
        click.echo(f"{row.id}\t{row.status}\t{row.method}\t{row.base_model} -> {row.model_name}\t"
                   f"{row.step}/{row.total_steps}")


@command.command("show")
@click.argument("training_id", type=int)
@with_appcontext
def show(training_id: int) -> None:
    """One training as JSON."""
    from promptyard.training import runs

    click.echo(json.dumps(runs.training_to_dict(runs.get_training(training_id)), indent=2))


@command.command("cancel")
@click.argument("training_id", type=int)
@with_appcontext
def cancel(training_id: int) -> None:
    """Cancel a queued or running training."""
    from promptyard.training import runs

    row = runs.cancel_training(training_id)
    click.echo(f"Training {row.id}: {row.status}" + (" (stops at its next step)" if row.status == "running" else ""))


@command.command("resume")
@click.argument("training_id", type=int)
@with_appcontext
def resume(training_id: int) -> None:
    """Continue a cancelled or failed training from its last checkpoint, in this process."""
    from promptyard.training import runs

    runs.resume_training(training_id, submit=False)
    _print(runs.execute_training(training_id))


def _print(result: dict) -> None:
    losses = result["losses"]
    if losses:
        click.echo(f"loss {losses[0]['loss']:.4f} at step {losses[0]['step']} -> "
                   f"{losses[-1]['loss']:.4f} at step {losses[-1]['step']}")
    if result["status"] == "succeeded":
        click.echo(f"Training {result['id']} succeeded: model '{result['model']}' is registered.")
    else:
        from promptyard.errors import Unprocessable

        raise Unprocessable(f"Training {result['id']} {result['status']}: {result['error'] or ''}".strip(),
                            code="training_" + result["status"])


@click.command("export")
@click.argument("name")
@click.option("--to", "to", required=True, type=click.Path(file_okay=False), help="A new or empty folder.")
@click.option("--merge", is_flag=True, help="Merge the adapter into the base weights.")
@click.option("--push", default=None, metavar="ORG/REPO", help="Push the folder to this Hub repository.")
@with_appcontext
def export(name: str, to: str, merge: bool, push: str | None) -> None:
    """Export NAME: adapter (or merged weights), tokenizer and model card; push to the Hub with --push."""
    from promptyard.training.export import export_model

    result = export_model(name, to, merge=merge, push=push)
    kind = "merged weights" if result["merged"] else "adapter" if result["adapter"] else "weights"
    click.echo(f"Exported {name} ({kind}) to {result['to']}: {', '.join(result['files'])}.")
    if result["pushed"]:
        click.echo(f"Pushed to {push}: {result['pushed']}")


# `promptyard models export` belongs with the models commands; it is added here so that the training code that
# gives it meaning stays in one place (cli/models.py is left as it is).
_models_group.add_command(export)


@click.command("push")
@click.argument("repo")
@with_appcontext
def push_prompts(repo: str) -> None:
    """Push the prompt library to the Hub dataset repository REPO (org/name)."""
    from promptyard.training.hub import push_prompt_library

    result = push_prompt_library(repo)
    click.echo(f"Pushed {result['prompts']} prompts ({result['versions']} versions) to {repo}: {result['pushed']}")


# `promptyard prompts push` sits with the prompt commands; added here beside the Hub code (cli/prompts.py as is).
_prompts_group.add_command(push_prompts)
