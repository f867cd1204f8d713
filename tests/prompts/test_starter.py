"""The starter library: every prompt is valid, renders, and seeding happens once."""

from __future__ import annotations

import pytest

from promptyard.prompts import library
from promptyard.prompts.starter import seed_starter_library, starter_prompts
from promptyard.prompts.templates import render_version, validate_template
from promptyard.prompts.versions import add_version, build_version

REQUIRED_TASKS = {
    "function-from-docstring", "humaneval-completion", "mbpp-task", "explain-code", "write-unit-tests", "review-code",
    "find-vulnerabilities", "fix-bug-from-traceback", "refactor-code", "add-type-hints", "write-docstrings",
    "translate-code", "write-sql", "write-regex", "write-shell-command",
}
SAMPLE = {"string": "def f(x):\n    return x", "integer": 3, "number": 1.5, "boolean": True, "list": ["assert f(1) == 1"]}


def test_starter_set_covers_the_tasks_with_documented_variables_and_params():
    docs = starter_prompts()
    assert len(docs) >= 15
    assert REQUIRED_TASKS <= {doc["name"] for doc in docs}
    for doc in docs:
        declared = validate_template(doc["template"], doc["variables"])
        assert all(v["description"] for v in declared), doc["name"]
        assert doc["params"].get("max_new_tokens") and "temperature" in doc["params"], doc["name"]
        assert doc["tags"] and doc["task_type"] and doc["description"]


def test_seeding_creates_every_prompt_with_a_production_label_once(app):
    assert "seeded" in seed_starter_library()
    total = library.list_prompts(limit=500)[1]
    assert total == len(starter_prompts())
    add_version("explain-code", "Explain {{ code }} briefly.", variables=[{"name": "code"}])
    library.archive_prompt("write-regex")
    assert "nothing created" in seed_starter_library()
    assert library.get_prompt("write-regex").archived  # not resurrected
    assert library.resolve_version("explain-code").number == 2  # not overwritten
    assert library.list_prompts(include_archived=True, limit=500)[1] == total


@pytest.mark.parametrize("doc", starter_prompts(), ids=lambda d: d["name"])
def test_each_starter_prompt_renders(doc):
    version = build_version(1, doc["template"], doc["variables"], doc["params"])
    required = {v["name"]: SAMPLE[v["type"]] for v in version.variables if v["required"]}
    text = render_version(version, required)
    assert text.strip()
    for value in required.values():
        if isinstance(value, str):
            assert value in text


def test_startup_hooks_seed_the_library(app):
    from promptyard.startup import run_startup_hooks

    report = run_startup_hooks()
    assert any(line.startswith("starter library: seeded") for line in report)
    assert library.resolve_version("write-sql", label="production").number == 1
