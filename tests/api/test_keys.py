"""The keys endpoints: shown once, stored hashed, admin only, revocation at once, garbage bodies."""

from __future__ import annotations

import hashlib

import pytest

from promptyard import keys
from promptyard.db.models import ApiKey


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_key_is_shown_once_and_stored_hashed(client):
    response = client.post("/api/v1/keys", json={"role": "editor", "name": "ci"})
    assert response.status_code == 201
    body = response.get_json()
    secret = body["key"]
    assert secret.startswith("pyd_") and len(secret) > 40
    assert (body["role"], body["name"]) == ("editor", "ci")
    row = ApiKey.query.one()
    assert row.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in (row.key_hash, row.prefix, row.name)
    # Auth is now on: use an admin key to list, and the secret is never listed again.
    _, admin = keys.create_key("admin")
    listing = client.get("/api/v1/keys", headers=bearer(admin)).get_json()
    assert listing["total"] == 2
    assert all("key" not in item for item in listing["items"])
    assert secret not in str(listing)


def test_revoked_key_stops_working_at_once(client):
    _, admin = keys.create_key("admin")
    row, editor = keys.create_key("editor")
    assert client.get("/api/v1/keys/", headers=bearer(editor)).status_code in (403, 404)
    assert client.get("/api/openapi.json", headers=bearer(editor)).status_code == 200
    assert client.delete(f"/api/v1/keys/{row.id}", headers=bearer(admin)).status_code == 204
    response = client.get("/api/openapi.json", headers=bearer(editor))
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "invalid_api_key"
    assert client.delete(f"/api/v1/keys/{row.id}", headers=bearer(admin)).status_code == 404


def test_revoking_the_last_key_keeps_auth_on(client):
    row, admin = keys.create_key("admin")
    assert client.delete(f"/api/v1/keys/{row.id}", headers=bearer(admin)).status_code == 204
    assert client.get("/api/v1/keys", headers=bearer(admin)).status_code == 401
    assert client.get("/api/v1/keys").status_code == 401


def test_unknown_key_id_is_404(client):
    response = client.delete("/api/v1/keys/999")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "key_not_found"


@pytest.mark.parametrize(
    "body, status",
    [
        ({"role": "superuser"}, 422),
        ({}, 422),
        ({"role": "viewer", "extra": 1}, 422),
        ({"role": "viewer", "name": "x" * 101}, 422),
        ({"role": 3}, 422),
    ],
)
def test_bad_key_bodies_are_refused_and_nothing_is_created(client, body, status):
    response = client.post("/api/v1/keys", json=body)
    assert response.status_code == status
    assert set(response.get_json()["error"]) == {"code", "message", "details"}
    assert ApiKey.query.count() == 0


@pytest.mark.parametrize("data", ["{", "[]", "role=viewer"])
def test_garbage_key_bodies_are_400(client, data):
    response = client.post("/api/v1/keys", data=data, content_type="application/json")
    assert response.status_code == 400
    assert ApiKey.query.count() == 0


def test_create_key_service_refuses_unknown_roles(app):
    from promptyard.errors import Unprocessable

    with pytest.raises(Unprocessable):
        keys.create_key("root")
    assert ApiKey.query.count() == 0
