"""Backpressure that answers: on a live server, excess generations get 429 with Retry-After while /healthz and
reads keep answering, whatever the thread and queue settings. No timing is asserted: the slow model blocks until
the test lets it go, so which requests are admitted is decided by the gate alone."""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import httpx
import pytest

from promptyard.api.admission import reserved_threads
from promptyard.db import db
from promptyard.models.service import install_plugin
from promptyard.plugins.function import FunctionPlugin
from promptyard.server import serve_in_thread
from tests.conftest import make_app


@pytest.fixture
def live(tmp_path, request):
    """A fresh app (SQLite) with a model whose generations wait until `release` is set."""
    threads, queue_size = request.param
    app = make_app(f"sqlite:///{tmp_path / 'bp.db'}", tmp_path / "home", PROMPTYARD_QUEUE_SIZE=queue_size,
                   PROMPTYARD_RATE_LIMIT="off")
    release = threading.Event()
    started = threading.Semaphore(0)

    def slow(prompt, params):
        started.release()
        release.wait(timeout=120)
        return "done"

    with app.app_context():
        db.create_all()
        install_plugin("slow", FunctionPlugin(slow, source="fake/slow"))
    with serve_in_thread(app, threads=threads) as url:
        yield app, url, release, started, threads, queue_size
        release.set()
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("live", [(4, 16), (16, 16), (16, 2), (8, 0)], indirect=True,
                         ids=["4-threads", "16-threads-default-queue", "16-threads-short-queue", "8-threads-no-queue"])
def test_excess_generations_get_429_while_health_and_reads_answer(live):
    app, url, release, started, threads, queue_size = live
    capacity = threads - reserved_threads(threads)
    # Admitted: one generating, up to queue_size waiting in the model's queue, and no more than the gate's capacity.
    admitted = min(capacity, 1 + queue_size)
    total = capacity + 8

    def generate(i):
        with httpx.Client(base_url=url, timeout=120) as client:
            return client.post("/api/v1/executions", json={"model": "slow", "input": f"task {i}", "cache": False})

    with ThreadPoolExecutor(max_workers=total) as pool:
        futures = [pool.submit(generate, i) for i in range(total)]
        # The refused ones answer while the admitted ones are still blocked: collect them as they complete.
        refused = []
        pending = set(futures)
        while len(refused) < total - admitted:
            done, pending = wait(pending, timeout=60, return_when=FIRST_COMPLETED)
            assert done, "the refusals did not come back while the admitted generations were blocked"
            refused.extend(f.result() for f in done)
        assert started.acquire(timeout=60)  # one generation is running
        with httpx.Client(base_url=url, timeout=60) as client:
            for _ in range(3):
                assert client.get("/healthz").json() == {"status": "ok"}
                assert client.get("/api/v1/prompts").status_code == 200
                assert client.get("/api/v1/executions").status_code == 200
        release.set()
        finished = [f.result() for f in futures if f in pending]

    for response in refused:
        assert response.status_code == 429, response.text
        assert int(response.headers["Retry-After"]) >= 1
        assert response.json()["error"]["code"] in ("server_busy", "queue_full")
    assert len(finished) == admitted
    assert all(response.status_code == 201 for response in finished), [r.text for r in finished]
    # With the queue longer than the gate, the gate is what answers; the model queue's 429 stays reachable too.
    codes = {r.json()["error"]["code"] for r in refused}
    if queue_size + 1 >= capacity:
        assert codes == {"server_busy"}
    else:
        assert "queue_full" in codes


def test_reserved_threads_are_a_quarter_at_least_two_and_never_all():
    assert [reserved_threads(n) for n in (1, 2, 3, 4, 8, 16, 32)] == [0, 1, 2, 2, 2, 4, 8]


RUNAWAY = "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(depth) }}"


def test_sixteen_runaway_renders_at_once_do_not_stall_health(tmp_path, monkeypatch):
    from promptyard.prompts import render_pool

    monkeypatch.setattr(render_pool, "RENDER_TIME_BUDGET_S", 0.5)
    app = make_app(f"sqlite:///{tmp_path / 'render.db'}", tmp_path / "home", PROMPTYARD_RATE_LIMIT="off")
    with app.app_context():
        db.create_all()
    declared = [{"name": "depth", "type": "integer", "required": False, "default": 1}]
    with serve_in_thread(app, threads=16) as url, httpx.Client(base_url=url, timeout=120) as client:
        created = client.post("/api/v1/prompts", json={"name": "boom", "template": RUNAWAY, "variables": declared})
        assert created.status_code == 201, created.text

        def render(_):
            with httpx.Client(base_url=url, timeout=120) as own:
                return own.post("/api/v1/prompts/boom/render", json={"variables": {"depth": 40}})

        with ThreadPoolExecutor(max_workers=16) as pool:
            futures = [pool.submit(render, i) for i in range(16)]
            health = [client.get("/healthz") for _ in range(5)]
            answers = [f.result() for f in futures]
    assert all(r.status_code == 200 for r in health)
    codes = [(r.status_code, r.json()["error"]["code"]) for r in answers]
    assert all(code in {(422, "render_time_budget"), (429, "renderers_busy"), (429, "server_busy")} for code in codes)
    assert (422, "render_time_budget") in codes
    with app.app_context():
        db.engine.dispose()
