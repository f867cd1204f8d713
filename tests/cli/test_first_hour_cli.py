"""The CLI a new user meets: only promptyard's own options and commands, a fast start, and commands for versions,
archiving, experiments and history."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

from click.testing import CliRunner

from promptyard.execution.feedback import add_feedback
from promptyard.execution.pipeline import ExecutionRequest, execute
from promptyard.models.service import install_plugin
from promptyard.plugins.function import FunctionPlugin
from promptyard.prompts import library


def test_help_shows_only_promptyards_own_options_and_commands():
    from promptyard.cli import main

    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for flask_own in ("--env-file", "--app", "--debug", "limiter", "openapi"):
        assert flask_own not in result.output
    for ours in ("db", "eval", "experiments", "history", "keys", "labels", "models", "prompts", "up"):
        assert f"  {ours} " in result.output


def test_loading_the_cli_imports_no_database_or_model_code():
    """What makes every command slow to start is importing what it does not need."""
    code = ("import sys, promptyard.cli; "
            "print(sorted(m for m in ('sqlalchemy', 'flask_migrate', 'torch', 'transformers', 'promptyard.db') "
            "if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_the_key_roles_the_cli_offers_are_the_services():
    from promptyard import keys
    from promptyard.cli.keys import ROLES

    assert ROLES == keys.ROLES


def test_add_a_version_and_archive(cli):
    cli("prompts", "create", "greet", "--template", "Hello {{ who }}", "--params", '{"max_new_tokens": 8}')
    added = cli("prompts", "add-version", "greet", "--template", "Hi {{ who }}", "--message", "shorter")
    assert added.exit_code == 0 and "Saved version 2 of greet" in added.output
    latest = library.resolve_version("greet")
    assert (latest.number, latest.template, latest.params) == (2, "Hi {{ who }}", {"max_new_tokens": 8})
    same = cli("prompts", "add-version", "greet", "--template", "Hi {{ who }}")
    assert same.exit_code == 0 and "nothing saved" in same.output
    assert cli("prompts", "add-version", "greet", "--template", "{% if %}").exit_code == 2
    assert cli("prompts", "add-version", "nobody", "--template", "x").exit_code == 2
    assert cli("prompts", "add-version", "greet").exit_code == 2
    assert library.resolve_version("greet").number == 2
    archived = cli("prompts", "archive", "greet")
    assert archived.exit_code == 0 and "greet" not in cli("prompts", "list").output
    assert "greet (archived)" in cli("prompts", "list", "--archived").output


def test_experiments_from_the_cli(cli):
    cli("prompts", "create", "greet", "--template", "Hello {{ who }}")
    cli("prompts", "add-version", "greet", "--template", "Hi {{ who }}")
    created = cli("experiments", "create", "greet-ab", "--prompt", "greet", "--arm", "1", "--arm", "2=3",
                  "--metric", "mean_rating", "--alpha", "0.01")
    assert created.exit_code == 0, created.output
    assert "v1 (weight 1), v2 (weight 3)" in created.output
    assert "greet-ab\tgreet\trunning\tmean_rating" in cli("experiments", "list").output
    shown = json.loads(cli("experiments", "show", "greet-ab").output)
    assert shown["alpha"] == 0.01 and "arms" in shown["results"]
    assert cli("experiments", "create", "bad", "--prompt", "greet", "--arm", "one", "--arm", "2").exit_code == 2
    assert cli("experiments", "create", "solo", "--prompt", "greet", "--arm", "1").exit_code == 2
    stopped = cli("experiments", "stop", "greet-ab")
    assert stopped.exit_code == 0 and "running" not in cli("experiments", "list").output
    assert cli("experiments", "stop", "greet-ab").exit_code == 2


def test_history_list_and_export_with_feedback(cli, tmp_path):
    install_plugin("echo", FunctionPlugin(lambda prompt, params: "out"))
    first = execute(ExecutionRequest(model="echo", input="a"))
    execute(ExecutionRequest(model="echo", input="b", cache=False))
    add_feedback(first.id, 5, "spot on")
    listed = cli("history", "list", "--model", "echo")
    assert listed.exit_code == 0 and listed.stdout.count("(raw input)\techo\tsucceeded") == 2
    assert "No executions match" in cli("history", "list", "--model", "nobody").output
    assert cli("history", "list", "--status", "exploded").exit_code == 2
    exported = cli("history", "export", "--format", "jsonl")
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    assert records[0]["feedback"][0]["rating"] == 5 and records[1]["feedback"] == []
    out = tmp_path / "runs.csv"
    assert cli("history", "export", "--format", "csv", "-o", str(out)).exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert (rows[0]["rating"], rows[0]["comment"]) == ("5", "spot on")
