"""`promptyard up`: migrate, seed, then serve the API (and the UI when it is installed)."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext



@click.command("up")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind the API (and UI) to.")
@click.option("--api-port", default=5000, show_default=True, type=int, help="Port of the REST API.")
@click.option("--ui-port", default=8501, show_default=True, type=int, help="Port of the Streamlit UI.")
@click.option("--no-ui", is_flag=True, help="Serve the API only.")
@click.option("--threads", default=16, show_default=True, type=int, help="Request threads of the WSGI server.")
@with_appcontext
def command(host: str, api_port: int, ui_port: int, no_ui: bool, threads: int) -> None:
    """Migrate the database, seed the starter library and serve."""
    from promptyard.startup import prepare_database

    app = current_app._get_current_object()
    app.config["PROMPTYARD_BIND_HOST"] = host
    # Bind first: a taken port fails fast with a clear message, before any migration runs.
    server = _bind(app, host, api_port, threads)
    for line in prepare_database():
        click.echo(f"  ready: {line}")
    ui = None if no_ui else _start_ui(host, api_port, ui_port)
    if ui is None and not no_ui:
        click.echo("The UI is not part of this build yet: serving the API alone.")
    click.echo(f"promptyard API on http://{host}:{api_port}  (docs: http://{host}:{api_port}/api/docs)")
    if ui is not None:
        click.echo(f"promptyard UI  on http://{host}:{ui_port}")
    # SIGTERM (kill, systemd, docker stop) stops the server like Ctrl-C, so the UI is always stopped with it.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.run()
    except KeyboardInterrupt:
        click.echo("promptyard stopped.")
    finally:
        from promptyard.evals import stopping

        stopping.request_stop(app)  # evaluation runs in the job threads stop at their next sample, resumable
        signal.signal(signal.SIGTERM, previous)
        server.close()
        if ui is not None:
            ui.terminate()
            try:
                ui.wait(timeout=15)
            except subprocess.TimeoutExpired:
                ui.kill()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _bind(app, host: str, port: int, threads: int):
    """A waitress server listening on host:port, or a one-line error when that address is taken."""
    from promptyard.server import create_server

    try:
        return create_server(app, host=host, port=port, threads=threads)
    except OSError as exc:
        raise click.ClickException(
            f"Cannot serve the API on {host}:{port}: {exc.strerror or exc}. "
            f"Is another server using it? Pick another port with --api-port."
        ) from exc


def _start_ui(host: str, api_port: int, ui_port: int) -> subprocess.Popen | None:
    """Start the Streamlit UI next to the API, when the UI and streamlit are installed."""
    entry = Path(__file__).resolve().parent.parent / "ui" / "launch" / "app.py"  # see its docstring
    if not entry.exists() or importlib.util.find_spec("streamlit") is None:
        return None
    api_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    env = {**os.environ, "PROMPTYARD_API_URL": f"http://{api_host}:{api_port}"}
    args = [sys.executable, "-m", "streamlit", "run", str(entry), "--server.port", str(ui_port),
            "--server.address", host, "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "minimal"]
    return subprocess.Popen(args, env=env)
