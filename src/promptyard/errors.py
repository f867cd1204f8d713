"""Typed errors: one class per failure kind, each with one HTTP status and one JSON shape."""

from __future__ import annotations

from typing import Any


class PromptyardError(Exception):
    """Base error; rendered as {"error": {"code", "message", "details"}} with `status`."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(PromptyardError):
    status, code = 400, "bad_request"


class Unauthorized(PromptyardError):
    status, code = 401, "unauthorized"


class Forbidden(PromptyardError):
    status, code = 403, "forbidden"


class NotFound(PromptyardError):
    status, code = 404, "not_found"


class Conflict(PromptyardError):
    status, code = 409, "conflict"


class PayloadTooLarge(PromptyardError):
    status, code = 413, "payload_too_large"


class Unprocessable(PromptyardError):
    status, code = 422, "unprocessable"


class TooManyRequests(PromptyardError):
    status, code = 429, "too_many_requests"

    def __init__(self, message: str, *, retry_after: float = 1.0, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class Unavailable(PromptyardError):
    status, code = 503, "backend_unavailable"
