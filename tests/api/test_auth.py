"""Auth: off on loopback with no keys, on otherwise; roles; the bootstrap admin key; /healthz is open."""

from __future__ import annotations

import pytest

from promptyard import keys
from tests.conftest import make_app
from tests.prompts.test_experiments import make_prompt

ARMS = [{"version": 1, "weight": 1}, {"version": 2, "weight": 1}]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_auth_is_off_on_loopback_with_no_keys(client):
    assert client.get("/api/v1/keys").status_code == 200
    assert client.post("/api/v1/keys", json={"role": "viewer"}).status_code == 201


def test_auth_turns_on_once_a_key_exists(client):
    keys.create_key("viewer")
    response = client.get("/api/v1/keys")
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "missing_api_key"


def test_a_key_made_while_auth_is_off_turns_it_on_at_the_next_request(client):
    assert client.get("/api/v1/keys").status_code == 200
    keys.create_key("viewer")  # as `promptyard keys create` in another process would
    assert client.get("/api/v1/keys").status_code == 401


def test_auth_stays_on_once_a_key_was_seen_even_if_the_rows_vanish(client):
    from sqlalchemy import delete

    from promptyard.db import db
    from promptyard.db.models import ApiKey

    keys.create_key("viewer")
    assert client.get("/api/v1/keys").status_code == 401
    db.session.execute(delete(ApiKey))  # promptyard never deletes keys; a hand-edited database must not open up
    db.session.commit()
    assert client.get("/api/v1/keys").status_code == 401


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Basic abc", "bearer nope", "Token x y"])
def test_missing_or_bad_credentials_are_401(client, header):
    keys.create_key("viewer")
    response = client.get("/api/openapi.json", headers={"Authorization": header})
    assert response.status_code == 401
    assert set(response.get_json()["error"]) == {"code", "message", "details"}


def test_healthz_never_needs_a_key(client):
    keys.create_key("viewer")
    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz", headers=bearer("garbage")).status_code == 200


def test_roles_viewer_reads_editor_writes_admin_manages_keys(client):
    make_prompt()
    _, viewer = keys.create_key("viewer")
    _, editor = keys.create_key("editor")
    _, admin = keys.create_key("admin")
    create = {"name": "exp", "prompt": "greet", "arms": ARMS}

    assert client.get("/api/v1/experiments", headers=bearer(viewer)).status_code == 200
    denied = client.post("/api/v1/experiments", json=create, headers=bearer(viewer))
    assert denied.status_code == 403
    assert denied.get_json()["error"]["details"] == {"required": "editor", "role": "viewer"}
    assert client.get("/api/v1/experiments", headers=bearer(viewer)).get_json()["total"] == 0

    assert client.post("/api/v1/experiments", json=create, headers=bearer(editor)).status_code == 201
    assert client.get("/api/v1/keys", headers=bearer(editor)).status_code == 403
    assert client.post("/api/v1/keys", json={"role": "admin"}, headers=bearer(editor)).status_code == 403

    assert client.get("/api/v1/keys", headers=bearer(admin)).status_code == 200
    assert client.post("/api/v1/keys", json={"role": "viewer"}, headers=bearer(admin)).status_code == 201
    assert client.post("/api/v1/experiments/exp/stop", headers=bearer(admin)).status_code == 200


@pytest.fixture
def admin_app(database_url, tmp_path):
    app = make_app(database_url, tmp_path / "home", PROMPTYARD_ADMIN_KEY="bootstrap-secret-123")
    from promptyard.db import db

    with app.app_context():
        db.create_all()
        yield app
        db.session.remove()
        db.drop_all()
        db.engine.dispose()


def test_bootstrap_admin_key_turns_auth_on_and_is_an_admin(admin_app):
    client = admin_app.test_client()
    assert client.get("/api/v1/keys").status_code == 401
    assert client.get("/api/v1/keys", headers=bearer("bootstrap-secret-1234")).status_code == 401
    created = client.post("/api/v1/keys", json={"role": "viewer"}, headers=bearer("bootstrap-secret-123"))
    assert created.status_code == 201
    viewer = created.get_json()["key"]
    assert client.get("/api/openapi.json", headers=bearer(viewer)).status_code == 200


def test_bootstrap_admin_key_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PROMPTYARD_ADMIN_KEY", "from-env-secret")
    app = make_app(f"sqlite:///{tmp_path / 'e.db'}", tmp_path / "home", PROMPTYARD_ADMIN_KEY=None)
    assert app.config["PROMPTYARD_ADMIN_KEY"] is None  # the caller's config wins over the environment
    from promptyard import create_app

    app = create_app({"PROMPTYARD_HOME": str(tmp_path / "h2"), "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'f.db'}"})
    from promptyard.db import db

    with app.app_context():
        db.create_all()
    client = app.test_client()
    assert client.get("/api/v1/keys").status_code == 401
    assert client.get("/api/v1/keys", headers=bearer("from-env-secret")).status_code == 200


@pytest.mark.parametrize("host, enabled", [("0.0.0.0", True), ("192.168.1.5", True), ("127.0.0.1", False),
                                           ("localhost", False), ("::1", False), ("::", True)])
def test_auth_follows_the_bind_host(database_url, tmp_path, host, enabled):
    app = make_app(database_url, tmp_path / "home", PROMPTYARD_BIND_HOST=host)
    from promptyard.db import db

    with app.app_context():
        db.create_all()
        try:
            status = app.test_client().get("/api/v1/keys").status_code
        finally:
            db.session.remove()
            db.drop_all()
            db.engine.dispose()
    assert status == (401 if enabled else 200)
