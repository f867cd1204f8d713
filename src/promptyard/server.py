"""The WSGI server: one waitress configuration for `promptyard up`, and a background-thread server for tests,
benchmarks and embedding."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from flask import Flask


def create_server(app: Flask, *, host: str, port: int, threads: int):
    """A waitress server bound to host:port (port 0 picks a free one); raises OSError when the address is taken."""
    import waitress

    # The admission gate (api/admission.py) keeps some of these threads for reads and /healthz.
    app.config["PROMPTYARD_SERVER_THREADS"] = threads
    # Waitress's loop timeout stays at its default (1 s): it is an int adjustment, so a fraction such as 0.1
    # becomes 0 and the I/O thread spins in select(), taking a core away from the request threads.
    return waitress.create_server(app, host=host, port=port, threads=threads, channel_timeout=600,
                                  ident="promptyard")


@contextmanager
def serve_in_thread(app: Flask, *, host: str = "127.0.0.1", port: int = 0, threads: int = 8) -> Iterator[str]:
    """Run a real waitress server for `app` until the block ends; yields its base URL (port 0 picks a free one)."""
    server = create_server(app, host=host, port=port, threads=threads)
    thread = threading.Thread(target=server.run, name="promptyard-waitress", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.effective_port}"
    finally:
        # Emptying the socket map ends the server's loop (it runs `while map`) and pulling the trigger wakes it
        # from select() at once; the sockets are closed after the thread has stopped, never under a select().
        dispatchers = list(server._map.values())
        server._map.clear()
        server.pull_trigger()
        thread.join(timeout=10)
        for dispatcher in dispatchers:
            try:
                dispatcher.close()
            except OSError:
                pass
        server.task_dispatcher.shutdown(timeout=5)
