"""One JSON error shape everywhere: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Flask, Response, jsonify, request
from pydantic import ValidationError
from sqlalchemy.exc import DataError, StatementError
from werkzeug.exceptions import HTTPException

from promptyard.errors import PromptyardError, TooManyRequests

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
    503: "backend_unavailable",
}


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None) -> Response:
    response = jsonify({"error": {"code": code, "message": message, "details": details or {}}})
    response.status_code = status
    return response


# Parts of a pydantic error location that name a member of a union type ("cache.bool",
# "cache.literal['always']"), not a field: a client should see the field alone.
_UNION_MEMBER_TAG = re.compile(r"^(bool|int|float|str|bytes|none|list|dict|function-.*|[A-Z].*|.*\[.*)$")


def _field(location: tuple) -> str:
    parts = [str(part) for part in location
             if part not in ("body", "query", "path") and not (isinstance(part, str) and _UNION_MEMBER_TAG.match(part))]
    return ".".join(parts) or "(body)"


def describe_validation_errors(errors: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Turn pydantic errors into one readable sentence and a list of {field, problem} (one entry per field: the
    problems of a union's members are joined with "or")."""
    by_field: dict[str, list[str]] = {}
    for err in errors:
        if err.get("type") == "extra_forbidden":
            problem = "is not a known field"
        elif err.get("type") == "missing":
            problem = "is required"
        else:
            problem = err.get("msg", "is invalid")
        found = by_field.setdefault(_field(err.get("loc", ())), [])
        if problem not in found:
            found.append(problem)
    problems = [{"field": field, "problem": " or ".join(found)} for field, found in by_field.items()]
    sentence = "; ".join(f"'{p['field']}' {p['problem']}" for p in problems[:5])
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return f"The request is invalid: {sentence}{more}.", problems


def validation_error_callback(exc: ValidationError) -> Response:
    """flask-openapi3 calls this when a request does not match its pydantic schema."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    if any(err.get("type") in ("json_invalid", "model_attributes_type") for err in errors) or _is_not_object(errors):
        if not request.is_json:  # the body may be fine JSON, sent without saying so
            return error_response(
                400, "malformed_request",
                f"The request body must be JSON sent with the header 'Content-Type: application/json' "
                f"(got {request.content_type or 'no Content-Type'}).",
                {"content_type": request.content_type},
            )
        return error_response(400, "malformed_request", "The request body is not a valid JSON object.")
    message, problems = describe_validation_errors(errors)
    return error_response(422, "validation_error", message, {"errors": problems})


def _is_not_object(errors: list[dict[str, Any]]) -> bool:
    return any(err.get("type") == "model_type" and not err.get("loc") for err in errors)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(PromptyardError)
    def handle_promptyard_error(exc: PromptyardError) -> Response:
        response = error_response(exc.status, exc.code, exc.message, exc.details)
        if isinstance(exc, TooManyRequests):
            response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        return response

    @app.errorhandler(HTTPException)
    def handle_http_error(exc: HTTPException) -> Response:
        if exc.response is not None:  # already a full response (e.g. from the validation callback)
            return exc.response
        status = exc.code or 500
        message = {
            400: "The request is malformed (is the body valid JSON?).",
            404: "No such endpoint.",
            405: "This method is not allowed on this endpoint.",
            413: f"The request body is larger than the {app.config.get('MAX_CONTENT_LENGTH')} bytes allowed.",
            415: "Send the body as JSON with Content-Type: application/json.",
        }.get(status, exc.description or exc.name)
        response = error_response(status, HTTP_CODES.get(status, "http_error"), message)
        if status == 429:
            response.headers["Retry-After"] = "1"
        return response

    # Safety nets for bad input that got past a view's validation into a driver: the request is at fault, not the
    # server, so a 422 in the usual shape (with the transaction rolled back, so nothing is written).
    @app.errorhandler(OverflowError)
    def handle_overflow(exc: OverflowError) -> Response:
        _rollback()
        return error_response(422, "number_out_of_range",
                              "A number in the request is too large for the database to store or compare.")

    @app.errorhandler(DataError)
    def handle_data_error(exc: DataError) -> Response:
        _rollback()
        log.info("refused a value the database would not take: %s", exc.orig)
        return error_response(422, "invalid_value",
                              "A value in the request is out of the range or form the database accepts.")

    @app.errorhandler(StatementError)
    def handle_statement_error(exc: StatementError) -> Response:
        # A value that failed while being bound to a query (a date past year 9999 once in UTC, a huge int): the
        # driver wraps the OverflowError or UnicodeError; anything else is the server's own fault.
        if not isinstance(exc.orig, (OverflowError, UnicodeError)):
            return handle_unexpected(exc)
        _rollback()
        return error_response(422, "invalid_value",
                              "A value in the request is out of the range the database can store or compare.")

    @app.errorhandler(UnicodeError)
    def handle_unicode_error(exc: UnicodeError) -> Response:
        _rollback()
        return error_response(422, "invalid_text", "Text in the request is not valid Unicode (a lone surrogate?).")

    @app.errorhandler(RecursionError)
    def handle_recursion_error(exc: RecursionError) -> Response:
        _rollback()
        return error_response(422, "too_deep", "The request is nested too deeply to process.")

    @app.errorhandler(Exception)
    def handle_unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "Something went wrong on the server; it has been logged.")


def _rollback() -> None:
    from promptyard.db import db

    try:
        db.session.rollback()
    except Exception:  # noqa: BLE001 - the response matters more than a session that is already broken
        log.exception("rollback after a refused request failed")
