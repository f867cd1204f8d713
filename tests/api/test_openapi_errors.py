"""The OpenAPI document describes the errors the API really sends: {"error": {code, message, details}}."""

from __future__ import annotations

import re

import jsonschema
import pytest

METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture
def document(client):
    return client.get("/api/openapi.json").get_json()


def _operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def _resolve(document, schema):
    name = schema["$ref"].rsplit("/", 1)[-1]
    return {**document["components"]["schemas"][name], "components": document["components"]}


def test_every_operation_declares_its_errors_in_the_real_shape(document):
    operations = list(_operations(document))
    assert len(operations) > 40
    assert "ValidationErrorModel" not in document["components"]["schemas"]
    for path, method, operation in operations:
        responses = operation["responses"]
        assert any(status.startswith("2") for status in responses), (method, path)
        for status in ("400", "401", "403", "404", "409", "413", "422", "429"):
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)


def _fill(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "999", path)


def test_the_errors_operations_answer_match_what_the_document_says(client, document):
    """Each operation, sent a bad request, answers a status its document lists, in the documented schema."""
    seen = 0
    for path, method, operation in _operations(document):
        url = _fill(path)
        if "requestBody" in operation:
            response = client.open(url, method=method.upper(), json={"not_a_field": [1]})
        elif "{" in path:
            response = client.open(url, method=method.upper())
        else:
            response = client.open(url + "?limit=-1&offset=-1", method=method.upper())
        if response.status_code < 400:
            continue
        status = str(response.status_code)
        assert status in operation["responses"], (method, path, status)
        schema = operation["responses"][status]["content"]["application/json"]["schema"]
        jsonschema.validate(response.get_json(), _resolve(document, schema))
        seen += 1
    assert seen > 30
