"""`promptyard up`: a real server in a subprocess, auth on a public bind, and a clean error for a taken port."""

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

PROMPTYARD = str(Path(sys.executable).with_name("promptyard"))
START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def serve(tmp_path):
    """Start `promptyard up --no-ui` with a fresh home; yields the base URL once /healthz answers."""
    started: list[subprocess.Popen] = []

    def start(*extra: str) -> str:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTYARD_") and k not in
               ("DATABASE_URL", "REDIS_URL")}
        env["PROMPTYARD_HOME"] = str(tmp_path / "home")
        process = subprocess.Popen(
            [PROMPTYARD, "up", "--no-ui", "--api-port", str(port), "--threads", "4", *extra],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        started.append(process)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"promptyard up exited early:\n{process.stdout.read()}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    return base
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        pytest.fail("promptyard up did not answer /healthz in time")

    yield start
    for process in started:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_up_serves_the_api_on_loopback_without_auth(serve, tmp_path):
    base = serve()
    assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
    document = httpx.get(f"{base}/api/openapi.json")
    assert document.status_code == 200 and document.json()["openapi"].startswith("3.")
    assert httpx.get(f"{base}/api/v1/keys").status_code == 200
    assert (tmp_path / "home" / "promptyard.db").exists()


@pytest.mark.slow
def test_up_on_a_public_bind_requires_a_key(serve):
    base = serve("--host", "0.0.0.0")
    assert httpx.get(f"{base}/healthz").status_code == 200
    response = httpx.get(f"{base}/api/v1/keys")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"


def children_of(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_stops_the_ui_with_the_api(tmp_path):
    pytest.importorskip("streamlit")
    api_port, ui_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMPTYARD_") and k not in
           ("DATABASE_URL", "REDIS_URL")}
    env["PROMPTYARD_HOME"] = str(tmp_path / "home")
    process = subprocess.Popen([PROMPTYARD, "up", "--api-port", str(api_port), "--ui-port", str(ui_port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ui: list[int] = []
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ui and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            try:
                ready = httpx.get(f"http://127.0.0.1:{api_port}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                ready = False
            ui = children_of(process.pid) if ready else []
        assert ui, "promptyard up did not start its UI"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        for _ in range(100):
            if not Path(f"/proc/{ui[0]}").exists():
                break
            time.sleep(0.1)
        assert not Path(f"/proc/{ui[0]}").exists(), "the UI outlived promptyard up"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for pid in ui:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_up_refuses_a_port_in_use(cli, app):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("up", "--no-ui", "--api-port", str(port))
    assert result.exit_code != 0
    assert f"127.0.0.1:{port}" in result.output and "--api-port" in result.output
    assert "Traceback" not in result.output
