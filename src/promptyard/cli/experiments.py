"""`promptyard experiments create|list|show|stop`: A/B tests of prompt versions from the command line."""

from __future__ import annotations

import json

import click
from flask.cli import with_appcontext

from promptyard.errors import Unprocessable


def _arms(values: tuple[str, ...]) -> list[dict]:
    """VERSION or VERSION=WEIGHT into arms."""
    arms = []
    for value in values:
        version, _, weight = value.partition("=")
        try:
            arms.append({"version": int(version), "weight": float(weight) if weight else 1.0})
        except ValueError:
            raise Unprocessable(f"--arm takes VERSION or VERSION=WEIGHT, like 2=0.5; got '{value}'.",
                                code="bad_option") from None
    return arms


@click.group("experiments")
def command() -> None:
    """A/B test prompt versions: create, list, show results, stop."""


@command.command("create")
@click.argument("name")
@click.option("--prompt", required=True, help="The library prompt whose versions are compared.")
@click.option("--arm", "arms", multiple=True, required=True, metavar="VERSION[=WEIGHT]",
              help="A version in the test, with its weight (repeat, at least twice).")
@click.option("--metric", type=click.Choice(["success_rate", "mean_rating"]), default="success_rate",
              show_default=True, help="What decides the winner.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
              show_default=True, help="Significance level for declaring a winner.")
@click.option("--description", default="", help="What the test is about.")
@with_appcontext
def create(name: str, prompt: str, arms: tuple[str, ...], metric: str, alpha: float, description: str) -> None:
    """Create experiment NAME; runs naming it (with a subject) are given an arm."""
    from promptyard.prompts import experiments

    row = experiments.create_experiment(name, prompt, _arms(arms), alpha=alpha, metric=metric,
                                        description=description)
    click.echo(f"Created experiment {row.name} on {prompt}: "
               + ", ".join(f"v{arm.version.number} (weight {arm.weight:g})" for arm in row.arms) + ".")


@command.command("list")
@with_appcontext
def list_() -> None:
    """List experiments, newest first: name, prompt, status, metric."""
    from promptyard.prompts import experiments

    rows, _ = experiments.list_experiments(limit=500)
    if not rows:
        click.echo("No experiments. Create one with 'promptyard experiments create'.")
    for row in rows:
        data = experiments.experiment_to_dict(row)
        click.echo(f"{data['name']}\t{data['prompt']}\t{data['status']}\t{data['metric']}")


@command.command("show")
@click.argument("name")
@with_appcontext
def show(name: str) -> None:
    """Experiment NAME with its per-arm results, p-value and winner, as JSON."""
    from promptyard.prompts import experiments

    data = experiments.experiment_to_dict(experiments.get_experiment(name))
    click.echo(json.dumps({**data, "results": experiments.experiment_results(name)}, indent=2, default=str))


@command.command("stop")
@click.argument("name")
@with_appcontext
def stop(name: str) -> None:
    """Stop experiment NAME: runs naming it get no arm any more; its results stay."""
    from promptyard.prompts import experiments

    experiments.stop_experiment(name)
    click.echo(f"Stopped experiment {name}.")
