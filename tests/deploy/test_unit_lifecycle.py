"""The single-port unit lives and dies as one: a child that dies takes the unit down with a non-zero exit and a
report; SIGTERM stops every child; a taken port or a missing nginx is a clear error."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from promptyard.db import db
from promptyard.deploy.nginx import ProxyPlan, render, write_config
from promptyard.deploy.unit import Unit, UnitError, UnitSettings, check_port_free, find_nginx
from tests.conftest import make_app
from tests.deploy.unitproc import VENV_BIN, alive, clean_env, cmdline, descendants, free_port, stop, wait_until_up

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def start_unit(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    log_path = tmp_path / "unit.log"
    process = subprocess.Popen(
        [str(Path(VENV_BIN) / "promptyard"), "up", "--single-port", str(port), "--no-ui", "--threads", "2", *extra],
        env=clean_env(PROMPTYARD_HOME=str(tmp_path / "home"), PROMPTYARD_LOG_FORMAT="json"),
        stdout=open(log_path, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    wait_until_up(f"{base}/healthz", process, log_path)
    return process, base, log_path


def child_pids(process: subprocess.Popen) -> dict[str, int]:
    found = {}
    for pid in descendants(process.pid):
        line = cmdline(pid)
        if "gunicorn" in line and "api" not in found:
            found["api"] = pid  # the master: the first gunicorn below the unit
        elif line.startswith("nginx: master"):
            found["proxy"] = pid
    return found


@pytest.mark.slow
def test_a_dying_child_takes_the_unit_down_non_zero(tmp_path):
    process, base, log_path = start_unit(tmp_path)
    try:
        children = child_pids(process)
        assert set(children) == {"api", "proxy"}, children
        everything = descendants(process.pid)
        os.kill(children["api"], signal.SIGKILL)
        code = process.wait(timeout=60)
    finally:
        stop(process)
    assert code != 0
    log = log_path.read_text()
    assert "api (pid" in log and "exited with code" in log
    for pid in everything:
        for _ in range(100):
            if not alive(pid):
                break
            time.sleep(0.1)
        assert not alive(pid), f"{cmdline(pid)} outlived the unit"


@pytest.mark.slow
def test_sigterm_stops_every_child_and_exits_zero(tmp_path):
    process, base, _ = start_unit(tmp_path)
    everything = descendants(process.pid)
    assert any(cmdline(pid).startswith("nginx: master") for pid in everything)
    assert stop(process) == 0
    for pid in everything:
        for _ in range(100):
            if not alive(pid):
                break
            time.sleep(0.1)
        assert not alive(pid), f"{cmdline(pid)} outlived the unit"


def test_a_taken_port_is_a_clear_error(cli):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("up", "--single-port", str(port))
    assert result.exit_code != 0
    assert f"127.0.0.1:{port}" in result.output and "--single-port" in result.output
    assert "Traceback" not in result.output


def test_garbage_options_are_refused(cli):
    for args in (["--single-port", "0"], ["--single-port", "http"], ["--single-port", "7860", "--workers", "0"]):
        result = cli("up", *args)
        assert result.exit_code == 2 and "Traceback" not in result.output, args


def test_a_missing_nginx_is_named():
    with pytest.raises(UnitError, match="apt-get install nginx"):
        find_nginx("no-such-nginx-binary")


def test_the_config_nginx_accepts(tmp_path):
    """nginx -t accepts the rendered config, with and without a UI, on every kind of listen address."""
    nginx = find_nginx()
    for plan in (ProxyPlan("0.0.0.0", 7860, 5001, 8502, 2 * 1024 * 1024),
                 ProxyPlan("127.0.0.1", 7861, 5001, None, 1024), ProxyPlan("::", 7862, 5001, 8502, 10)):
        prefix = tmp_path / f"nginx-{plan.listen_port}"
        config = write_config(plan, prefix)
        text = config.read_text()
        assert "proxy_buffering off;" in text and f"client_max_body_size {plan.max_body_bytes};" in text
        assert ("proxy_set_header Upgrade $http_upgrade;" in text) == (plan.ui_port is not None)
        checked = subprocess.run([nginx, "-t", "-p", str(prefix), "-c", str(config), "-e", "stderr"],
                                 capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
    assert "location = /metrics" in render(ProxyPlan("0.0.0.0", 1, 2, 3, 4), tmp_path)


@pytest.mark.slow
def test_the_supervisor_in_process_reports_a_death_and_stops_the_rest(tmp_path, monkeypatch):
    """The same supervision, driven here: Unit.wait() returns 1 when a child dies, and stop() ends the others."""
    for key in [k for k in os.environ if k.startswith(("PROMPTYARD_", "PROMETHEUS_"))] + ["DATABASE_URL", "REDIS_URL"]:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("PATH", VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
    port = free_port()
    check_port_free("127.0.0.1", port)
    home = tmp_path / "home"
    app = make_app(f"sqlite:///{home / 'promptyard.db'}", home)
    with app.app_context():
        db.create_all()
        db.engine.dispose()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{home / 'promptyard.db'}")
    unit = Unit(UnitSettings(host="127.0.0.1", port=port, home=home, threads=2, ui=False, nginx=find_nginx()))
    unit.start()
    try:
        (tmp_path / "api.log").touch()  # the children write to this process's stdout
        wait_until_up(f"http://127.0.0.1:{port}/healthz", unit.children["api"], tmp_path / "api.log")
        assert httpx.get(f"http://127.0.0.1:{port}/").status_code == 404  # no UI: the API's error shape
        unit.children["proxy"].send_signal(signal.SIGKILL)
        assert unit.wait(poll_s=0.1) == 1
    finally:
        unit.stop()
    assert all(child.poll() is not None for child in unit.children.values())
