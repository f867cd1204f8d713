"""Load test, bounded and on loopback only: the single-port unit with 1 against 4 gunicorn API workers on PostgreSQL.

Run with `make bench-scale` (or `.venv/bin/python bench/bench_scale.py --help`). Each round starts the unit
(`promptyard up --single-port --no-ui`, nginx in front, as in production) on a fresh PostgreSQL database, once
with 1 worker and once with 4 (in alternating order), and drives it from client threads here, each with its own
keep-alive connection: cheap reads (GET /api/v1/executions/1, one row by id) and cached executions (POST /api/v1/executions of one
greedy request, answered from the response cache in PostgreSQL; the model never loads). Every answer must be 200:
any error fails the run. Prints requests per second per configuration, and the 4-to-1 ratio per round.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "fixtures"))
PG_ADMIN_URL = os.environ.get("PROMPTYARD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PROMPTYARD = str(Path(sys.executable).with_name("promptyard"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Database:
    """A fresh PostgreSQL database for one unit, dropped afterwards."""

    def __init__(self) -> None:
        self.name = f"promptyard_bench_{uuid.uuid4().hex[:10]}"
        self.admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        self.url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{self.name}"

    def drop(self) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        self.admin.dispose()


def request(conn: http.client.HTTPConnection, method: str, path: str, body: dict | None = None) -> int:
    payload = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=payload, headers={"Content-Type": "application/json"} if payload else {})
    response = conn.getresponse()
    content = response.read()
    if response.status >= 400 and path != "/healthz":  # /healthz is polled while the unit starts
        print(f"{method} {path}: {response.status} {content[:300]!r}", file=sys.stderr)
    return response.status


class Unit:
    def __init__(self, workers: int, threads: int, home: Path, database_url: str) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMPTYARD_", "PROMETHEUS_"))
               and k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(PROMPTYARD_HOME=str(home), DATABASE_URL=database_url, PROMPTYARD_RATE_LIMIT="off",
                   PROMPTYARD_LOG_FORMAT="json")
        self.log = open(home.parent / f"unit-{workers}.log", "w")
        self.process = subprocess.Popen([PROMPTYARD, "up", "--single-port", str(self.port), "--no-ui", "--workers",
                                         str(workers), "--threads", str(threads)], env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the unit exited: see {self.log.name}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                if request(conn, "GET", "/healthz") == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise TimeoutError("the unit did not start")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.log.close()


def drive(port: int, clients: int, per_client: int, method: str, path: str, body: dict | None) -> float:
    """Requests per second over `clients` threads of `per_client` requests each; raises on any non-200."""
    errors: list[str] = []
    barrier = threading.Barrier(clients + 1)

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        request(conn, "GET", "/healthz")  # connected before the clock starts
        barrier.wait()
        for _ in range(per_client):
            status = request(conn, method, path, body)
            if not 200 <= status < 300:
                errors.append(f"{method} {path}: {status}")
                return
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} errors, first: {errors[0]}")
    return clients * per_client / elapsed


def measure(workers: int, args, model_dir: Path, scratch: Path) -> dict[str, float]:
    database = Database()
    home = scratch / f"home-{workers}-{uuid.uuid4().hex[:6]}"
    try:
        unit = Unit(workers, args.threads, home, database.url)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", unit.port, timeout=120)
            assert request(conn, "POST", "/api/v1/models", {"name": "tiny", "plugin": "transformers",
                                                            "source": str(model_dir),
                                                            "params": {"max_new_tokens": 8}}) == 201
            # /healthz answers once one worker is up; the others may still be importing (and taking the CPU).
            time.sleep(args.settle)
            execution = {"model": "tiny", "input": "def add(a, b):"}
            assert request(conn, "POST", "/api/v1/executions", execution) in (200, 201)  # generates once, then cached
            results = {}
            for name, method, path, body in (("reads", "GET", "/api/v1/executions/1", None),
                                             ("cached executions", "POST", "/api/v1/executions", execution)):
                drive(unit.port, args.clients, max(5, args.requests // 10), method, path, body)  # warm-up
                results[name] = drive(unit.port, args.clients, args.requests, method, path, body)
            return results
        finally:
            unit.stop()
    finally:
        database.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (1 worker, 4 workers), order alternating")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client connections")
    parser.add_argument("--requests", type=int, default=150, help="requests per client per measurement")
    parser.add_argument("--threads", type=int, default=4, help="request threads per gunicorn worker")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds to let every worker finish starting")
    args = parser.parse_args()
    if args.rounds < 1 or args.clients < 1 or args.requests < 1:
        parser.error("--rounds, --clients and --requests must be at least 1")
    from tiny_models import build_tiny_gpt2

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as scratch_name:
        scratch = Path(scratch_name)
        model_dir = build_tiny_gpt2(scratch / "tiny-gpt2")
        rows: dict[int, list[dict[str, float]]] = {1: [], 4: []}
        for round_index in range(args.rounds):
            for workers in ((1, 4) if round_index % 2 == 0 else (4, 1)):
                rows[workers].append(measure(workers, args, model_dir, scratch))
                print(f"round {round_index + 1}, {workers} worker(s): "
                      + ", ".join(f"{k} {v:.0f}/s" for k, v in rows[workers][-1].items()), flush=True)
    print(f"\n{os.cpu_count()} CPUs, {args.clients} clients x {args.requests} requests, {args.threads} threads/worker, "
          f"{args.rounds} rounds; requests per second, median [min-max]; ratio per round\n")
    print(f"| workload | 1 worker | 4 workers | 4:1 ratio |\n| --- | --- | --- | --- |")
    for name in rows[1][0]:
        one = [r[name] for r in rows[1]]
        four = [r[name] for r in rows[4]]
        ratios = [f / o for f, o in zip(four, one)]
        print(f"| {name} | {statistics.median(one):.0f} [{min(one):.0f}-{max(one):.0f}] | "
              f"{statistics.median(four):.0f} [{min(four):.0f}-{max(four):.0f}] | "
              f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}] |")


if __name__ == "__main__":
    main()
