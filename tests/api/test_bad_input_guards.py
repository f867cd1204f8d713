"""No 500 on input the database cannot hold: huge integers, lone surrogates, NUL characters, very deep JSON.

Each case runs on SQLite and PostgreSQL (whose limits differ: 2**63 and 2**31) and checks that nothing was written.
"""

from __future__ import annotations

import json

import pytest

from promptyard.db import db
from promptyard.db.models import Execution, Experiment, Feedback, Prompt, PromptVersion

HUGE = [2**31, 10**30]  # past PostgreSQL INTEGER; past SQLite INTEGER (2**63) too


@pytest.fixture
def seeded(client):
    response = client.post("/api/v1/prompts", json={"name": "greet", "template": "Hello {{ who }}"})
    assert response.status_code == 201
    return client


def _counts():
    return tuple(db.session.query(model).count() for model in (Prompt, PromptVersion, Execution, Feedback, Experiment))


def _is_error(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert set(response.get_json()["error"]) == {"code", "message", "details"}
    return response.get_json()["error"]


@pytest.mark.parametrize("number", HUGE)
@pytest.mark.parametrize("path", [
    "/api/v1/executions/{n}",
    "/api/v1/evals/{n}",
    "/api/v1/evals/{n}/samples",
    "/api/v1/prompts/greet/versions/{n}",
])
def test_a_path_id_no_row_can_have_is_404(seeded, path, number):
    _is_error(seeded.get(path.format(n=number)), 404)


@pytest.mark.parametrize("number", HUGE)
def test_feedback_on_an_impossible_execution_is_404_and_writes_nothing(seeded, number):
    before = _counts()
    _is_error(seeded.post(f"/api/v1/executions/{number}/feedback", json={"rating": 3}), 404)
    assert _counts() == before


@pytest.mark.parametrize("number", HUGE)
def test_revoking_an_impossible_key_is_404(seeded, number):
    _is_error(seeded.delete(f"/api/v1/keys/{number}"), 404)


@pytest.mark.parametrize("number", HUGE)
@pytest.mark.parametrize("url", [
    "/api/v1/evals?offset={n}",
    "/api/v1/executions?offset={n}",
    "/api/v1/executions?version={n}",
    "/api/v1/executions/export?version={n}",
    "/api/v1/analytics?version={n}",
    "/api/v1/prompts?offset={n}",
    "/api/v1/prompts/greet/versions?offset={n}",
    "/api/v1/prompts/greet/diff?from={n}",
    "/api/v1/experiments?offset={n}",
    "/api/v1/evals/compare?a={n}&b=1",
    "/api/v1/models?offset={n}",
])
def test_an_out_of_range_query_number_is_422(seeded, url, number):
    error = _is_error(seeded.get(url.format(n=number)), 422)
    assert error["code"] == "validation_error"


@pytest.mark.parametrize("number", HUGE)
@pytest.mark.parametrize("method, url, body", [
    ("put", "/api/v1/prompts/greet/labels/prod", {"version": None}),
    ("post", "/api/v1/prompts/greet/render", {"version": None, "variables": {"who": "x"}}),
    ("post", "/api/v1/executions", {"model": "m", "prompt": "greet", "version": None}),
    ("post", "/api/v1/evals", {"dataset": "humaneval", "model": "m", "version": None}),
    ("post", "/api/v1/evals", {"dataset": "humaneval", "model": "m", "limit": None}),
    ("post", "/api/v1/evals", {"dataset": "humaneval", "model": "m", "k": [None]}),
    ("post", "/api/v1/experiments", {"name": "e", "prompt": "greet", "arms": [{"version": 1}, {"version": None}]}),
])
def test_an_out_of_range_body_number_is_422_and_writes_nothing(seeded, method, url, body, number):
    text = json.dumps(body).replace("null", str(number))
    before = _counts()
    response = getattr(seeded, method)(url, data=text, content_type="application/json")
    assert _is_error(response, 422)["code"] == "validation_error"
    assert _counts() == before


BAD_TEXT = {"surrogate": "\\ud800", "low surrogate": "tail \\udfff", "nul": "a\\u0000b"}


@pytest.mark.parametrize("kind", BAD_TEXT)
@pytest.mark.parametrize("method, url, body", [
    ("post", "/api/v1/prompts", '{"name": "p2", "template": "hi BAD"}'),
    ("post", "/api/v1/prompts", '{"name": "p2", "template": "hi", "description": "BAD"}'),
    ("post", "/api/v1/prompts", '{"name": "p2", "template": "hi", "params": {"BAD": 1}}'),
    ("patch", "/api/v1/prompts/greet", '{"description": "BAD"}'),
    ("post", "/api/v1/prompts/greet/versions", '{"template": "Hi {{ who }} BAD"}'),
    ("post", "/api/v1/prompts/greet/render", '{"variables": {"who": "BAD"}}'),
    ("post", "/api/v1/executions", '{"model": "m", "input": "BAD"}'),
    ("post", "/api/v1/keys", '{"role": "viewer", "name": "BAD"}'),
    ("post", "/v1/completions", '{"model": "m", "prompt": "BAD"}'),
    ("post", "/v1/chat/completions", '{"model": "m", "messages": [{"role": "user", "content": "BAD"}]}'),
])
def test_unstorable_text_is_422_and_writes_nothing(seeded, method, url, body, kind):
    before = _counts()
    response = getattr(seeded, method)(url, data=body.replace("BAD", BAD_TEXT[kind]), content_type="application/json")
    assert _is_error(response, 422)["code"] == "invalid_text"
    assert _counts() == before
    assert seeded.get("/api/v1/prompts/greet").get_json()["description"] == ""


@pytest.mark.parametrize("kind", BAD_TEXT)
def test_unstorable_text_in_an_import_is_422_and_writes_nothing(seeded, kind):
    document = seeded.get("/api/v1/prompts/export").get_data(as_text=True)
    bad = document.replace('"Hello {{ who }}"', '"Hello {{ who }} ' + BAD_TEXT[kind] + '"')
    assert bad != document
    before = _counts()
    response = seeded.post("/api/v1/prompts/import", data=bad.replace('"greet"', '"other"'),
                           content_type="application/json")
    assert _is_error(response, 422)["code"] == "invalid_text"
    assert _counts() == before


def test_nul_in_a_query_or_path_is_a_4xx(seeded):
    _is_error(seeded.get("/api/v1/prompts?q=a%00b"), 422)
    _is_error(seeded.get("/api/v1/executions?model=a%00b"), 422)
    _is_error(seeded.get("/api/v1/prompts/gr%00eet"), 404)
    _is_error(seeded.get("/api/v1/experiments/e%00x"), 404)


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
@pytest.mark.parametrize("method, url, body", [
    ("post", "/api/v1/prompts", '{"name": "p2", "template": "hi", "params": {"x": DEEP}}'),
    ("post", "/api/v1/prompts/greet/render", '{"variables": {"who": DEEP}}'),
    ("post", "/api/v1/executions", '{"model": "m", "input": "x", "params": {"x": DEEP}}'),
    ("post", "/v1/chat/completions", '{"model": "m", "messages": [{"role": "user", "content": "x"}], "x": DEEP}'),
    ("post", "/v1/completions", '{"model": "m", "prompt": "x", "metadata": DEEP}'),
])
def test_deeply_nested_json_is_422_and_writes_nothing(seeded, method, url, body, depth):
    before = _counts()
    response = getattr(seeded, method)(url, data=body.replace("DEEP", _nested(depth)), content_type="application/json")
    assert _is_error(response, 422)["code"] == "json_too_deep"
    assert _counts() == before


def test_deep_json_in_an_import_is_422(seeded):
    response = seeded.post("/api/v1/prompts/import", data=_nested(5000), content_type="application/json")
    assert _is_error(response, 422)["code"] in ("json_too_deep", "too_deep")


def test_json_within_the_depth_bound_still_works(seeded):
    response = seeded.post("/api/v1/prompts", json={"name": "p2", "template": "hi", "params": {"x": [[[[1]]]]}})
    assert response.status_code == 201
    response = seeded.post("/api/v1/prompts/greet/render", json={"variables": {"who": "caf\u00e9 \U0001f600"}})
    assert response.get_json()["text"] == "Hello caf\u00e9 \U0001f600"


@pytest.mark.parametrize("url", [
    "/api/v1/executions?until=9999-12-31T23:59:59-05:00",
    "/api/v1/executions?since=0001-01-01T00:00:00%2B05:00",
    "/api/v1/analytics?since=0001-01-01T00:00:00%2B05:00",
    "/api/v1/executions/export?until=9999-12-31T23:59:59-05:00",
])
def test_a_date_out_of_range_once_in_utc_is_422(seeded, url):
    error = _is_error(seeded.get(url), 422)
    assert error["code"] == "validation_error" and "UTC" in error["message"]


def _billion_laughs() -> str:
    text, previous = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n', "a"
    for name in "bcdefghij":
        text += f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]\n"
        previous = name
    return text + f"prompts: *{previous}\n"


@pytest.mark.parametrize("document", [_billion_laughs(), "prompts: &p [*p]\n", "prompts: &p {x: *p}\n"])
def test_a_yaml_import_with_aliases_answers_4xx_and_writes_nothing(seeded, document):
    before = _counts()
    response = seeded.post("/api/v1/prompts/import", data=document, content_type="application/x-yaml")
    assert 400 <= response.status_code < 500
    assert set(response.get_json()["error"]) == {"code", "message", "details"}
    assert _counts() == before
