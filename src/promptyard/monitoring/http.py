"""The HTTP side of monitoring: a request id on every request (X-Request-ID), one log line and metrics per request,
and GET /metrics (auth like any read: Prometheus sends a viewer key where auth is on)."""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, current_app, g, request

from promptyard.monitoring import metrics

log = logging.getLogger("promptyard.requests")
HEADER = "X-Request-ID"
# A caller's own id is kept when it looks like one (a proxy's or a client's); anything else gets a fresh id.
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id() -> str | None:
    """The current request's id (for log lines written while handling it)."""
    return g.get("request_id")


def init_app(app: Flask) -> None:
    app.before_request(_start)
    app.after_request(_finish)
    app.add_url_rule("/metrics", "metrics", _metrics_view, methods=["GET"])


def _start() -> None:
    incoming = request.headers.get(HEADER, "")
    g.request_id = incoming if _VALID_ID.match(incoming) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _finish(response: Response) -> Response:
    rid = g.get("request_id") or uuid.uuid4().hex
    seconds = time.perf_counter() - g.get("request_started", time.perf_counter())
    # The rule, not the path: /api/v1/prompts/<name> is one series, however many prompts there are.
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    response.headers[HEADER] = rid
    metrics.observe_request(request.method, route, response.status_code, seconds)
    log.info("%s %s %s", request.method, request.path, response.status_code, extra={
        "request_id": rid, "method": request.method, "path": request.path, "route": route,
        "status": response.status_code, "duration_ms": round(seconds * 1000, 2),
        "remote_addr": request.headers.get("X-Real-IP") or request.remote_addr,
    })
    return response


def _refresh_scrape_gauges() -> None:
    """Gauges read when scraped rather than kept up to date on every write (the cache's size)."""
    cache = current_app.extensions.get("promptyard.execution.cache")
    if cache is None:
        return
    try:
        entries, _, _ = cache.counts()
    except Exception:  # noqa: BLE001 - a cache that is down must not take /metrics down with it
        log.warning("could not count the response cache's entries for /metrics", exc_info=True)
        return
    metrics.CACHE_ENTRIES.set(entries)


def _metrics_view() -> Response:
    body, content_type = metrics.render(_refresh_scrape_gauges)
    return Response(body, mimetype=None, content_type=content_type)
