"""Rate limits per API key (per address when no key is sent): memory storage, or Redis when REDIS_URL is set."""

from __future__ import annotations

import hashlib
import time

from flask import Flask, Response, current_app, request
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from limits import parse_many
from werkzeug.exceptions import RequestEntityTooLarge

from promptyard.api.errors import error_response

EXEMPT_ENDPOINTS = {"health.healthz", "static"}


def rate_limit_key() -> str:
    """The bucket a request counts against: its bearer key (hashed, never stored plain), else its address."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and secret.strip():
        return "key:" + hashlib.sha256(secret.strip().encode()).hexdigest()[:32]
    return "addr:" + (request.remote_addr or "unknown")


def reject_oversized_body() -> None:
    """413 for any declared body over MAX_CONTENT_LENGTH, before a view decides whether to read it."""
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if limit is not None and (request.content_length or 0) > limit:
        raise RequestEntityTooLarge()


def init_app(app: Flask) -> None:
    """Refuse oversized bodies, then attach a limiter of its own to `app` (own counters and settings)."""
    app.before_request(reject_oversized_body)
    limit = str(app.config.get("PROMPTYARD_RATE_LIMIT") or "").strip()
    if not limit or limit.lower() == "off":
        return
    try:
        parse_many(limit)
    except ValueError as exc:
        raise ValueError(
            f"PROMPTYARD_RATE_LIMIT '{limit}' is not a rate limit; write it like '600 per minute' or '10/second'."
        ) from exc
    limiter = Limiter(
        rate_limit_key,
        app=app,
        # One budget across all endpoints per caller, not one per endpoint.
        application_limits=[limit],
        storage_uri=app.config.get("REDIS_URL") or "memory://",
        key_prefix=app.config.get("PROMPTYARD_RATE_LIMIT_PREFIX") or "promptyard",
        # A Redis outage should not take the API down: count in memory until it is back.
        swallow_errors=True,
        in_memory_fallback_enabled=True,
    )
    limiter.request_filter(lambda: request.endpoint in EXEMPT_ENDPOINTS)
    app.extensions["promptyard.limiter"] = limiter
    app.register_error_handler(RateLimitExceeded, _too_many_requests)


def _too_many_requests(exc: RateLimitExceeded) -> Response:
    limiter: Limiter = current_app.extensions["promptyard.limiter"]
    current = limiter.current_limit
    retry_after = max(1, int(current.reset_at - time.time())) if current is not None else 1
    response = error_response(
        429,
        "rate_limited",
        f"Too many requests: the limit is {exc.limit.limit}. Try again in {retry_after} s.",
        {"limit": str(exc.limit.limit), "retry_after": retry_after},
    )
    response.headers["Retry-After"] = str(retry_after)
    return response
