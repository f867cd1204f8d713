"""The single-port unit: nginx on the public port, gunicorn (API) and Streamlit (UI) on loopback behind it.

Started and stopped as one: a child that exits is reported and the others are stopped, and the unit exits
non-zero; SIGTERM or Ctrl-C stops every child and exits 0.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from promptyard.deploy.nginx import ProxyPlan, nginx_command, write_config

log = logging.getLogger("promptyard.unit")
STOP_TIMEOUT_S = 20


@dataclass
class UnitSettings:
    host: str
    port: int
    home: Path
    workers: int = 1
    threads: int = 16
    ui: bool = True
    max_body_bytes: int = 2 * 1024 * 1024
    nginx: str = "nginx"
    env: dict[str, str] = field(default_factory=dict)


class UnitError(RuntimeError):
    """The unit cannot start (a missing program, a taken port)."""


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_port_free(host: str, port: int) -> None:
    """Fail fast with a clear message when the public port is taken (before anything starts)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host if host not in ("", "0.0.0.0") else "0.0.0.0", port))
        except OSError as exc:
            raise UnitError(f"Cannot serve on {host}:{port}: {exc.strerror or exc}. Is another server using it?") \
                from exc


def find_nginx(name: str = "nginx") -> str:
    # Debian installs it in /usr/sbin, which an unprivileged user's PATH often lacks.
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    found = shutil.which(name, path=search)
    if found is None:
        raise UnitError("nginx is not installed: apt-get install nginx (the image and .ci/run install it).")
    return found


class Unit:
    """The three children; start() launches them, wait() supervises until a signal or a death."""

    def __init__(self, settings: UnitSettings) -> None:
        self.settings = settings
        self.children: dict[str, subprocess.Popen] = {}
        self.api_port = free_loopback_port()
        self.ui_port = free_loopback_port() if settings.ui else None
        self._stopping = False

    def child_env(self) -> dict[str, str]:
        s = self.settings
        metrics_dir = s.home / "prometheus-multiproc"
        # Files of an earlier run's processes would add their counts to this run's: start empty.
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        return {
            **os.environ, **s.env,
            "PROMPTYARD_HOME": str(s.home),
            # The API's auth follows the public bind, not gunicorn's loopback one.
            "PROMPTYARD_BIND_HOST": s.host,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "PROMPTYARD_API_URL": f"http://127.0.0.1:{self.api_port}",
            # Each gunicorn worker's admission gate (api/admission.py) keeps some of its threads for reads.
            "PROMPTYARD_SERVER_THREADS": str(s.threads),
        }

    def commands(self) -> dict[str, list[str]]:
        s = self.settings
        commands = {
            "api": [sys.executable, "-m", "gunicorn", "-c", "python:promptyard.deploy.gunicorn_conf",
                    "--bind", f"127.0.0.1:{self.api_port}", "--workers", str(s.workers), "--threads", str(s.threads),
                    "promptyard.deploy.wsgi:app"],
        }
        if self.ui_port is not None:
            # ui/launch/app.py has no pages/ folder beside it, so a direct link to a page shows the navigation.
            entry = Path(__file__).resolve().parent.parent / "ui" / "launch" / "app.py"
            commands["ui"] = [sys.executable, "-m", "streamlit", "run", str(entry), "--server.port", str(self.ui_port),
                              "--server.address", "127.0.0.1", "--server.headless", "true",
                              "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal"]
        prefix = s.home / "nginx"
        plan = ProxyPlan(s.host, s.port, self.api_port, self.ui_port, s.max_body_bytes)
        commands["proxy"] = nginx_command(write_config(plan, prefix), prefix, s.nginx)
        return commands

    def start(self) -> None:
        env = self.child_env()
        for name, command in self.commands().items():
            log.info("starting %s: %s", name, " ".join(command), extra={"child": name})
            self.children[name] = subprocess.Popen(command, env=env, start_new_session=True)

    def wait(self, poll_s: float = 0.3) -> int:
        """Supervise until a child dies (returns 1) or stop() is called from a signal (returns 0)."""
        while not self._stopping:
            for name, child in self.children.items():
                code = child.poll()
                if code is not None and not self._stopping:
                    log.error("%s (pid %s) exited with code %s: stopping the unit", name, child.pid, code,
                              extra={"child": name, "exit_code": code})
                    self.stop()
                    return 1
            time.sleep(poll_s)
        return 0

    def stop(self) -> None:
        """Stop the proxy first (no new requests), then the UI and the API; kill what does not stop in time."""
        self._stopping = True
        for name in ("proxy", "ui", "api"):
            child = self.children.get(name)
            if child is not None and child.poll() is None:
                # nginx: SIGQUIT is its graceful stop; gunicorn and Streamlit stop cleanly on SIGTERM.
                child.send_signal(signal.SIGQUIT if name == "proxy" else signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for name, child in self.children.items():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %ss: killing it", name, STOP_TIMEOUT_S, extra={"child": name})
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


def ui_available() -> bool:
    return importlib.util.find_spec("streamlit") is not None


def run_unit(settings: UnitSettings) -> int:
    """Start the unit and supervise it until a signal (exit 0) or a child's death (exit 1)."""
    check_port_free(settings.host, settings.port)
    settings.nginx = find_nginx(settings.nginx)
    if importlib.util.find_spec("gunicorn") is None:
        raise UnitError("gunicorn is not installed: pip install 'promptyard[scale]'.")
    unit = Unit(settings)

    def on_signal(signum, frame) -> None:
        log.info("signal %s: stopping the unit", signum)
        unit._stopping = True

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        unit.start()
        code = unit.wait()
    finally:
        unit.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
