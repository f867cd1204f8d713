"""Limits on input: oversized bodies (413) and malformed JSON (400), always in the error shape."""

from __future__ import annotations

import pytest

from promptyard.db.models import ApiKey


@pytest.fixture
def app_config():
    return {"PROMPTYARD_MAX_BODY_BYTES": 1024}


def test_max_content_length_comes_from_the_setting(app):
    assert app.config["MAX_CONTENT_LENGTH"] == 1024


def test_oversized_body_is_413_and_changes_nothing(app, client):
    response = client.post("/api/v1/keys", json={"role": "viewer", "name": "x" * 5000})
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "payload_too_large" and "1024" in error["message"]
    assert ApiKey.query.count() == 0


def test_oversized_body_of_any_type_is_413(client):
    response = client.post("/api/v1/keys", data=b"\x00" * 4096, content_type="application/octet-stream")
    assert response.status_code == 413
    assert set(response.get_json()["error"]) == {"code", "message", "details"}


@pytest.mark.parametrize("body", ["{not json", "", "null", "[]", "42", '{"role": "viewer",}', "\xff\xfe"])
def test_malformed_json_is_400(app, client, body):
    response = client.post("/api/v1/keys", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "malformed_request"
    assert ApiKey.query.count() == 0


def test_valid_json_with_wrong_content_is_422(client):
    response = client.post("/api/v1/keys", json={"role": "overlord"})
    assert response.status_code == 422
    assert response.get_json()["error"]["details"]["errors"][0]["field"] == "role"


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_json_body_without_its_content_type_says_what_is_missing(app, client, content_type):
    response = client.post("/api/v1/keys", data='{"role": "viewer"}', content_type=content_type)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "malformed_request" and "Content-Type: application/json" in error["message"]
    assert ApiKey.query.count() == 0
