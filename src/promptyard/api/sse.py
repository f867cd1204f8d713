"""Server-sent event responses over an execution stream."""

from __future__ import annotations

from typing import Iterator

from flask import Response, current_app, stream_with_context

from promptyard.execution.pipeline import ExecutionStream


def event_stream_response(events: Iterator[str], execution: ExecutionStream,
                          headers: dict[str, str] | None = None) -> Response:
    """A text/event-stream of `events` (each a whole `data: ...` event), flushed as each is produced.

    `execution` is closed when the response is: a response the server drops before reading it never runs the
    events' own `finally`, and closing here records the execution cancelled and gives its queue slot back now,
    not whenever the garbage collector gets to it.
    """
    app = current_app._get_current_object()

    def close_execution() -> None:
        with app.app_context():
            execution.close()

    response = Response(stream_with_context(events), status=200, mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})})
    response.call_on_close(close_execution)
    return response
