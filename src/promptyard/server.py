"""Serve the app with waitress on a background thread: for tests, benchmarks and embedding."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from flask import Flask


@contextmanager
def serve_in_thread(app: Flask, *, host: str = "127.0.0.1", port: int = 0, threads: int = 8) -> Iterator[str]:
    """Run a real waitress server for `app` until the block ends; yields its base URL (port 0 picks a free one)."""
    import waitress

    # A short loop timeout lets the server notice it is being shut down quickly (it only matters when idle).
    server = waitress.create_server(app, host=host, port=port, threads=threads, ident="promptyard",
                                    asyncore_loop_timeout=0.1)
    thread = threading.Thread(target=server.run, name="promptyard-waitress", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.effective_port}"
    finally:
        # Emptying the socket map ends the server's loop (it runs `while map`); the sockets are closed after the
        # thread has stopped, so they are never closed under a select() in progress.
        dispatchers = list(server._map.values())
        server._map.clear()
        thread.join(timeout=10)
        for dispatcher in dispatchers:
            try:
                dispatcher.close()
            except OSError:
                pass
        server.task_dispatcher.shutdown(timeout=5)
