"""Pull progress shared through Redis: a pull started by one API process is followed, and refused a second start,
from another (two apps with nothing in common but the database and Redis)."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from promptyard.db import db
from promptyard.errors import Conflict
from promptyard.models.shared_pulls import STALE_S, RedisPullRegistry
from tests.api.test_model_pulls import WeightsPlugin
from tests.conftest import make_app

pytestmark = pytest.mark.redis


@pytest.fixture
def two_processes(postgres_url, redis_url, tmp_path):
    """Two API apps on the same PostgreSQL database and Redis, like two gunicorn workers."""
    from promptyard.plugins.registry import get_registry

    prefix = f"test-pulls:{uuid.uuid4().hex}:"
    apps = [make_app(postgres_url, tmp_path / f"home{i}", REDIS_URL=redis_url, PROMPTYARD_PULLS_PREFIX=prefix)
            for i in range(2)]
    with apps[0].app_context():
        db.create_all()
    for app in apps:
        with app.app_context():
            get_registry().register("weights", WeightsPlugin, version="1.0")
    WeightsPlugin.gate = threading.Event()
    yield [app.test_client() for app in apps]
    WeightsPlugin.gate.set()
    WeightsPlugin.gate = None
    with apps[0].app_context():
        db.session.remove()
        from sqlalchemy import text

        names = ", ".join(f'"{t.name}"' for t in db.metadata.sorted_tables)
        with db.engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    for app in apps:
        with app.app_context():
            db.engine.dispose()


def test_a_pull_started_on_one_process_is_seen_and_guarded_on_another(two_processes):
    first, second = two_processes
    assert first.post("/api/v1/models", json={"name": "shared-w", "plugin": "weights",
                                              "source": "org/w"}).status_code == 201
    assert first.post("/api/v1/models/shared-w/pull").status_code == 202
    seen = second.get("/api/v1/models/shared-w/pull").get_json()
    assert seen["state"] == "running" and seen["started_at"]
    refused = second.post("/api/v1/models/shared-w/pull")
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "pull_running"
    WeightsPlugin.gate.set()
    for _ in range(600):
        ended = second.get("/api/v1/models/shared-w/pull").get_json()
        if ended["state"] != "running":
            break
        time.sleep(0.05)
    assert ended["state"] == "succeeded" and (ended["downloaded_bytes"], ended["total_bytes"]) == (2048, 2048)
    assert ended["finished_at"] >= ended["started_at"]
    # Ended: the other process may pull it again.
    WeightsPlugin.gate = threading.Event()
    assert second.post("/api/v1/models/shared-w/pull").status_code == 202
    WeightsPlugin.gate.set()


def test_a_stale_running_pull_does_not_block_forever(redis_url):
    import redis

    registry = RedisPullRegistry(redis.Redis.from_url(redis_url), prefix=f"test-pulls:{uuid.uuid4().hex}:")
    registry.begin("m")
    with pytest.raises(Conflict):
        registry.begin("m")
    # Its process died long ago: no update for longer than STALE_S.
    raw = json.loads(registry.client.get(registry._key("m")))
    raw["updated"] = time.time() - STALE_S - 1
    registry.client.set(registry._key("m"), json.dumps(raw))
    assert registry.begin("m")["state"] == "running"
    assert registry.get("never-pulled")["state"] == "idle"
