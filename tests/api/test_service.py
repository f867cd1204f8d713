"""The service endpoints, the error shape and the OpenAPI document."""

from __future__ import annotations


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_openapi_document_lists_the_api(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    document = response.get_json()
    assert document["openapi"].startswith("3.")
    assert "/healthz" in document["paths"]
    assert "/api/v1/keys" in document["paths"]


def test_docs_page_is_served(client):
    response = client.get("/api/docs", follow_redirects=True)
    assert response.status_code == 200
    assert b"swagger" in response.data.lower()


def test_unknown_endpoint_uses_the_error_shape(client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_wrong_method_uses_the_error_shape(client):
    response = client.put("/healthz")
    assert response.status_code == 405
    assert set(response.get_json()["error"]) == {"code", "message", "details"}
