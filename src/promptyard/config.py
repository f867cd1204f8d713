"""Configuration: typed defaults, overridden by the instance folder, the environment and the caller."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass
class Settings:
    """Every setting promptyard reads; each field's metadata carries its help text."""

    PROMPTYARD_HOME: str = field(
        default="instance", metadata={"help": "Instance folder: SQLite file, logs, model cache index."}
    )
    DATABASE_URL: str | None = field(
        default=None, metadata={"help": "SQLAlchemy URL; default SQLite in the instance folder."}
    )
    REDIS_URL: str | None = field(
        default=None, metadata={"help": "Redis for the response cache and rate-limit storage."}
    )
    PROMPTYARD_BROKER_URL: str | None = field(
        default=None, metadata={"help": "Celery broker; unset means in-process background jobs."}
    )
    PROMPTYARD_ADMIN_KEY: str | None = field(
        default=None, metadata={"help": "Bootstrap admin API key (for example a Space secret)."}
    )
    PROMPTYARD_BIND_HOST: str = field(
        default="127.0.0.1", metadata={"help": "Host the API is bound to; auth is off only on loopback."}
    )
    PROMPTYARD_MAX_BODY_BYTES: int = field(
        default=2 * 1024 * 1024, metadata={"help": "Largest request body accepted (413 beyond)."}
    )
    PROMPTYARD_RATE_LIMIT: str = field(
        default="600 per minute",
        metadata={"help": "Per-key (or per-address without a key) rate limit, e.g. '600 per minute'; 'off' disables."},
    )
    PROMPTYARD_RATE_LIMIT_PREFIX: str = field(
        default="promptyard", metadata={"help": "Prefix of the rate-limit counters in Redis (share it across workers)."}
    )
    PROMPTYARD_MODEL_MEMORY_BYTES: int | None = field(
        default=None,
        metadata={"help": "Memory budget in bytes for loaded models (least recently used unloaded beyond, and before "
                          "loading one that would not fit); unset: 85% of the GPU's memory with CUDA, else half "
                          "the RAM (or of the container's limit)."},
    )
    PROMPTYARD_CACHE_TTL: int = field(
        default=7 * 24 * 3600, metadata={"help": "Seconds a cached response lives; 0 means no expiry."}
    )
    PROMPTYARD_CACHE_MAX_ENTRIES: int = field(
        default=10000, metadata={"help": "Most cached responses kept; the least recently used are evicted."}
    )
    PROMPTYARD_QUEUE_CONCURRENCY: int = field(
        default=1, metadata={"help": "Generations run at once per model."}
    )
    PROMPTYARD_QUEUE_SIZE: int = field(
        default=16, metadata={"help": "Requests waiting per model before new ones get 429."}
    )
    PROMPTYARD_EVAL_BATCH_SIZE: int = field(
        default=64, metadata={"help": "Evaluation samples generated and saved together (a backend's batch call)."}
    )
    PROMPTYARD_EVAL_RETRIES: int = field(
        default=3, metadata={"help": "Further attempts at an evaluation sample after a transient failure."}
    )
    PROMPTYARD_EVAL_RETRY_BACKOFF: float = field(
        default=2.0, metadata={"help": "Seconds before an evaluation sample's first retry; doubles each time."}
    )
    PROMPTYARD_EVAL_MAX_RETRY_WAIT: float = field(
        default=60.0, metadata={"help": "Longest wait before a retry, a server's Retry-After included."}
    )
    PROMPTYARD_EVAL_MAX_FAILURES_IN_A_ROW: int = field(
        default=5, metadata={"help": "Backend failures in a row (after retries) that stop an evaluation run."}
    )
    PROMPTYARD_LEASE_TTL_S: int = field(
        default=30,
        metadata={"help": "Seconds an evaluation run's owner keeps its lease without a heartbeat; another process "
                          "takes a run over only after its owner has been silent this long."},
    )
    PROMPTYARD_SERVER_THREADS: int | None = field(
        default=None,
        metadata={"help": "Request threads of the WSGI server (set by `promptyard up --threads`); writes and "
                          "generations may hold all but a quarter of them (at least 2), beyond that 429."},
    )
    PROMPTYARD_DEFAULT_MODEL: str | None = field(
        default=None,
        metadata={"help": "Model a prompt runs on over /v1 when its version's params name no 'model'."},
    )


ENV_KEYS = [f.name for f in fields(Settings)]


def defaults() -> dict[str, Any]:
    return {f.name: f.default for f in fields(Settings)}


def from_environment() -> dict[str, Any]:
    """The settings the environment sets, converted to their field types."""
    values: dict[str, Any] = {}
    for f in fields(Settings):
        raw = os.environ.get(f.name)
        if raw in (None, ""):
            continue
        if f.type in ("int", int, "int | None"):
            try:
                values[f.name] = int(raw)
            except ValueError:
                raise ValueError(f"{f.name} must be a whole number, not {raw!r}.") from None
        elif f.type in ("float", float, "float | None"):
            try:
                values[f.name] = float(raw)
            except ValueError:
                raise ValueError(f"{f.name} must be a number, not {raw!r}.") from None
        else:
            values[f.name] = raw
    return values


def instance_home(overrides: dict[str, Any] | None = None) -> Path:
    """The instance folder: the caller's, else the environment's, else ./instance."""
    home = (overrides or {}).get("PROMPTYARD_HOME") or os.environ.get("PROMPTYARD_HOME") or Settings.PROMPTYARD_HOME
    return Path(home).resolve()


def default_database_url(home: str) -> str:
    return f"sqlite:///{Path(home) / 'promptyard.db'}"


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")
