"""The scaled topology for real: two API processes and a `celery worker` on PostgreSQL and Redis (broker, cache,
rate limits, pull progress). An evaluation run started on one API process is executed by the worker and followed
from the other; the worker killed mid-run is replaced by another that resumes without redoing a sample."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import PG_ADMIN_URL
from tests.deploy.unitproc import VENV_BIN, clean_env, free_port, stop, wait_until_up

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]
TASKS = 6
# What deploy/compose.yaml's worker runs (test_compose checks they agree).
WORKER_ARGS = ["-A", "promptyard.jobs:celery_app", "worker", "--pool", "solo", "--loglevel", "INFO"]
LET_THROUGH = 2  # samples the first worker generates before the model server holds it


class CountingModelServer(ThreadingHTTPServer):
    """An OpenAI-compatible model server (the boundary): answers the first `allowed` completions at once and holds
    the rest until `gate` opens; counts what it answered per prompt."""

    daemon_threads = True

    def __init__(self, allowed: int) -> None:
        super().__init__(("127.0.0.1", 0), CountingHandler)
        self.allowed = allowed
        self.gate = threading.Event()
        self.holding = threading.Event()
        self.answered: list[str] = []
        self.held: list[str] = []  # prompts that arrived after the first `allowed` (one is in flight at the kill)
        self.lock = threading.Lock()


class CountingHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self._json({"object": "list", "data": [{"id": "counted", "object": "model"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        server = self.server
        with server.lock:
            free = len(server.answered) < server.allowed
        if not free:
            with server.lock:
                server.held.append(body.get("prompt", ""))
            server.holding.set()
            server.gate.wait(120)
        try:
            self._json({"id": "cmpl-x", "object": "text_completion", "model": "counted",
                        "choices": [{"index": 0, "text": "    return None\n", "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})
        except OSError:
            return  # the worker that asked was killed: this answer reached no one
        with server.lock:
            server.answered.append(body.get("prompt", ""))

    def _json(self, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fresh_postgres():
    """An empty PostgreSQL database of its own: the processes migrate it themselves."""
    name = f"promptyard_scale_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001
        from tests.conftest import service_missing

        service_missing(f"PostgreSQL ({exc.__class__.__name__})")
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def topology(fresh_postgres, redis_url, tmp_path):
    """start_api() and start_worker(name) on one database, broker and Redis; everything is stopped at the end."""
    env = clean_env(DATABASE_URL=fresh_postgres, REDIS_URL=redis_url, PROMPTYARD_BROKER_URL=redis_url,
                    PROMPTYARD_HOME=str(tmp_path / "home"), PROMPTYARD_LEASE_TTL_S="2",
                    PROMPTYARD_RATE_LIMIT_PREFIX=f"scale-{uuid.uuid4().hex}", PROMPTYARD_LOG_FORMAT="json",
                    PROMPTYARD_EVAL_WORKERS="1",
                    # One sample a batch, so each sample is saved as it is generated and the kill below lands
                    # between known samples (runs save a whole batch at a time).
                    PROMPTYARD_EVAL_BATCH_SIZE="1")
    started: list[subprocess.Popen] = []

    def start_api() -> str:
        port = free_port()
        log = tmp_path / f"api-{port}.log"
        process = subprocess.Popen([str(Path(VENV_BIN) / "promptyard"), "up", "--no-ui", "--api-port", str(port),
                                    "--threads", "4"], env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                                   start_new_session=True)
        started.append(process)
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/healthz", process, log)
        return base

    def start_worker(name: str) -> subprocess.Popen:
        log = tmp_path / f"worker-{name}.log"
        # solo pool: the evaluation sandbox starts processes of its own, which a prefork child may not.
        process = subprocess.Popen([str(Path(VENV_BIN) / "celery"), *WORKER_ARGS, "-n", f"{name}@%h",
                                    "--without-gossip", "--without-mingle", "--without-heartbeat"],
                                   env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        started.append(process)
        return process

    yield start_api, start_worker, tmp_path
    for process in reversed(started):
        stop(process, timeout=30)


def wait_for(predicate, seconds: float = 120, what: str = "condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_run_survives_its_worker_and_is_seen_from_every_api_process(topology):
    start_api, start_worker, tmp_path = topology
    model_server = CountingModelServer(allowed=LET_THROUGH)
    threading.Thread(target=model_server.serve_forever, daemon=True).start()
    try:
        first_api = start_api()
        second_api = start_api()
        registered = httpx.post(f"{first_api}/api/v1/models", json={
            "name": "counted", "plugin": "openai-compatible",
            "source": f"http://127.0.0.1:{model_server.server_address[1]}", "options": {"model": "counted"}})
        assert registered.status_code == 201, registered.text

        worker = start_worker("first")
        created = httpx.post(f"{first_api}/api/v1/evals", json={"dataset": "humaneval", "model": "counted",
                                                                 "limit": TASKS})
        assert created.status_code == 202, created.text
        run_id = created.json()["id"]

        # The first worker generates LET_THROUGH samples, then the model server holds its next request.
        assert model_server.holding.wait(120), (tmp_path / "worker-first.log").read_text()[-3000:]
        seen = httpx.get(f"{second_api}/api/v1/evals/{run_id}").json()
        assert seen["status"] == "running" and seen["progress"]["generated"] == LET_THROUGH
        before = httpx.get(f"{second_api}/api/v1/evals/{run_id}/samples").json()["items"]
        assert len(before) == LET_THROUGH

        worker.send_signal(signal.SIGKILL)  # dies mid-run: no cleanup, its lease simply stops being renewed
        worker.wait(timeout=30)
        model_server.gate.set()
        start_worker("second")

        finished = wait_for(lambda: (lambda body: body if body["status"] in ("succeeded", "failed") else None)(
            httpx.get(f"{second_api}/api/v1/evals/{run_id}").json()), seconds=180, what="the resumed run to end")
        assert finished["status"] == "succeeded", finished
        assert finished["error"] is None and finished["progress"]["done"] == finished["progress"]["total"] == TASKS
        after = httpx.get(f"{first_api}/api/v1/evals/{run_id}/samples").json()["items"]
        assert len(after) == TASKS
        # The samples generated before the kill were kept as they were, not generated again.
        kept = {(s["task_id"], s["execution_id"]) for s in before}
        assert kept <= {(s["task_id"], s["execution_id"]) for s in after}
        # Every task was asked for; the only prompt asked twice is the one in flight when the worker was killed
        # (its answer may or may not have been written to the dead socket, and it was never saved).
        assert len(set(model_server.answered)) == TASKS
        asked_twice = {p for p in model_server.answered if model_server.answered.count(p) > 1}
        assert asked_twice <= {model_server.held[0]} and len(model_server.answered) <= TASKS + 1
        log = (tmp_path / "worker-second.log").read_text()
        assert "resumed 1 evaluation run(s)" in log
    finally:
        model_server.gate.set()
        model_server.shutdown()
