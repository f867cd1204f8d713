"""Structured logs: one JSON object a line for machines, `time level logger: message key=value` on a terminal.

Fields passed with `extra={...}` become keys of the JSON line (request_id, route, status, execution_id...).
PROMPTYARD_LOG_FORMAT=json|text forces a format; unset, it follows whether stderr is a terminal.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime, timezone
from typing import IO, Any

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
HANDLER_NAME = "promptyard-structured"


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The `extra=` fields of a record."""
    return {key: value for key, value in vars(record).items() if key not in _STANDARD and not key.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the extra fields, and exc_info when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **record_fields(record),
        }
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """For a person at a terminal: the same fields, as key=value after the message."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        extras = " ".join(f"{key}={value}" for key, value in record_fields(record).items())
        text = f"{when} {record.levelname:<7} {record.name}: {record.getMessage()}" + (f"  {extras}" if extras else "")
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def choose_format(stream: IO[str], setting: str | None = None) -> str:
    """'json' or 'text': the setting when it names one, else text on a terminal and JSON elsewhere."""
    setting = (setting or os.environ.get("PROMPTYARD_LOG_FORMAT") or "auto").lower()
    if setting in ("json", "text"):
        return setting
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a CLI test runner swaps it, then closes its own)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: IO[str]) -> None:
        pass


def configure_logging(stream: IO[str] | None = None, fmt: str | None = None, level: int = logging.INFO) -> str:
    """Install one handler on the root logger (replacing an earlier one of ours); returns the format chosen.

    Without `stream`, lines go to the process's stderr."""
    chosen = choose_format(stream or sys.stderr, fmt)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream) if stream is not None else _CurrentStderr()
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    return chosen
