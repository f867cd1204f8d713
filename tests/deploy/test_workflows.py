"""The GitHub workflows: valid against the workflow schema (check-jsonschema's vendored copy, offline), and doing
what they are for: CI runs the README's test command with PostgreSQL and Redis; a green push to main deploys."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.unitproc import REPO

WORKFLOWS = REPO / ".github" / "workflows"
CHECK = str(Path(sys.executable).with_name("check-jsonschema"))


def validate(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHECK, "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
                          capture_output=True, text=True, timeout=120)


def load(name: str) -> dict:
    # YAML 1.1 reads the key `on` as True; GitHub reads it as "on".
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    return {("on" if key is True else key): value for key, value in data.items()}


def test_both_workflows_are_valid():
    result = validate(WORKFLOWS / "ci.yml", WORKFLOWS / "deploy-space.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("name: broken\non: push\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps: not-a-list\n")
    result = validate(broken)
    assert result.returncode != 0 and "broken.yml" in result.stdout + result.stderr


def test_ci_runs_the_readmes_test_command_with_the_services():
    ci = load("ci.yml")
    job = ci["jobs"]["test"]
    readme = (REPO / "README.md").read_text()
    assert "make test" in readme
    assert any(step.get("run", "").strip() == "make test" for step in job["steps"])
    assert job["services"]["postgres"]["image"].startswith("postgres:")
    assert job["services"]["redis"]["image"].startswith("redis:")
    assert job["env"]["PROMPTYARD_REQUIRE_SERVICES"] == "1"
    assert "@postgres:5432" in job["env"]["PROMPTYARD_TEST_PG"] and "//redis:6379" in job["env"]["PROMPTYARD_TEST_REDIS"]
    installs = " ".join(step.get("run", "") for step in job["steps"])
    assert "chromium" in installs and "nginx" in installs
    assert "push" in ci["on"] and "pull_request" in ci["on"]


@pytest.mark.parametrize("name", ["ci.yml", "deploy-space.yml"])
def test_workflows_read_only_by_default(name):
    assert load(name)["permissions"] == {"contents": "read"}


def test_deploy_follows_a_green_ci_on_main_with_the_token_secret():
    deploy = load("deploy-space.yml")
    trigger = deploy["on"]["workflow_run"]
    assert trigger["workflows"] == [load("ci.yml")["name"]] and trigger["branches"] == ["main"]
    job = deploy["jobs"]["deploy"]
    assert "conclusion == 'success'" in job["if"] and "event == 'push'" in job["if"]
    assert job["env"]["HF_SPACE"] == "${{ vars.HF_SPACE }}"
    text = (WORKFLOWS / "deploy-space.yml").read_text()
    assert "${{ secrets.HF_TOKEN }}" in text and "huggingface.co/spaces/${HF_SPACE}" in text
    checkout = next(step for step in job["steps"] if step.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["ref"].startswith("${{ github.event.workflow_run.head_sha")
