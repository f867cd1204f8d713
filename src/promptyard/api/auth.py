"""Bearer-key auth: off on a loopback bind with no keys, on otherwise; reads need viewer, writes editor."""

from __future__ import annotations

from typing import Callable, TypeVar

from flask import Flask, current_app, g, request

from promptyard.config import is_loopback
from promptyard.errors import Forbidden, Unauthorized
from promptyard.keys import Caller, any_keys, authenticate

F = TypeVar("F", bound=Callable)

PUBLIC_ENDPOINTS = {"health.healthz", "static"}
READ_METHODS = {"GET", "HEAD", "OPTIONS"}
KEYS_SEEN = "promptyard.auth.keys_seen"  # app.extensions flag: an API key exists (keys are only ever revoked)


def require_role(role: str) -> Callable[[F], F]:
    """Mark a view as needing at least `role` (the default is viewer to read, editor to write)."""

    def mark(view: F) -> F:
        view.required_role = role  # type: ignore[attr-defined]
        return view

    return mark


def auth_enabled() -> bool:
    """On for a non-loopback bind, a bootstrap admin key, or once any key has been created.

    Revoked keys count: revoking the last key must not switch auth off (and so let that key back in).
    Keys are never deleted, so once one is seen auth stays on for this app and the query is not repeated;
    while there is none, every request asks again (a key created by another process counts at once).
    """
    config = current_app.config
    if bool(config.get("PROMPTYARD_ADMIN_KEY")) or not is_loopback(config["PROMPTYARD_BIND_HOST"]):
        return True
    if current_app.extensions.get(KEYS_SEEN):
        return True
    if any_keys(include_revoked=True):
        current_app.extensions[KEYS_SEEN] = True
        return True
    return False


def current_caller() -> Caller:
    return g.get("caller") or Caller(role="admin", name="local")


def _required_role() -> str:
    view = current_app.view_functions.get(request.endpoint or "")
    explicit = getattr(view, "required_role", None)
    if explicit:
        return explicit
    return "viewer" if request.method in READ_METHODS else "editor"


def check_request() -> None:
    if request.endpoint in PUBLIC_ENDPOINTS or request.endpoint is None:
        return
    if not auth_enabled():
        g.caller = Caller(role="admin", name="local")
        return
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized(
            "An API key is required: send 'Authorization: Bearer <key>' (create one with 'promptyard keys create').",
            code="missing_api_key",
        )
    caller = authenticate(secret.strip(), current_app.config.get("PROMPTYARD_ADMIN_KEY"))
    if caller is None:
        raise Unauthorized("The API key is invalid or has been revoked.", code="invalid_api_key")
    needed = _required_role()
    if not caller.can(needed):
        raise Forbidden(
            f"This needs the '{needed}' role; your key has '{caller.role}'.",
            code="insufficient_role",
            details={"required": needed, "role": caller.role},
        )
    g.caller = caller


def init_app(app: Flask) -> None:
    app.before_request(check_request)
