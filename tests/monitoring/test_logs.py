"""Structured logs: one JSON line per request with its request id (also in X-Request-ID), one per execution and
evaluation event, and a human-readable form on a terminal."""

from __future__ import annotations

import io
import json
import logging

import pytest

from promptyard.models.service import install_plugin
from promptyard.monitoring.logs import HANDLER_NAME, configure_logging
from promptyard.plugins.function import FunctionPlugin, prompt_text


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def captured():
    """Logs configured onto a StringIO (not a terminal, so JSON); the handler is removed afterwards."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    chosen = configure_logging(stream)
    yield chosen, stream
    for handler in list(root.handlers):
        if handler.get_name() == HANDLER_NAME:
            root.removeHandler(handler)
    root.setLevel(level)


def json_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_each_request_logs_one_json_line_with_its_request_id(client, captured):
    chosen, stream = captured
    assert chosen == "json"
    response = client.get("/api/v1/prompts/no-such-prompt")
    request_id = response.headers["X-Request-ID"]
    assert len(request_id) >= 16
    [line] = [entry for entry in json_lines(stream) if entry.get("request_id") == request_id]
    assert line["logger"] == "promptyard.requests" and line["level"] == "info"
    assert line["status"] == 404 and line["method"] == "GET"
    assert line["path"] == "/api/v1/prompts/no-such-prompt" and line["route"] == "/api/v1/prompts/<name>"
    assert isinstance(line["duration_ms"], float) and line["ts"].endswith("Z")


def test_a_callers_request_id_is_kept_and_garbage_is_replaced(client):
    kept = client.get("/healthz", headers={"X-Request-ID": "edge-42.abc"})
    assert kept.headers["X-Request-ID"] == "edge-42.abc"
    replaced = client.get("/healthz", headers={"X-Request-ID": "bad id\" with spaces" + "x" * 200})
    assert replaced.headers["X-Request-ID"] != "" and " " not in replaced.headers["X-Request-ID"]
    assert client.get("/healthz").headers["X-Request-ID"] != client.get("/healthz").headers["X-Request-ID"]


def test_an_execution_logs_an_event_tied_to_its_request(client, app, captured):
    _, stream = captured
    install_plugin("echo-logs", FunctionPlugin(lambda prompt, params: "echo: " + prompt_text(prompt),
                                               source="fake/echo-logs"))
    response = client.post("/api/v1/executions", json={"model": "echo-logs", "input": "hi"})
    execution = response.get_json()
    [event] = [entry for entry in json_lines(stream) if entry.get("event") == "execution_finished"]
    assert event["execution_id"] == execution["id"] and event["model"] == "echo-logs"
    assert event["status"] == "succeeded" and event["cache_hit"] is False
    assert event["request_id"] == response.headers["X-Request-ID"]


def test_a_terminal_gets_readable_lines(client):
    stream = Terminal()
    root = logging.getLogger()
    level = root.level
    try:
        assert configure_logging(stream) == "text"
        client.get("/healthz", headers={"X-Request-ID": "term-1"})
    finally:
        for handler in list(root.handlers):
            if handler.get_name() == HANDLER_NAME:
                root.removeHandler(handler)
        root.setLevel(level)
    [line] = [line for line in stream.getvalue().splitlines() if "request_id=term-1" in line]
    assert "INFO" in line and "GET /healthz 200" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_the_format_can_be_forced(monkeypatch):
    stream = Terminal()
    monkeypatch.setenv("PROMPTYARD_LOG_FORMAT", "json")
    root = logging.getLogger()
    level = root.level
    try:
        assert configure_logging(stream) == "json"
        logging.getLogger("promptyard.test").warning("hello %s", "there", extra={"answer": 42})
    finally:
        for handler in list(root.handlers):
            if handler.get_name() == HANDLER_NAME:
                root.removeHandler(handler)
        root.setLevel(level)
    [line] = json_lines(stream)
    assert line["message"] == "hello there" and line["answer"] == 42 and line["level"] == "warning"
