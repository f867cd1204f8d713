"""`promptyard up`: migrate, seed, then serve the API (and the UI when it is installed)."""

from __future__ import annotations

import importlib.util
import logging
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
@click.option("--single-port", type=click.IntRange(1, 65535), default=None, metavar="PORT",
              help="Serve API and UI on one port: nginx in front of gunicorn and Streamlit (what the image runs).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="With --single-port: gunicorn worker processes (each loads its own models).")
@with_appcontext
def command(host: str, api_port: int, ui_port: int, no_ui: bool, threads: int, single_port: int | None,
            workers: int) -> None:
    """Migrate the database, seed the starter library and serve."""
    from promptyard.startup import prepare_database

    app = current_app._get_current_object()
    app.config["PROMPTYARD_BIND_HOST"] = host
    if single_port is not None:
        raise SystemExit(_serve_single_port(app, host, single_port, workers, threads, no_ui))
    # Bind first: a taken port fails fast with a clear message, before any migration runs.
    server = _bind(app, host, api_port, threads)
    _start_logging()
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


def _start_logging() -> None:
    """Structured logs from here on (once the port is ours), and the storage warning first of all."""
    from promptyard.monitoring.logs import configure_logging

    configure_logging()
    warn_if_ephemeral()


def warn_if_ephemeral() -> None:
    """The image sets PROMPTYARD_STORAGE_EPHEMERAL when no storage is mounted at /data: say so loudly."""
    if os.environ.get("PROMPTYARD_STORAGE_EPHEMERAL"):
        logging.getLogger("promptyard.up").warning(
            "Storage is ephemeral: the database, keys and downloaded models are lost when this container restarts. "
            "Mount persistent storage at /data to keep them.", extra={"event": "ephemeral_storage"})


def _serve_single_port(app, host: str, port: int, workers: int, threads: int, no_ui: bool) -> int:
    """Prepare the database once, then run the nginx + gunicorn + Streamlit unit until a signal or a death."""
    from promptyard.deploy.unit import UnitError, UnitSettings, check_port_free, run_unit, ui_available
    from promptyard.startup import prepare_database

    try:
        check_port_free(host, port)
    except UnitError as exc:
        raise click.ClickException(f"{exc} Pick another port with --single-port.") from exc
    _start_logging()
    for line in prepare_database():
        click.echo(f"  ready: {line}")
    settings = UnitSettings(host=host, port=port, home=Path(app.config["PROMPTYARD_HOME"]), workers=workers,
                            threads=threads, ui=not no_ui and ui_available(),
                            max_body_bytes=int(app.config["PROMPTYARD_MAX_BODY_BYTES"]))
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    click.echo(f"promptyard on http://{shown}:{port}  (API under /api and /v1, metrics at /metrics)")
    try:
        code = run_unit(settings)
    except UnitError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("promptyard stopped." if code == 0 else "promptyard stopped: a part of the unit exited (see above).")
    return code


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
