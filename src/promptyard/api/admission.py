"""Backpressure that answers: writes (generations above all) may hold only some of the server's request threads.

A generation can hold a request thread for seconds or minutes (waiting in its model's queue, then generating or
streaming). Were every thread allowed to, one busy model would leave no thread for /healthz or a read, and excess
requests would wait in the server's own backlog instead of being told to come back. So requests that are not
reads (every POST/PUT/PATCH/DELETE, and any view marked with @heavy) are admitted only while fewer than
`threads - reserved` of them are in flight; beyond that they get 429 with Retry-After at once. Reads and /healthz
never pass this gate, so `reserved` threads (a quarter of them, at least 2) are always theirs.

The gate needs the server's thread count: create_server() sets PROMPTYARD_SERVER_THREADS; another WSGI server
can set it in the config. Unset (the test client, an embedding that never serves), there is no gate.
"""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

from flask import Flask, Response, current_app, g, request

from promptyard.errors import TooManyRequests

F = TypeVar("F", bound=Callable)

EXEMPT_ENDPOINTS = {"health.healthz", "static"}
READ_METHODS = {"GET", "HEAD", "OPTIONS"}
EXTENSION = "promptyard.admission"


def heavy(view: F) -> F:
    """Mark a read as heavy: it passes the admission gate like a write (e.g. a long export)."""
    view.admission_heavy = True  # type: ignore[attr-defined]
    return view


def reserved_threads(threads: int) -> int:
    """Threads kept for reads and health: a quarter, at least 2, and never all of them."""
    return min(max(2, threads // 4), threads - 1)


class AdmissionGate:
    """At most `capacity` heavy requests in flight; the rest are refused, never queued."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self.in_flight = 0
        self._lock = threading.Lock()

    def try_enter(self) -> bool:
        with self._lock:
            if self.in_flight >= self.capacity:
                return False
            self.in_flight += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1


class _Pass:
    """One admitted request's place in the gate, given back exactly once."""

    def __init__(self, gate: AdmissionGate) -> None:
        self._gate = gate
        self._left = False
        self.attached = False

    def leave(self) -> None:
        if not self._left:
            self._left = True
            self._gate.leave()


def gate_for(app: Flask) -> AdmissionGate | None:
    threads = app.config.get("PROMPTYARD_SERVER_THREADS")
    if not threads:
        return None
    gate = app.extensions.get(EXTENSION)
    if gate is None or gate.threads != threads:
        gate = AdmissionGate(int(threads) - reserved_threads(int(threads)))
        gate.threads = threads  # type: ignore[attr-defined]
        app.extensions[EXTENSION] = gate
    return gate


def _is_heavy() -> bool:
    if request.endpoint in EXEMPT_ENDPOINTS or request.endpoint is None:
        return False
    view = current_app.view_functions.get(request.endpoint)
    return request.method not in READ_METHODS or bool(getattr(view, "admission_heavy", False))


def admit() -> None:
    gate = gate_for(current_app)
    if gate is None or not _is_heavy():
        return
    if not gate.try_enter():
        raise TooManyRequests(
            f"The server is busy: {gate.capacity} requests that write or generate are already in flight "
            f"(the other threads are kept for reads). Try again shortly.",
            retry_after=1.0,
            code="server_busy",
            details={"in_flight": gate.in_flight, "capacity": gate.capacity},
        )
    g.admission_pass = _Pass(gate)


def hold_until_sent(response: Response) -> Response:
    """Keep the place until the whole body is sent (a stream holds its thread until its last event)."""
    admitted: _Pass | None = g.get("admission_pass")
    if admitted is not None:
        admitted.attached = True
        response.call_on_close(admitted.leave)
    return response


def leave_if_never_sent(exc: BaseException | None) -> None:
    admitted: _Pass | None = g.get("admission_pass")
    if admitted is not None and not admitted.attached:
        admitted.leave()


def init_app(app: Flask) -> None:
    app.before_request(admit)
    app.after_request(hold_until_sent)
    app.teardown_request(leave_if_never_sent)
