"""`promptyard prompts ...` and `promptyard labels ...` against the test app."""

from __future__ import annotations

import json

import yaml

from promptyard.prompts import library


def test_create_list_show(cli, tmp_path):
    result = cli("prompts", "create", "greet", "--template", "Hello {{ who }}", "--tag", "demo", "--params", '{"temperature": 0.1}')
    assert result.exit_code == 0, result.output
    template_file = tmp_path / "t.j2"
    template_file.write_text("Bye {{ who }}")
    assert cli("prompts", "create", "bye", "--template-file", str(template_file), "--description", "farewell").exit_code == 0
    listing = cli("prompts", "list")
    assert "greet" in listing.output and "bye" in listing.output
    assert "bye" not in cli("prompts", "list", "--tag", "demo").output
    shown = cli("prompts", "show", "greet")
    assert shown.exit_code == 0 and "Hello {{ who }}" in shown.output and "who (string, required)" in shown.output
    as_json = json.loads(cli("prompts", "show", "bye", "--json").output)
    assert as_json["version"]["template"] == "Bye {{ who }}" and as_json["latest_version"]["author"] == "cli"


def test_create_and_show_failures(cli):
    assert cli("prompts", "create", "Bad Name", "--template", "x").exit_code == 2
    assert cli("prompts", "create", "x", "--template", "{% if %}").exit_code == 2
    assert cli("prompts", "create", "x").exit_code == 2
    assert cli("prompts", "create", "x", "--template", "a", "--params", "{").exit_code == 2
    assert library.list_prompts()[1] == 0
    missing = cli("prompts", "show", "nope")
    assert missing.exit_code == 2 and "No prompt named 'nope'" in missing.output
    assert "No prompts match" in cli("prompts", "list").output


def test_export_import_round_trip(cli, tmp_path):
    cli("prompts", "create", "greet", "--template", "Hello {{ who }}")
    cli("labels", "set", "greet", "production", "1")
    out = tmp_path / "lib.yaml"
    assert cli("prompts", "export", "--output", str(out)).exit_code == 0
    document = yaml.safe_load(out.read_text())
    assert document["prompts"][0]["labels"] == {"production": 1}
    stdout = cli("prompts", "export", "--format", "json")
    assert json.loads(stdout.output) == document
    document["prompts"][0]["name"] = "copy"
    as_json = tmp_path / "lib.json"
    as_json.write_text(json.dumps(document))
    result = cli("prompts", "import", str(as_json))
    assert result.exit_code == 0 and "prompts created: 1" in result.output
    assert library.resolve_version("copy", label="production").number == 1


def test_import_failures_change_nothing(cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"prompts": [
        {"name": "ok", "versions": [{"version": 1, "template": "A"}]},
        {"name": "broken", "versions": [{"version": 1, "template": "{{ x"}]},
    ]}))
    result = cli("prompts", "import", str(bad))
    assert result.exit_code == 2 and "broken" in result.output
    garbage = tmp_path / "garbage.yaml"
    garbage.write_text("prompts: [")
    assert cli("prompts", "import", str(garbage)).exit_code == 2
    assert cli("prompts", "import", str(tmp_path / "missing.yaml")).exit_code == 2
    assert library.list_prompts(include_archived=True)[1] == 0


def test_labels_set_and_rollback(cli):
    cli("prompts", "create", "greet", "--template", "Hello {{ who }}")
    from promptyard.prompts.versions import add_version

    add_version("greet", "Hi {{ who }}")
    assert "production -> v1" in cli("labels", "set", "greet", "production", "1").output
    assert "production -> v2" in cli("labels", "set", "greet", "production", "2").output
    assert "rolled back to v1" in cli("labels", "rollback", "greet", "production").output
    assert cli("labels", "rollback", "greet", "production").exit_code == 2
    assert cli("labels", "set", "greet", "production", "9").exit_code == 2
    assert cli("labels", "set", "nope", "production", "1").exit_code == 2
    assert cli("labels", "set", "greet", "production", "two").exit_code == 2
    assert cli("labels", "rollback", "greet", "staging").exit_code == 2
    assert library.resolve_version("greet", label="production").number == 1
