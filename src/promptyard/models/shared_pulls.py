"""Pull progress in Redis, shared by every API process and Celery worker (when REDIS_URL is set).

Same interface as pulls.PullRegistry. Each model's latest pull is one JSON string; starting a pull is atomic (a
Lua script), so two processes cannot both start one. A `running` pull not updated for STALE_S (its process died)
no longer blocks a new one.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from promptyard.db import utcnow
from promptyard.errors import Conflict

STALE_S = 900
# KEYS[1]: the pull's key; ARGV[1]: the new pull's JSON; ARGV[2]: now (epoch s); ARGV[3]: STALE_S.
_BEGIN = """
local current = redis.call('GET', KEYS[1])
if current then
  local pull = cjson.decode(current)
  if pull['state'] == 'running' and tonumber(ARGV[2]) - tonumber(pull['updated']) < tonumber(ARGV[3]) then
    return current
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return false
"""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class RedisPullRegistry:
    """Each model's latest pull, in Redis under `prefix`."""

    def __init__(self, client: Any, prefix: str = "promptyard:pulls:") -> None:
        self.client = client
        self.prefix = prefix
        self._begin = client.register_script(_BEGIN)

    def _key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def begin(self, name: str) -> dict[str, Any]:
        pull = {"model": name, "state": "running", "downloaded_bytes": 0, "total_bytes": None, "error": None,
                "started_at": _iso(utcnow()), "finished_at": None, "updated": time.time()}
        running = self._begin(keys=[self._key(name)], args=[json.dumps(pull), time.time(), STALE_S])
        if running:
            raise Conflict(f"Model '{name}' is already being pulled; follow it with GET /models/{name}/pull.",
                           code="pull_running", details={"model": name})
        return _public(pull)

    def _update(self, name: str, **changes: Any) -> None:
        # One writer per pull (the job that began it): a plain read-modify-write is enough.
        raw = self.client.get(self._key(name))
        pull = json.loads(raw) if raw else {"model": name, "started_at": None}
        pull.update(changes, updated=time.time())
        self.client.set(self._key(name), json.dumps(pull))

    def report(self, name: str, downloaded: int, total: int | None) -> None:
        self._update(name, downloaded_bytes=downloaded, total_bytes=total)

    def finish(self, name: str, error: dict[str, str] | None = None) -> None:
        self._update(name, state="failed" if error else "succeeded", error=error, finished_at=_iso(utcnow()))

    def get(self, name: str) -> dict[str, Any]:
        raw = self.client.get(self._key(name))
        if raw is None:
            return {"model": name, "state": "idle", "downloaded_bytes": 0, "total_bytes": None, "error": None,
                    "started_at": None, "finished_at": None}
        return _public(json.loads(raw))


def _public(pull: dict[str, Any]) -> dict[str, Any]:
    """The pull as the API shows it (without the bookkeeping field)."""
    keys = ("model", "state", "downloaded_bytes", "total_bytes", "error", "started_at", "finished_at")
    return {key: pull.get(key) for key in keys}


def create_registry(config: dict[str, Any]):
    """Redis when REDIS_URL is set (shared by processes), else this process's own registry."""
    url = config.get("REDIS_URL")
    if url:
        import redis

        return RedisPullRegistry(redis.Redis.from_url(url),
                                 prefix=config.get("PROMPTYARD_PULLS_PREFIX") or "promptyard:pulls:")
    from promptyard.models.pulls import PullRegistry

    return PullRegistry()
