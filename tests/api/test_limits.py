"""Rate limits: per API key, per address without a key, 429 with Retry-After, memory and real Redis storage."""

from __future__ import annotations

import uuid

import pytest

from promptyard import keys
from promptyard.db import db
from tests.conftest import make_app


@pytest.fixture
def app_config():
    return {"PROMPTYARD_RATE_LIMIT": "3 per minute"}


def test_exceeding_the_limit_gives_429_with_retry_after(client):
    statuses = [client.get("/api/v1/keys").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = client.get("/api/v1/keys")
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    error = response.get_json()["error"]
    assert error["code"] == "rate_limited" and "3 per 1 minute" in error["message"]


def test_the_budget_is_shared_across_endpoints(client):
    client.get("/api/v1/keys")
    client.post("/api/v1/keys", json={"role": "viewer"})
    client.get("/api/openapi.json")
    assert client.get("/api/v1/keys").status_code == 429


def test_each_key_has_its_own_budget(app, client):
    _, first = keys.create_key("admin")
    _, second = keys.create_key("admin")
    for _ in range(3):
        assert client.get("/api/v1/keys", headers={"Authorization": f"Bearer {first}"}).status_code == 200
    assert client.get("/api/v1/keys", headers={"Authorization": f"Bearer {first}"}).status_code == 429
    assert client.get("/api/v1/keys", headers={"Authorization": f"Bearer {second}"}).status_code == 200


def test_addresses_have_their_own_budget_when_no_key_is_sent(client):
    for _ in range(3):
        client.get("/api/v1/keys", environ_base={"REMOTE_ADDR": "10.0.0.1"})
    assert client.get("/api/v1/keys", environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 429
    assert client.get("/api/v1/keys", environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 200


def test_healthz_is_never_limited(client):
    assert {client.get("/healthz").status_code for _ in range(10)} == {200}


@pytest.mark.redis
def test_redis_storage_is_shared_between_workers(redis_url, tmp_path):
    """Two apps (two workers) with the same Redis and prefix share one budget."""
    config = {
        "PROMPTYARD_RATE_LIMIT": "3 per minute",
        "REDIS_URL": redis_url,
        "PROMPTYARD_RATE_LIMIT_PREFIX": f"shared-{uuid.uuid4().hex}",
    }
    url = f"sqlite:///{tmp_path / 'r.db'}"
    first = make_app(url, tmp_path / "a", **config)
    second = make_app(url, tmp_path / "b", **config)
    with first.app_context():
        db.create_all()
    first_client, second_client = first.test_client(), second.test_client()
    assert [first_client.get("/api/openapi.json").status_code for _ in range(2)] == [200, 200]
    assert second_client.get("/api/openapi.json").status_code == 200
    response = second_client.get("/api/openapi.json")
    assert response.status_code == 429 and "Retry-After" in response.headers
    assert first_client.get("/api/openapi.json").status_code == 429

    import redis

    stored = redis.Redis.from_url(redis_url).keys(f"*{config['PROMPTYARD_RATE_LIMIT_PREFIX']}*")
    assert stored, "the counters live in Redis"


def test_a_bad_limit_setting_fails_at_start_with_a_clear_message(tmp_path):
    with pytest.raises(ValueError, match="PROMPTYARD_RATE_LIMIT"):
        make_app(f"sqlite:///{tmp_path / 'x.db'}", tmp_path / "h", PROMPTYARD_RATE_LIMIT="lots")


def test_off_disables_limits(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'x.db'}", tmp_path / "h", PROMPTYARD_RATE_LIMIT="off")
    with app.app_context():
        db.create_all()
    client = app.test_client()
    assert {client.get("/api/openapi.json").status_code for _ in range(5)} == {200}
