"""Guards every request passes before its view runs, so that endpoints added later are covered without doing
anything: JSON bodies of bounded depth and storable text, path ids and names that can exist, query text without NUL.

A string the database cannot store (a lone UTF-16 surrogate such as "\\ud800" on any backend, a NUL character on
PostgreSQL) and JSON nested deeper than Python can walk would otherwise fail deep inside a service as a 500.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Flask, json, request
from flask.wrappers import Request

from promptyard.api.bodies import MAX_DB_INT
from promptyard.errors import NotFound, Unprocessable

# Deeper than any real params/variables/messages document; far below Python's recursion limit.
MAX_JSON_DEPTH = 64
# NUL and the UTF-16 surrogate range: neither encodes to UTF-8 text PostgreSQL (or SQLite, for surrogates) stores.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class InvalidText(Unprocessable):
    code = "invalid_text"


def check_json_value(value: Any, where: str = "") -> None:
    """Raise a 422 for JSON nested deeper than MAX_JSON_DEPTH or holding a NUL or a lone surrogate (keys too)."""
    stack: list[tuple[Any, int, str]] = [(value, 1, where)]
    # YAML anchors let one list appear many times (a "billion laughs" document) or inside itself: each
    # container is checked once, so the walk is as long as the parsed text, never exponential or endless.
    seen: set[int] = set()
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            _check_text(item, path or "(body)")
            continue
        if not isinstance(item, (dict, list)) or id(item) in seen:
            continue
        seen.add(id(item))
        if depth > MAX_JSON_DEPTH:
            raise Unprocessable(
                f"The JSON is nested more than {MAX_JSON_DEPTH} levels deep (at '{path or '(body)'}').",
                code="json_too_deep",
                details={"field": path, "max_depth": MAX_JSON_DEPTH},
            )
        if isinstance(item, dict):
            for key, child in item.items():
                child_path = _join(path, key) if isinstance(key, str) and len(path) < 200 else path
                _check_text(key, child_path or "(body)")
                stack.append((child, depth + 1, child_path))
        else:
            stack.extend((child, depth + 1, f"{path}[{i}]" if len(path) < 200 else path)
                         for i, child in enumerate(item))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check_text(text: str, where: str) -> None:
    found = _UNSTORABLE.search(text)
    if found is None:
        return
    char = found.group()
    what = "a NUL character" if char == "\x00" else f"a lone surrogate (U+{ord(char):04X})"
    raise InvalidText(
        f"'{where}' contains {what}, which cannot be stored: send valid Unicode text without NUL.",
        details={"field": where},
    )


class _GuardedJSON:
    """The JSON module request bodies are parsed with: the app's, then the depth and text checks."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return self._module.dumps(obj, **kwargs)

    def loads(self, data: str | bytes, **kwargs: Any) -> Any:
        try:
            value = self._module.loads(data, **kwargs)
        except RecursionError:
            raise Unprocessable(
                f"The JSON is nested more than {MAX_JSON_DEPTH} levels deep.",
                code="json_too_deep",
                details={"max_depth": MAX_JSON_DEPTH},
            ) from None
        check_json_value(value)
        return value


class GuardedRequest(Request):
    """A request whose get_json() refuses what no endpoint can store (see check_json_value).

    Flask sets `request.json_module = app.json` on each request; the property keeps that module, wrapped."""

    @property
    def json_module(self) -> _GuardedJSON:  # type: ignore[override]
        return self.__dict__.get("_guarded_json") or _GuardedJSON(json)

    @json_module.setter
    def json_module(self, module: Any) -> None:
        self.__dict__["_guarded_json"] = _GuardedJSON(module)


def check_url() -> None:
    """404 for path ids beyond any row's id or names with a NUL; 422 for query values with NUL or surrogates."""
    for name, value in (request.view_args or {}).items():
        if isinstance(value, int) and not 0 <= value <= MAX_DB_INT:
            raise NotFound(f"Nothing has the {name} {value}: ids run up to {MAX_DB_INT}.",
                           details={"field": name})
        if isinstance(value, str) and _UNSTORABLE.search(value):
            raise NotFound(f"Nothing has that {name}: it contains a NUL character.", details={"field": name})
    for name, value in request.args.items(multi=True):
        _check_text(name, name)
        _check_text(value, name)


def init_app(app: Flask) -> None:
    app.request_class = GuardedRequest
    app.before_request(check_url)
