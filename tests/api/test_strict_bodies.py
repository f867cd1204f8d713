"""Every JSON write endpoint refuses a value of the wrong type (422 naming the field) and writes nothing."""

from __future__ import annotations

import pytest

from promptyard.db import db
from promptyard.models.service import install_plugin
from promptyard.plugins.function import FunctionPlugin

TABLES = ("prompt_library", "prompt_versions", "prompt_labels", "experiments", "execution_history", "feedback",
          "api_keys", "eval_runs", "models", "model_cache")

VALID_EVAL = {"dataset": "humaneval", "model": "echo", "limit": 1, "k": [1]}
VALID_VARIABLE = {"name": "who", "type": "string"}

# (method, path, a body that would be accepted, the field to spoil, a value of the wrong type for it)
CASES = [
    ("post", "/api/v1/prompts", {"name": "new", "template": "Hi"}, "template", 5),
    ("post", "/api/v1/prompts", {"name": "new", "template": "Hi"}, "tags", "python"),
    ("post", "/api/v1/prompts", {"name": "new", "template": "Hi {{ who }}", "variables": [VALID_VARIABLE]},
     "variables.0.required", "yes"),
    ("patch", "/api/v1/prompts/greet", {"description": "d"}, "description", 1),
    ("post", "/api/v1/prompts/greet/versions", {"template": "Hey {{ who }}"}, "message", ["m"]),
    ("put", "/api/v1/prompts/greet/labels/production", {"version": 1}, "version", "1"),
    ("put", "/api/v1/prompts/greet/labels/production", {"version": 1}, "version", True),
    ("post", "/api/v1/prompts/greet/render", {"variables": {"who": "x"}, "version": 1}, "version", 1.0),
    ("post", "/api/v1/experiments", {"name": "ab", "prompt": "greet",
                                     "arms": [{"version": 1, "weight": 1}, {"version": 2, "weight": 1}]},
     "alpha", "0.05"),
    ("post", "/api/v1/models", {"name": "m2", "plugin": "function", "source": "x"}, "pricing.input_per_1k", "0.1"),
    ("post", "/api/v1/keys", {"role": "viewer"}, "name", 7),
    ("post", "/api/v1/evals", VALID_EVAL, "n", "10"),
    ("post", "/api/v1/evals", VALID_EVAL, "k.0", True),
    ("post", "/api/v1/evals", VALID_EVAL, "timeout", "3"),
    ("post", "/api/v1/executions", {"model": "echo", "input": "x"}, "cache", "false"),
    ("post", "/api/v1/executions/1/feedback", {"rating": 4}, "rating", True),
]


def spoil(body: dict, field: str, value) -> dict:
    """A deep copy of body with the dotted field set to value."""
    import copy

    spoiled = copy.deepcopy(body)
    *parents, last = field.split(".")
    target = spoiled
    for part in parents:
        target = target[int(part)] if part.isdigit() else target.setdefault(part, {})
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return spoiled


def counts(app) -> dict[str, int]:
    with app.app_context():
        return {table: db.session.execute(db.text(f"SELECT count(*) FROM {table}")).scalar() for table in TABLES}


@pytest.fixture
def seeded(app, client):
    with app.app_context():
        install_plugin("echo", FunctionPlugin(lambda prompt, params: "hello", source="fake/echo"))
    assert client.post("/api/v1/prompts", json={"name": "greet", "template": "Hello {{ who }}"}).status_code == 201
    assert client.post("/api/v1/prompts/greet/versions", json={"template": "Hi {{ who }}"}).status_code == 201
    assert client.post("/api/v1/executions", json={"model": "echo", "input": "x"}).status_code == 201
    return client


@pytest.mark.parametrize("method, path, body, field, wrong", CASES,
                         ids=[f"{path}:{field}={wrong!r}" for _, path, _, field, wrong in CASES])
def test_a_wrong_type_is_refused_and_changes_nothing(app, seeded, method, path, body, field, wrong):
    before = counts(app)
    response = getattr(seeded, method)(path, json=spoil(body, field, wrong))
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert [problem["field"] for problem in error["details"]["errors"]] == [field], error
    assert counts(app) == before
